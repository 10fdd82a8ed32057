/**
 * MountServer: several mounts served by one process (here the test process itself, so
 * every access to a mount goes through a child process: the serving process must never
 * touch its own mounts). Each mount is independent, unmounting one leaves the others
 * serving, and cleanup leaves nothing mounted.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MountServer } from '../../src/server/mount-server';
import { native } from '../../src/native';
import { lowerPool } from '../../src/overlay/lower-pool';
import type { MountSpec } from '../../src/mount/spec';
import { tempDir } from '../lib/tmp';
import { servedSpec } from '../lib/mount-spec';
import { run, runOk } from '../lib/proc';
import { mountTable } from '../lib/mounts';

const spec = (base: string, name: string, lower: string | string[]): MountSpec => servedSpec(path.join(base, name), lower);

/** a lower holding one file, f */
function oneFileLower(base: string): string {
  const lower = path.join(base, 'lower');
  fs.mkdirSync(lower, { recursive: true });
  fs.writeFileSync(path.join(lower, 'f'), 'f\n');
  return lower;
}

const sh = (cmd: string): Promise<string> => runOk('/bin/sh', ['-c', cmd], { timeoutMs: 20_000 });

t.test('one process serves several mounts over one lower', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'etc', 'motd'), 'base\n');
  const server = new MountServer();
  t.teardown(() => server.closeAll());

  const specs = ['a', 'b', 'c'].map((n) => spec(base, n, lower));
  const rssBefore = process.memoryUsage().rss;
  for (const s of specs) await server.mount(s);
  t.comment(`rss grew by ${((process.memoryUsage().rss - rssBefore) / 1024).toFixed(0)} KiB for ${specs.length} mounts`);
  t.same(server.list().map((s) => s.mountpoint).sort(), specs.map((s) => s.mountpoint).sort(), 'list() names every mount');
  const table = await mountTable();
  for (const s of specs) t.ok(table.has(s.mountpoint), `${s.mountpoint} is in the mount table`);

  await sh(`echo changed > ${specs[0].mountpoint}/etc/motd && rm ${specs[1].mountpoint}/etc/motd`);
  t.equal(await sh(`cat ${specs[0].mountpoint}/etc/motd`), 'changed\n', 'a write shows in its own mount');
  t.equal((await run('cat', [`${specs[1].mountpoint}/etc/motd`])).code, 1, 'a delete shows in its own mount');
  t.equal(await sh(`cat ${specs[2].mountpoint}/etc/motd`), 'base\n', 'the third mount sees the lower');
  t.equal(fs.readFileSync(path.join(specs[0].upperdir!, 'etc', 'motd'), 'utf8'), 'changed\n', 'the write went to its upper');

  await t.rejects(server.mount(specs[2]), /already served/, 'a second mount on the same target is refused');

  await server.unmount(specs[0].mountpoint);
  t.notOk((await mountTable()).has(specs[0].mountpoint), 'unmounted');
  t.notOk(server.has(specs[0].mountpoint), 'forgotten after its end');
  t.equal(await sh(`cat ${specs[2].mountpoint}/etc/motd`), 'base\n', 'the others still serve');

  // an unmount from outside (as `docker` or a person would) ends the mount too
  await runOk('umount', [specs[1].mountpoint]);
  for (let i = 0; i < 100 && server.has(specs[1].mountpoint); i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk(server.has(specs[1].mountpoint), 'an external umount ends and forgets the mount');
  t.equal(server.size, 1);

  await server.closeAll();
  t.equal(server.size, 0, 'closeAll ends every mount');
  const after = await mountTable();
  t.notOk(specs.some((s) => after.has(s.mountpoint)), 'nothing left mounted');
  await server.mount(specs[0]);
  t.equal(await sh(`cat ${specs[0].mountpoint}/etc/motd`), 'changed\n', 'a layer mounts again with its upper intact');
});

t.test('mounts of the same lower share what they read of it, each with its own ids', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const lower = path.join(base, 'lower');
  fs.mkdirSync(path.join(lower, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'etc', 'f'), 'f\n');
  fs.chownSync(path.join(lower, 'etc', 'f'), 100100, 100200);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const lowersBefore = lowerPool.lowerCount;
  const a = spec(base, 'a', lower);
  await server.mount(a);
  t.equal(await sh(`ls ${a.mountpoint}/etc`), 'f\n');
  t.equal(await sh(`stat -c %u:%g ${a.mountpoint}/etc/f`), '100100:100200\n');
  // behind the mount (a lower must not change while mounted): a mount of the same
  // lower made now answers from what the first one read
  fs.writeFileSync(path.join(lower, 'etc', 'later'), 'l\n');
  const range = (inside: number, host: number, count: number): MountSpec['uidMap'] => [{ inside, host, count }];
  const b = { ...spec(base, 'b', lower), uidMap: range(0, 100000, 65536), gidMap: range(0, 100000, 65536) };
  await server.mount(b);
  t.equal(lowerPool.lowerCount, lowersBefore + 1, 'one shared lower for both mounts');
  t.equal(await sh(`ls ${b.mountpoint}/etc`), 'f\n', 'the second mount lists what the first one read');
  t.equal(await sh(`stat -c %u:%g ${b.mountpoint}/etc/f`), '100:200\n', 'through its own mapping');
  t.equal(await sh(`stat -c %u:%g ${a.mountpoint}/etc/f`), '100100:100200\n', 'the first mount\'s ids unchanged');
  await server.unmount(a.mountpoint);
  t.equal(await sh(`ls ${b.mountpoint}/etc`), 'f\n', 'kept while a mount of the lower is left');
  await server.unmount(b.mountpoint);
  t.equal(lowerPool.lowerCount, lowersBefore, 'the lower is dropped with its last mount');
  const c = spec(base, 'c', lower);
  await server.mount(c);
  t.equal(await sh(`ls ${c.mountpoint}/etc`), 'f\nlater\n', 'a mount after that reads the lower afresh');
});

