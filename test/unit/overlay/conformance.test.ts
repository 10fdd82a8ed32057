// Behaviour matched to kernel overlayfs (redirect_dir=on) where the differential suite
// found stratafs differing: when a new directory is opaque, and how a directory's nlink
// changes reach the kernel's attribute cache.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import type { NodeId } from '../../../src/fuse/api';
import { Notifier } from '../../../src/fuse/bridge/notify';
import { NotifyCode, Size } from '../../../src/fuse/wire/protocol';
import { ctx, fixture, put, walk, writeFile, xattr, R, look } from './fixtures/helpers';


const privateXattr = (p: string, name: string): string | null => xattr(p, `trusted.overlay.${name}`);
const opaque = (p: string): string | null => privateXattr(p, 'opaque');
const redirect = (p: string): string | null => privateXattr(p, 'redirect');

t.test('a new directory is opaque exactly when its parent merges lowers or it replaces a whiteout', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'm/file', 'x');
    put(l0 as string, 'lo/sub/file', 'y');
    put(l0 as string, 'm/gone/file', 'z');
  });
  t.teardown(() => f.cleanup());
  const m = walk(f.ov, 'm');
  await f.ov.mkdir(ctx, m, 'newdir', 0o755);
  t.equal(opaque(path.join(f.upper, 'm/newdir')), 'y', 'parent is a copied-up lower dir');
  await f.ov.mkdir(ctx, 1, 'top', 0o755);
  t.equal(opaque(path.join(f.upper, 'top')), 'y', 'the root merges the lowers');
  const top = walk(f.ov, 'top');
  await f.ov.mkdir(ctx, top, 'child', 0o755);
  t.equal(opaque(path.join(f.upper, 'top/child')), null, 'parent only in the upper');
  await f.ov.mkdir(ctx, walk(f.ov, 'lo/sub'), 'deep', 0o755);
  t.equal(opaque(path.join(f.upper, 'lo/sub/deep')), 'y', 'parent copied up on the way');
  t.equal(opaque(path.join(f.upper, 'lo/sub')), null, 'copy-up itself leaves no opaque mark');
  const gone = walk(f.ov, 'm/gone');
  await f.ov.unlink(ctx, gone, 'file');
  await f.ov.rmdir(ctx, m, 'gone');
  await f.ov.mkdir(ctx, m, 'gone', 0o755);
  t.equal(opaque(path.join(f.upper, 'm/gone')), 'y', 'over a whiteout');
  await f.ov.mkdir(ctx, walk(f.ov, 'm/gone'), 'c', 0o755);
  t.equal(opaque(path.join(f.upper, 'm/gone/c')), null, 'parent opaque: it merges nothing');
  // renames of a directory only in the upper: opaque when it lands in a merging parent
  await f.ov.mkdir(ctx, top, 'mv', 0o755);
  await f.ov.rename(ctx, top, 'mv', m, 'mv', R);
  t.equal(opaque(path.join(f.upper, 'm/mv')), 'y');
  await f.ov.mkdir(ctx, top, 'mv2', 0o755);
  await f.ov.rename(ctx, top, 'mv2', top, 'mv2b', R);
  t.equal(opaque(path.join(f.upper, 'top/mv2b')), null);
});

t.test('a directory copied up as a side effect has its cached attributes invalidated', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'home/user/.profile', 'p');
    fs.mkdirSync(path.join(l0 as string, 'home/user/sub'));
  });
  t.teardown(() => f.cleanup());
  const invalidated: NodeId[] = [];
  f.ov.setInvalidator((n) => invalidated.push(n));
  const home = walk(f.ov, 'home');
  const user = walk(f.ov, 'home/user');
  t.equal(f.ov.getattr(ctx, user).nlink, 3, 'a directory of one lower reports its real nlink');
  await writeFile(f.ov, 'home/user/.profile', 'P');
  t.equal(f.ov.getattr(ctx, user).nlink, 1, 'copied up, it merges: nlink 1 as kernel overlayfs reports');
  t.same(invalidated.sort(), [home, user].sort(), 'both copied-up ancestors, not the file');
  invalidated.length = 0;
  await writeFile(f.ov, 'home/user/.profile', 'Q');
  t.same(invalidated, [], 'nothing copied up, nothing invalidated');
});

