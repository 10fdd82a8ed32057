// `stratafs snapshotter` command line: required options, one clear line for misuse, and
// the list filters of the Snapshots service (parsed without a server).
import t from 'tap';
import { parseSnapshotterArgs } from '../../src/cli/snapshotter';
import { compileFilters, type Filterable } from '../../src/snapshotter/filters';

t.test('arguments', async (t) => {
  t.same(parseSnapshotterArgs(['--address', '/run/s.sock', '--root', '/var/lib/s', '-d']), { address: '/run/s.sock', root: '/var/lib/s', debug: true });
  t.equal(parseSnapshotterArgs(['--root', '/x', '--help']), 'help');
  t.throws(() => parseSnapshotterArgs(['--root', '/x']), { code: 'STRATAFS_ERR_USAGE', message: /--address SOCKET is required/ });
  t.throws(() => parseSnapshotterArgs(['--address', '/s']), { code: 'STRATAFS_ERR_USAGE', message: /--root DIR is required/ });
  t.throws(() => parseSnapshotterArgs(['--address']), { code: 'STRATAFS_ERR_USAGE', message: /--address needs a value/ });
  t.throws(() => parseSnapshotterArgs(['--bogus']), { code: 'STRATAFS_ERR_USAGE', message: /unknown argument "--bogus"/ });
});

t.test('list filters', async (t) => {
  const snaps: Filterable[] = [
    { name: 'a', parent: '', kind: 'COMMITTED', labels: { 'containerd.io/gc.root': 'x' } },
    { name: 'b', parent: 'a', kind: 'ACTIVE', labels: { k: 'v,w' } },
    { name: 'c', parent: 'a', kind: 'VIEW', labels: {} },
  ];
  const pick = (filters: string[]): string[] => snaps.filter(compileFilters(filters)).map((s) => s.name);
  t.same(pick([]), ['a', 'b', 'c']);
  t.same(pick(['parent']), ['b', 'c'], 'a field alone: present');
  t.same(pick(['kind==ACTIVE']), ['b'], 'kinds in either case');
  t.same(pick(['labels."containerd.io/gc.root"']), ['a'], 'a quoted label key with dots');
  t.same(pick(['labels.k=="v,w"']), ['b'], 'a quoted value with a comma');
  t.same(pick(['parent==a,kind!=view']), ['b'], 'selectors of one filter: all must match');
  t.same(pick(['name==a', 'name==c']), ['a', 'c'], 'filters: any may match');
  t.same(pick(['name~=^[ab]$']), ['a', 'b']);
  for (const bad of ['size==1', 'labels', 'name==a,', 'labels."x', 'name~=(']) {
    t.throws(() => compileFilters([bad]), { code: 'STRATAFS_ERR_SNAPSHOT_ARGUMENT' }, `refused: ${bad}`);
  }
});
