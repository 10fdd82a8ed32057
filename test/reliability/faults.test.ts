// The STRATAFS_FAULTS syntax: a malformed entry is an error, never silently no fault.
import t from 'tap';
import { parseFaults } from '../../src/overlay/faults';

t.test('parses point:action[@N] lists', async (t) => {
  const r = parseFaults('copyup.after-data:kill,sync:trace,create.before-install:fail@2,sync:fail@3');
  t.same([...r.keys()], ['copyup.after-data', 'sync', 'create.before-install']);
  t.same(r.get('sync')?.map((x) => [x.action, x.at]), [['trace', 0], ['fail', 3]]);
  t.same(r.get('create.before-install')?.map((x) => [x.action, x.at]), [['fail', 2]]);
  t.same([...parseFaults('').keys()], [], 'empty: no rules');
});

t.test('malformed entries are refused', async (t) => {
  for (const bad of ['copyup', 'copyup:explode', 'copyup:kill@', 'copyup:kill@x', ':kill', 'Sync:kill']) {
    t.throws(() => parseFaults(bad), /STRATAFS_FAULTS: bad entry/, bad);
  }
});