t.test('a rename refused because an upper-only target is not empty leaves the source marked, as the kernel does', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'm/ld/in/file', 'x');
    fs.mkdirSync(path.join(l0 as string, 'm/ld2'));
    put(l0 as string, 'm/merged/file', 'y');
  });
  t.teardown(() => f.cleanup());
  const m = walk(f.ov, 'm');
  await f.ov.mkdir(ctx, m, 'full', 0o755);
  const full = walk(f.ov, 'm/full');
  await f.ov.mkdir(ctx, full, 'pu', 0o755);
  await f.ov.mkdir(ctx, full, 'pu2', 0o755);
  await f.ov.mkdir(ctx, walk(f.ov, 'm/full/pu2'), 'x', 0o755);
  await f.ov.mkdir(ctx, m, 'src', 0o755);
  await f.ov.mkdir(ctx, 1, 'top', 0o755);
  const top = walk(f.ov, 'top');
  await f.ov.mkdir(ctx, top, 'plain', 0o755);
  const refused = { errno: constants.errno.ENOTEMPTY } as unknown as Error;
  await t.rejects(f.ov.rename(ctx, m, 'ld', m, 'full', R), refused);
  t.equal(redirect(path.join(f.upper, 'm/ld')), 'ld', 'lower dir copied up with its redirect (same parent)');
  await t.rejects(f.ov.rename(ctx, m, 'ld2', full, 'pu2', R), refused);
  t.equal(redirect(path.join(f.upper, 'm/ld2')), '/m/ld2', 'absolute redirect towards another parent');
  await t.rejects(f.ov.rename(ctx, top, 'plain', m, 'full', R), refused);
  t.equal(opaque(path.join(f.upper, 'top/plain')), 'y', 'upper-only dir headed for a merging parent: opaque');
  t.same(fs.readdirSync(path.join(f.upper, 'm/full')).sort(), ['pu', 'pu2'], 'target untouched');
  // a target that merges lowers is checked first: nothing is copied up
  await t.rejects(f.ov.rename(ctx, walk(f.ov, 'm/ld'), 'in', m, 'merged', R), refused);
  t.notOk(fs.existsSync(path.join(f.upper, 'm/ld/in')), 'source not copied up');
  t.notOk(fs.existsSync(path.join(f.upper, 'm/merged')), 'target not copied up');
});

t.test('a setattr with nothing to change (chown to -1, -1) copies up and drops set-id bits', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/plain', 'data');
    fs.chmodSync(path.join(l0 as string, 'd/plain'), 0o644);
    put(l0 as string, 'd/suid', 'x');
    fs.chmodSync(path.join(l0 as string, 'd/suid'), 0o6755);
    put(l0 as string, 'd/sgid-noexec', 'y');
    fs.chmodSync(path.join(l0 as string, 'd/sgid-noexec'), 0o6745);
    execFileSync('mkfifo', [path.join(l0 as string, 'd/fifo')]);
    fs.chmodSync(path.join(l0 as string, 'd/fifo'), 0o2775);
    fs.mkdirSync(path.join(l0 as string, 'd/sub'));
    fs.chmodSync(path.join(l0 as string, 'd/sub'), 0o2775);
  });
  t.teardown(() => f.cleanup());
  const mode = async (p: string): Promise<number> => (await f.ov.setattr(ctx, walk(f.ov, p), {})).mode & 0o7777;
  t.equal(await mode('d/plain'), 0o644);
  t.equal(fs.readFileSync(path.join(f.upper, 'd/plain'), 'utf8'), 'data', 'copied up with its data');
  t.equal(await mode('d/suid'), 0o755, 'S_ISUID and S_ISGID (group may execute) dropped');
  t.equal(await mode('d/sgid-noexec'), 0o2745, 'S_ISGID kept when the group may not execute');
  t.equal(await mode('d/fifo'), 0o775);
  t.equal(await mode('d/sub'), 0o2775, 'a directory keeps its bits');
  t.ok(fs.statSync(path.join(f.upper, 'd/sub')).isDirectory(), 'and is copied up');
});

t.test('names of one upper file are one node, also after the kernel forgot them', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/file', 'x');
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const c = await f.ov.create(ctx, d, 'a', 0o644, fs.constants.O_RDWR);
  f.ov.release(c.open.fh);
  const b = await f.ov.link(ctx, c.entry.nodeId, 1, 'b');
  t.equal(b.nodeId, c.entry.nodeId, 'a link made through the overlay');
  f.ov.forget(c.entry.nodeId, 2);
  const dEntry = walk(f.ov, 'd');
  f.ov.forget(dEntry, 2);
  const a2 = look(f.ov, walk(f.ov, 'd'), 'a');
  t.not(a2.nodeId, c.entry.nodeId, 'forgotten: a new node');
  const b2 = look(f.ov, 1, 'b');
  t.equal(b2.nodeId, a2.nodeId, 'the other name finds the same node');
  t.equal(b2.attr.ino, a2.attr.ino);
  await f.ov.setattr(ctx, b2.nodeId, { mode: 0o600 });
  t.equal(f.ov.getattr(ctx, a2.nodeId).mode & 0o7777, 0o600);
  await f.ov.unlink(ctx, 1, 'b');
  t.equal(f.ov.getattr(ctx, a2.nodeId).nlink, 1, 'still reachable through the remaining name');
  t.equal(look(f.ov, walk(f.ov, 'd'), 'a').nodeId, a2.nodeId);
  const d2 = walk(f.ov, 'd');
  const l1 = look(f.ov, d2, 'file');
  await f.ov.link(ctx, l1.nodeId, d2, 'file2');
  t.equal(look(f.ov, d2, 'file2').nodeId, l1.nodeId, 'a lower file linked: copied up, one node');
});

