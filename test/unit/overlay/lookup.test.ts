import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import { ctx, errnoOf, exists, fixture, ls, put, readFile, walk, withErrno, look } from './fixtures/helpers';

function mknodWhiteout(p: string): void {
  execFileSync('mknod', [p, 'c', '0', '0']);
}
function setx(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

t.test('upper shadows lower, lower shadows lower', async (t) => {
  const f = await fixture(2, ([l0, l1], upper) => {
    put(l1 as string, 'a', 'l1-a');
    put(l1 as string, 'b', 'l1-b');
    put(l1 as string, 'c', 'l1-c');
    put(l0 as string, 'b', 'l0-b');
    put(upper, 'c', 'up-c');
    put(upper, 'd/x', 'up-x');
    put(l1 as string, 'd/y', 'l1-y');
  });
  t.teardown(() => f.cleanup());
  t.equal(await readFile(f.ov, 'a'), 'l1-a');
  t.equal(await readFile(f.ov, 'b'), 'l0-b');
  t.equal(await readFile(f.ov, 'c'), 'up-c');
  t.same(ls(f.ov, 'd'), ['x', 'y'], 'dirs merge');
  t.same(ls(f.ov, ''), ['a', 'b', 'c', 'd']);
  t.throws(() => walk(f.ov, 'nope'), withErrno(constants.errno.ENOENT));
  const e1 = look(f.ov, 1, 'a');
  const e2 = look(f.ov, 1, 'a');
  t.equal(e1.nodeId, e2.nodeId, 'same node for the same name');
  t.equal(e1.attr.ino, BigInt(fs.statSync(path.join(f.lowers[1] as string, 'a')).ino), 'st_ino is the origin ino');
  t.equal(f.ov.getattr(ctx, walk(f.ov, 'd')).nlink, 1, 'merged dir nlink 1');
});

t.test('whiteout forms hide names', async (t) => {
  const f = await fixture(2, ([l0, l1], upper) => {
    for (const n of ['w1', 'w2', 'w3', 'w4', 'keep']) put(l1 as string, n, n);
    put(l1 as string, 'dir/inner', 'i');
    mknodWhiteout(path.join(upper, 'w1'));
    put(l0 as string, '.wh.w2');
    mknodWhiteout(path.join(l0 as string, 'w3'));
    // xattr whiteout: honoured in a directory marked opaque=x
    put(l0 as string, 'xd/gone');
    put(l1 as string, 'xd/gone', 'lower');
    put(l1 as string, 'xd/stay', 'lower');
    setx(path.join(l0 as string, 'xd'), 'trusted.overlay.opaque', 'x');
    setx(path.join(l0 as string, 'xd/gone'), 'trusted.overlay.whiteout', 'y');
    put(l0 as string, '.wh.dir');
    put(l0 as string, 'dir2/.wh..wh..opq');
    put(l0 as string, 'dir2/top', 't');
    put(l1 as string, 'dir2/below', 'b');
    put(upper, 'dir3/u', 'u');
    put(l1 as string, 'dir3/below', 'b');
    setx(path.join(upper, 'dir3'), 'trusted.overlay.opaque', 'y');
    put(l1 as string, 'dir4/below', 'b');
    put(l0 as string, 'dir4/x', 'b');
    setx(path.join(l0 as string, 'dir4'), 'user.overlay.opaque', 'y');
  });
  t.teardown(() => f.cleanup());
  for (const n of ['w1', 'w2', 'w3', 'dir', '.wh.w2']) t.notOk(exists(f.ov, n), `${n} hidden`);
  t.ok(exists(f.ov, 'w4'));
  t.same(ls(f.ov, ''), ['dir2', 'dir3', 'dir4', 'keep', 'w4', 'xd']);
  t.same(ls(f.ov, 'xd'), ['stay'], 'xattr whiteout in an opaque=x dir');
  t.notOk(exists(f.ov, 'xd/gone'));
  t.same(ls(f.ov, 'dir2'), ['top'], 'AUFS opaque marker stops the merge and is hidden');
  t.notOk(exists(f.ov, 'dir2/below'));
  t.same(ls(f.ov, 'dir3'), ['u'], 'trusted.overlay.opaque=y');
  t.same(ls(f.ov, 'dir4'), ['x'], 'user.overlay.opaque=y accepted');
});

t.test('readdir offsets are stable when read in pieces', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    for (let i = 0; i < 50; i++) put(l0 as string, `d/f${i}`);
    for (let i = 40; i < 60; i++) put(upper, `d/f${i}`);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  const { fh } = f.ov.opendir(ctx, d);
  const got: string[] = [];
  let off = 0;
  let first = true;
  for (;;) {
    const ents = f.ov.readdir(fh, off).slice(0, 7);
    if (ents.length === 0) break;
    for (const e of ents) got.push(e.name);
    off = (ents[ents.length - 1] as { nextOffset: number }).nextOffset;
    if (first) {
      // change the dir in between: the listing already started must not change
      await f.ov.unlink(ctx, d, 'f3');
      await f.ov.create(ctx, d, 'new', 0o644, fs.constants.O_WRONLY).then((r) => f.ov.release(r.open.fh));
      first = false;
    }
  }
  t.equal(got.length, 62, '60 names + . and ..');
  t.equal(new Set(got).size, 62, 'no name twice');
  t.same(got.slice(0, 2), ['.', '..']);
  const again = f.ov.readdir(fh, 0).map((e) => e.name);
  t.ok(again.includes('new') && !again.includes('f3'), 'offset 0 refreshes');
  f.ov.releasedir(fh);
});