t.test('a mount\'s start reads the mount table once and resolves each directory given once', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const lower = oneFileLower(base);
  const second = path.join(base, 'lower2');
  fs.mkdirSync(second);
  fs.writeFileSync(path.join(second, 'g'), 'g\n');
  // a lower given through a symlink, as podman's l/ID links: the checks see its real path
  fs.symlinkSync(second, path.join(base, 'link'));
  const s = spec(base, 'a', [lower, path.join(base, 'link')]);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  // the module object itself (an import would be a copy): what src/ calls through
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeFs = require('node:fs') as typeof fs;
  const { readFileSync, realpathSync } = nodeFs;
  const tableReads: string[] = [];
  const resolved: string[] = [];
  const countingRead = (...a: Parameters<typeof readFileSync>): ReturnType<typeof readFileSync> => {
    if (a[0] === '/proc/self/mountinfo') tableReads.push(String(a[0]));
    return readFileSync(...a);
  };
  const countingRealpath = (p: fs.PathLike, o?: fs.EncodingOption): string => {
    resolved.push(String(p));
    return realpathSync(p, o);
  };
  nodeFs.readFileSync = countingRead as typeof readFileSync;
  nodeFs.realpathSync = Object.assign(countingRealpath, { native: realpathSync.native }) as typeof realpathSync;
  try {
    await server.mount(s);
  } finally {
    nodeFs.readFileSync = readFileSync;
    nodeFs.realpathSync = realpathSync;
  }
  t.equal(tableReads.length, 1, 'the mountpoint check\'s table serves the upper\'s and the lowers\' checks too');
  for (const d of [...s.lowerdirs, s.upperdir!, s.workdir!, s.mountpoint]) {
    t.equal(resolved.filter((p) => p === d).length, 1, `${d} resolved once`);
  }
  t.equal(await sh(`ls ${s.mountpoint}`), 'f\ng\n', 'the mount serves both lowers');
});

t.test('a failed mount leaves nothing behind', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = spec(base, 'x', path.join(base, 'missing-lower'));
  await t.rejects(server.mount(s), 'a missing lower is refused');
  t.equal(server.size, 0, 'not kept as served');
  t.notOk((await mountTable()).has(s.mountpoint), 'not mounted');
  await t.rejects(server.unmount(s.mountpoint), /not served/);
});

t.test('a mount asked for right after an external umount of the same target is served', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const lower = oneFileLower(base);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const s = spec(base, 'a', lower);
  await server.mount(s);
  // unmounted as umount(8) does, from this thread: the mount request comes before the
  // server has seen its connection end (a `mount; ls; umount` loop through a daemon)
  native.umount2(s.mountpoint, 0);
  t.ok(server.has(s.mountpoint), 'the end of the connection is not seen yet');
  await server.mount(s);
  t.ok((await mountTable()).has(s.mountpoint), 'mounted again');
  t.equal(await sh(`cat ${s.mountpoint}/f`), 'f\n', 'and served');
  t.equal(server.size, 1, 'one mount served');
  await t.rejects(server.mount(s), /already served/, 'a mount still in place is still refused');
  await server.unmount(s.mountpoint);
  t.equal(server.size, 0);
});

/** this process's fds open on /dev/fuse (a FUSE connection lives as long as one is open) */
function fuseDeviceFds(): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === '/dev/fuse') n++;
    } catch {
      // closed while listed (readdir's own fd): not a device fd
    }
  }
  return n;
}

t.test('an ended mount leaves no device fd open (nor its connection)', async (t) => {
  const base = await tempDir(t, 'mountserver');
  const lower = oneFileLower(base);
  const server = new MountServer();
  t.teardown(() => server.closeAll());
  const before = fuseDeviceFds();
  const a = spec(base, 'a', lower);
  const b = spec(base, 'b', lower);
  await server.mount(a);
  await server.mount(b);
  t.equal(fuseDeviceFds(), before + 2, 'one device fd per served mount');
  await sh(`cat ${a.mountpoint}/f ${b.mountpoint}/f`);
  await server.unmount(a.mountpoint);
  t.equal(fuseDeviceFds(), before + 1, 'unmounting one closes its device fd');
  // ended from outside, as `umount` by docker or a person would
  await runOk('umount', [b.mountpoint]);
  for (let i = 0; i < 100 && server.has(b.mountpoint); i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk(server.has(b.mountpoint), 'the external umount ended the mount');
  t.equal(fuseDeviceFds(), before, 'and closed its device fd');
});