t.test('a copied-up lower hard link reports the st_ino of its upper copy (kernel, index=off)', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/a', 'x');
    fs.linkSync(path.join(l0 as string, 'd/a'), path.join(l0 as string, 'd/b'));
    put(l0 as string, 'd/single', 'y');
  });
  t.teardown(() => f.cleanup());
  const lowerIno = BigInt(fs.statSync(path.join(f.lowers[0] as string, 'd/a')).ino);
  const singleIno = BigInt(fs.statSync(path.join(f.lowers[0] as string, 'd/single')).ino);
  const a = walk(f.ov, 'd/a');
  const single = walk(f.ov, 'd/single');
  t.equal(f.ov.getattr(ctx, a).ino, lowerIno, 'before copy-up: the lower st_ino');
  t.equal(f.ov.getattr(ctx, walk(f.ov, 'd/b')).ino, lowerIno);
  const invalidated: NodeId[] = [];
  f.ov.setInvalidator((n) => invalidated.push(n));
  await writeFile(f.ov, 'd/a', 'X');
  await writeFile(f.ov, 'd/single', 'Y');
  t.ok(invalidated.includes(a), 'the kernel is told that st_ino and nlink changed');
  t.notOk(invalidated.includes(single), 'not for a file whose attributes stay');
  const upperIno = BigInt(fs.statSync(path.join(f.upper, 'd/a')).ino);
  t.equal(f.ov.getattr(ctx, a).ino, upperIno, 'copied up: the upper st_ino');
  t.equal(f.ov.getattr(ctx, walk(f.ov, 'd/b')).ino, lowerIno, 'the other name keeps the lower one');
  t.equal(f.ov.getattr(ctx, walk(f.ov, 'd/single')).ino, singleIno, 'a file of one link keeps its origin st_ino');
  const { fh } = f.ov.opendir(ctx, walk(f.ov, 'd'));
  const dino = new Map(f.ov.readdir(fh, 0).map((e) => [e.name, e.ino]));
  f.ov.releasedir(fh);
  t.equal(dino.get('a'), upperIno, 'readdir agrees');
  t.equal(dino.get('b'), lowerIno);
  t.equal(dino.get('single'), singleIno);
});

t.test('the bridge drops cached attributes at once, not after the reply', (t) => {
  const written: Buffer[] = [];
  const n = new Notifier((bufs) => {
    written.push(Buffer.concat(bufs));
  });
  t.equal(n.invalAttrsNow(42), true);
  t.equal(written.length, 1, 'written before invalAttrsNow returns');
  const frame = written[0] as Buffer;
  t.equal(frame.readInt32LE(4), NotifyCode.INVAL_INODE);
  t.equal(frame.readBigUInt64LE(Size.OUT_HEADER), 42n, 'node');
  t.equal(frame.readBigInt64LE(Size.OUT_HEADER + 8), -1n, 'offset -1: attributes only, no page cache');
  const refusing = new Notifier(() => {
    throw new Error('ENOENT');
  });
  t.equal(refusing.invalAttrsNow(7), false, 'a node the kernel forgot is not an error');
  t.end();
});

t.test('renaming a directory over an empty upper-only one leaves no stale path behind', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'lo/sub/file', 'y');
  });
  t.teardown(() => f.cleanup());
  await f.ov.mkdir(ctx, 1, 'dst', 0o755);
  const dst = walk(f.ov, 'dst');
  await f.ov.mkdir(ctx, dst, 'inner', 0o755); // caches an fd for dst while it exists
  await f.ov.rmdir(ctx, dst, 'inner');
  await f.ov.rename(ctx, walk(f.ov, 'lo'), 'sub', 1, 'dst', R);
  const moved = walk(f.ov, 'dst');
  const { entry } = await f.ov.create(ctx, moved, 'new', 0o644, fs.constants.O_WRONLY);
  t.ok(entry.nodeId > 0, 'creating inside the moved directory works');
  t.ok(fs.existsSync(path.join(f.upper, 'dst', 'new')), 'the file lands in the moved directory');
  t.same(fs.readdirSync(path.join(f.upper, 'dst')).sort(), ['new'], 'the old empty directory is gone');
  let errno = 0;
  try {
    await f.ov.rename(ctx, 1, 'lo', 1, 'dst', R);
  } catch (e) {
    errno = (e as { errno: number }).errno;
  }
  t.equal(errno, constants.errno.ENOTEMPTY, 'a non-empty upper-only target is refused by the upper filesystem');
});