t.test('a big directory is listed in batches that together hold every entry once', async (t) => {
  const n = 2000;
  const f = await fixture(1, ([l0], upper) => {
    for (let i = 0; i < n / 2; i++) put(l0 as string, `big/l${i}`);
    for (let i = 0; i < n / 2; i++) put(upper, `big/u${i}`);
  });
  t.teardown(() => f.cleanup());
  const { fh } = f.ov.opendir(ctx, walk(f.ov, 'big'));
  const sizes: number[] = [];
  const names: string[] = [];
  let off = 0;
  for (;;) {
    const ents = f.ov.readdir(fh, off);
    if (ents.length === 0) break;
    sizes.push(ents.length);
    for (const e of ents) names.push(e.name);
    off = (ents[ents.length - 1] as { nextOffset: number }).nextOffset;
  }
  f.ov.releasedir(fh);
  t.ok(sizes.length > 1 && Math.max(...sizes) <= 512, `no call returns the whole rest (${sizes.join(',')})`);
  t.equal(names.length, n + 2);
  t.equal(new Set(names).size, n + 2, 'no name twice');
  t.equal(ls(f.ov, 'big').length, n);
});

t.test('hostile symlinks in a lower never lead outside', async (t) => {
  const canaryDir = fs.mkdtempSync('/tmp/stratafs-canary-');
  const canary = path.join(canaryDir, 'canary');
  fs.writeFileSync(canary, 'secret');
  const f = await fixture(1, ([l0]) => {
    fs.symlinkSync('/', path.join(l0 as string, 'etc'));
    fs.symlinkSync('../../..', path.join(l0 as string, 'x'));
    fs.symlinkSync(canaryDir, path.join(l0 as string, 'c'));
    fs.symlinkSync(canary, path.join(l0 as string, 'cf'));
  });
  t.teardown(() => {
    f.cleanup();
    fs.rmSync(canaryDir, { recursive: true, force: true });
  });
  const before = fs.statSync(canary);
  const rel = path.relative('/', canary);
  for (const p of [`etc/${rel}`, `x/${rel}`, 'c/canary']) {
    t.throws(() => walk(f.ov, p), `lookup of ${p} fails`);
  }
  const etc = walk(f.ov, 'etc');
  t.equal(f.ov.getattr(ctx, etc).mode & fs.constants.S_IFMT, fs.constants.S_IFLNK, 'symlink seen as symlink');
  t.equal(f.ov.readlink(ctx, etc), '/');
  t.throws(() => f.ov.opendir(ctx, etc), withErrno(constants.errno.ENOTDIR));
  for (const n of ['cf', 'c', 'x', 'etc']) {
    const id = walk(f.ov, n);
    await t.rejects(Promise.resolve().then(() => f.ov.open(ctx, id, fs.constants.O_RDWR)), `open ${n} rw fails`);
    await f.ov.setattr(ctx, id, { mtime: { sec: 1, nsec: 0 }, atime: { sec: 1, nsec: 0 } });
    try {
      await f.ov.setattr(ctx, id, { mode: 0o777 });
    } catch (e) {
      t.equal(errnoOf(e), constants.errno.EOPNOTSUPP, 'chmod of a symlink refused');
    }
    await f.ov.setxattr(ctx, id, 'trusted.test', Buffer.from('x'), 0).catch(() => undefined);
  }
  await t.rejects(Promise.resolve().then(() => f.ov.mkdir(ctx, walk(f.ov, 'c'), 'z', 0o755)));
  await f.ov.unlink(ctx, 1, 'cf');
  await f.ov.rename(ctx, 1, 'c', 1, 'c2', { noReplace: false, exchange: false, whiteout: false });
  const after = fs.statSync(canary);
  t.equal(fs.readFileSync(canary, 'utf8'), 'secret');
  t.equal(after.mode, before.mode);
  t.equal(after.mtimeMs, before.mtimeMs);
  t.same(fs.readdirSync(canaryDir), ['canary']);
  t.equal(execFileSync('getfattr', ['-d', '-m', '-', canary]).toString(), '', 'no xattr set on the canary');
});

t.test('readdir d_ino matches st_ino, merged and redirected dirs included', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'm/a', '');
    put(upper, 'm/b', '');
    put(l0 as string, 'r/c', '');
    put(upper, 'pure/d', '');
    put(l0 as string, 'file', '');
  });
  t.teardown(() => f.cleanup());
  await f.ov.rename(ctx, 1, 'r', 1, 'r2', { noReplace: false, exchange: false, whiteout: false });
  const { fh } = f.ov.opendir(ctx, 1);
  const ents = f.ov.readdir(fh, 0).filter((e) => e.name !== '.' && e.name !== '..');
  f.ov.releasedir(fh);
  t.same(ents.map((e) => e.name).sort(), ['file', 'm', 'pure', 'r2']);
  for (const e of ents) {
    const a = look(f.ov, 1, e.name).attr;
    t.equal(e.ino, a.ino, `${e.name}: d_ino == st_ino`);
    t.equal(e.type, a.mode & fs.constants.S_IFMT, `${e.name}: type`);
  }
});
