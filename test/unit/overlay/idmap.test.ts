import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Overlay } from '../../../src/overlay';
import { config, put, tmp, walk } from './fixtures/helpers';

t.test('uid/gid maps translate attributes, chown and new files', async (t) => {
  const dir = tmp();
  const [low, up, wk] = ['low', 'up', 'wk'].map((n) => path.join(dir, n)) as [string, string, string];
  for (const d of [low, up, wk]) fs.mkdirSync(d);
  put(low, 'f', 'x');
  fs.chownSync(path.join(low, 'f'), 100005, 100007);
  put(low, 'unmapped', 'x');
  fs.chownSync(path.join(low, 'unmapped'), 5, 5);
  const ov = await Overlay.open(config([low], up, wk, {
    uidMap: [{ inside: 0, host: 100000, count: 65536 }],
    gidMap: [{ inside: 0, host: 100000, count: 65536 }],
  }));
  t.teardown(() => {
    ov.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const me = { uid: 0, gid: 0, pid: 1 };
  const a = ov.getattr(me, walk(ov, 'f'));
  t.equal(a.uid, 5);
  t.equal(a.gid, 7);
  t.equal(ov.getattr(me, walk(ov, 'unmapped')).uid, 65534, 'unmapped host id shows as overflow');
  await ov.setattr(me, walk(ov, 'f'), { uid: 10 });
  t.equal(fs.statSync(path.join(up, 'f')).uid, 100010, 'chown stores the host id');
  const e = await ov.mkdir({ uid: 1000, gid: 1000, pid: 1 }, 1, 'd', 0o755);
  t.equal(e.attr.uid, 1000);
  t.equal(fs.statSync(path.join(up, 'd')).uid, 101000);
  await t.rejects(Promise.resolve().then(() => ov.setattr(me, walk(ov, 'f'), { uid: 70000 })), { message: 'EINVAL' });
  // an id outside the mapping is refused before the copy-up
  await t.rejects(Promise.resolve().then(() => ov.setattr(me, walk(ov, 'unmapped'), { gid: 70000 })), { message: 'EINVAL' });
  t.notOk(fs.existsSync(path.join(up, 'unmapped')), 'the refused chown copied nothing up');
});

t.test('squash shows and stores one owner', async (t) => {
  const dir = tmp();
  const [low, up, wk] = ['low', 'up', 'wk'].map((n) => path.join(dir, n)) as [string, string, string];
  for (const d of [low, up, wk]) fs.mkdirSync(d);
  put(low, 'f', 'x');
  const ov = await Overlay.open(config([low], up, wk, { squashToUid: 0, squashToGid: 0 }));
  t.teardown(() => {
    ov.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  fs.chownSync(path.join(low, 'f'), 33, 44);
  const a = ov.getattr({ uid: 0, gid: 0, pid: 1 }, walk(ov, 'f'));
  t.equal(a.uid, 0);
  t.equal(a.gid, 0);
  const e = await ov.mkdir({ uid: 1000, gid: 1000, pid: 1 }, 1, 'd', 0o755);
  t.equal(fs.statSync(path.join(up, 'd')).uid, 0);
  t.equal(e.attr.uid, 0);
});
