import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants, tmpdir } from 'node:os';
import { INLINE_COPY_MAX } from '../../../src/overlay/copyup';
import { ctx, fixture, readFile, walk, writeFile, withErrno, workLeftovers } from './fixtures/helpers';

const O = fs.constants;

t.test('copy-up keeps data, mode, owner, ns times, xattrs and holes', async (t) => {
  const f = await fixture(1, ([l0]) => {
    const p = path.join(l0 as string, 'dir/file');
    fs.mkdirSync(path.dirname(p));
    fs.writeFileSync(p, 'hello world');
    fs.chmodSync(p, 0o4751);
    fs.chownSync(p, 1234, 2345);
    fs.chmodSync(p, 0o4751);
    execFileSync('setfattr', ['-n', 'user.color', '-v', 'blue', p]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.origin', '-v', 'bogus', p]);
    execFileSync('touch', ['-h', '-d', '2001-02-03 04:05:06.123456789', p]);
    fs.chmodSync(path.dirname(p), 0o750);
    // sparse: 8 MiB with data only at 4 MiB
    const s = path.join(l0 as string, 'sparse');
    const fd = fs.openSync(s, 'w');
    fs.writeSync(fd, Buffer.from('data'), 0, 4, 4 << 20);
    fs.ftruncateSync(fd, 8 << 20);
    fs.closeSync(fd);
  });
  t.teardown(() => f.cleanup());
  const lowerStat = fs.statSync(path.join(f.lowers[0] as string, 'dir/file'), { bigint: true });
  const id = walk(f.ov, 'dir/file');
  const inoBefore = f.ov.getattr(ctx, id).ino;
  const { fh } = await f.ov.open(ctx, id, O.O_RDWR);
  await f.ov.write(fh, 0, Buffer.from('HELLO'));
  f.ov.release(fh);
  const up = path.join(f.upper, 'dir/file');
  const s = fs.statSync(up, { bigint: true });
  t.equal(fs.readFileSync(up, 'utf8'), 'HELLO world');
  t.equal(s.mode & 0o7777n, 0o4751n, 'mode incl. setuid');
  t.equal(s.uid, 1234n);
  t.equal(s.gid, 2345n);
  t.equal(s.atimeNs, lowerStat.atimeNs, 'atime with ns');
  t.equal(execFileSync('getfattr', ['--only-values', '-n', 'user.color', up]).toString(), 'blue');
  t.throws(() => execFileSync('getfattr', ['-n', 'trusted.overlay.origin', up], { stdio: 'pipe' }), 'private xattr not copied');
  t.equal(fs.statSync(path.join(f.upper, 'dir')).mode & 0o7777, 0o750, 'parent copied up with its mode');
  t.equal(f.ov.getattr(ctx, id).ino, inoBefore, 'st_ino stable across copy-up');
  t.same(workLeftovers(f.work), [], 'nothing left in the work dir');

  // a pure metadata change keeps mtime from the lower (ns)
  const sp = walk(f.ov, 'sparse');
  await f.ov.setattr(ctx, sp, { mode: 0o600 });
  const su = fs.statSync(path.join(f.upper, 'sparse'), { bigint: true });
  const sl = fs.statSync(path.join(f.lowers[0] as string, 'sparse'), { bigint: true });
  t.equal(su.mtimeNs, sl.mtimeNs, 'mtime with ns');
  t.equal(su.size, 8n << 20n);
  t.ok(su.blocks * 512n < 1n << 20n, `holes stay holes (${su.blocks} blocks)`);
  t.equal(fs.readFileSync(path.join(f.upper, 'sparse')).subarray(4 << 20, (4 << 20) + 4).toString(), 'data');
});

t.test('copy-up of a regular file in one job: escaped xattrs, mtime, small holes, no xattrs', async (t) => {
  const f = await fixture(1, ([l0]) => {
    const esc = path.join(l0 as string, 'esc');
    fs.writeFileSync(esc, 'escaped');
    // a user's own trusted.overlay.X, escaped on disk (kernel 6.7+): copied
    execFileSync('setfattr', ['-n', 'trusted.overlay.overlay.mine', '-v', 'kept', esc]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', esc]);
    execFileSync('touch', ['-h', '-d', '2003-04-05 06:07:08.987654321', esc]);
    fs.writeFileSync(path.join(l0 as string, 'plain'), 'no xattrs');
    // a small file with a hole in front
    const h = path.join(l0 as string, 'holey');
    const fd = fs.openSync(h, 'w');
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, 32 << 10);
    fs.closeSync(fd);
  });
  t.teardown(() => f.cleanup());
  const lowerEsc = fs.statSync(path.join(f.lowers[0] as string, 'esc'), { bigint: true });
  const esc = walk(f.ov, 'esc');
  const { fh } = await f.ov.open(ctx, esc, O.O_WRONLY);
  f.ov.release(fh);
  const up = path.join(f.upper, 'esc');
  t.equal(execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.overlay.mine', up]).toString(), 'kept', 'escaped xattr copied');
  t.throws(() => execFileSync('getfattr', ['-n', 'trusted.overlay.opaque', up], { stdio: 'pipe' }), 'private xattr not copied');
  t.equal(f.ov.getxattr(ctx, esc, 'trusted.overlay.mine')?.toString(), 'kept', 'and shown under its name');
  t.equal(fs.statSync(up, { bigint: true }).mtimeNs, lowerEsc.mtimeNs, 'mtime with ns');

  const plain = walk(f.ov, 'plain');
  t.equal(f.ov.getxattr(ctx, plain, 'user.x'), null, 'the lower has none (its index knows)');
  await writeFile(f.ov, 'plain', 'NO');
  t.equal(fs.readFileSync(path.join(f.upper, 'plain'), 'utf8'), 'NO xattrs');
  t.equal(f.ov.getxattr(ctx, plain, 'security.capability'), null, 'a copy without xattrs has none');
  await f.ov.setxattr(ctx, plain, 'user.later', Buffer.from('v'), 0);
  t.equal(f.ov.getxattr(ctx, plain, 'user.later')?.toString(), 'v', 'one set after the copy-up is seen');

  await writeFile(f.ov, 'holey', 'TA');
  const hb = fs.readFileSync(path.join(f.upper, 'holey'));
  t.equal(hb.length, (32 << 10) + 4);
  t.ok(hb.subarray(2, 32 << 10).every((b) => b === 0), 'the hole reads as zeros');
  t.equal(hb.subarray(0, 2).toString() + hb.subarray(32 << 10).toString(), 'TAtail');
  t.same(workLeftovers(f.work), [], 'nothing left in the work dir');
});

t.test('read-only open does not copy up; O_TRUNC copies no data', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.writeFileSync(path.join(l0 as string, 'a'), 'lower a');
    fs.writeFileSync(path.join(l0 as string, 'b'), 'lower b');
  });
  t.teardown(() => f.cleanup());
  t.equal(await readFile(f.ov, 'a'), 'lower a');
  t.notOk(fs.existsSync(path.join(f.upper, 'a')), 'no copy-up on read');
  const { fh, keepCache } = await f.ov.open(ctx, walk(f.ov, 'b'), O.O_WRONLY | O.O_TRUNC);
  t.equal(keepCache, false);
  t.equal(fs.statSync(path.join(f.upper, 'b')).size, 0);
  f.ov.release(fh);
  t.equal(await readFile(f.ov, 'b'), '');
});

t.test('concurrent opens copy up once', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.writeFileSync(path.join(l0 as string, 'big'), Buffer.alloc(4 << 20, 7));
  });
  t.teardown(() => f.cleanup());
  const id = walk(f.ov, 'big');
  const opens = await Promise.all(Array.from({ length: 8 }, () => f.ov.open(ctx, id, O.O_RDWR)));
  const ino = fs.statSync(path.join(f.upper, 'big')).ino;
  // all handles on the same upper file: a write through one is read through another
  await f.ov.write((opens[0] as { fh: number }).fh, 0, Buffer.from('X'));
  const b = await f.ov.read((opens[7] as { fh: number }).fh, 0, 2);
  t.equal(b.toString('latin1'), 'X\x07');
  for (const o of opens) f.ov.release(o.fh);
  t.equal(fs.statSync(path.join(f.upper, 'big')).ino, ino);
  t.equal(fs.statSync(path.join(f.upper, 'big')).size, 4 << 20);
  t.same(workLeftovers(f.work), []);
});

t.test('setattr: chown, truncate, utimens with now and omit', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.writeFileSync(path.join(l0 as string, 'f'), '0123456789');
    execFileSync('touch', ['-d', '2000-01-01 00:00:00.5', path.join(l0 as string, 'f')]);
  });
  t.teardown(() => f.cleanup());
  const id = walk(f.ov, 'f');
  let a = await f.ov.setattr(ctx, id, { uid: 77, gid: 88 });
  t.equal(a.uid, 77);
  t.equal(a.gid, 88);
  a = await f.ov.setattr(ctx, id, { size: 4 });
  t.equal(a.size, 4);
  t.equal(await readFile(f.ov, 'f'), '0123');
  a = await f.ov.setattr(ctx, id, { atime: { sec: 1000, nsec: 999 } });
  t.equal(a.atimeSec, 1000);
  t.equal(a.atimeNsec, 999);
  const m = a.mtimeSec;
  a = await f.ov.setattr(ctx, id, { mtime: 'now' });
  t.equal(a.atimeSec, 1000, 'atime omitted');
  t.ok(a.mtimeSec >= m && a.mtimeSec > 1e9, 'mtime now');
  await writeFile(f.ov, 'f', 'ab');
  t.equal(await readFile(f.ov, 'f'), 'ab23');
  await t.rejects(Promise.resolve().then(() => f.ov.setattr(ctx, walk(f.ov, ''), { size: 0 })), withErrno(constants.errno.EISDIR));
});

t.test('copy-up completes when the parent times cannot be put back', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    fs.mkdirSync(path.join(l0 as string, 'd'));
    fs.writeFileSync(path.join(l0 as string, 'd/file'), 'lower');
    fs.mkdirSync(path.join(l0 as string, 'd/sub'));
    fs.mkdirSync(path.join(upper, 'd'));
  });
  // append-only: names can be added, but utimensat on it fails with EPERM
  const dir = path.join(f.upper, 'd');
  execFileSync('chattr', ['+a', dir]);
  t.teardown(() => {
    execFileSync('chattr', ['-a', dir]);
    f.cleanup();
  });
  const id = walk(f.ov, 'd/file');
  const { fh } = await f.ov.open(ctx, id, O.O_RDWR);
  await f.ov.write(fh, 0, Buffer.from('UPPER'));
  f.ov.release(fh);
  t.equal(fs.readFileSync(path.join(dir, 'file'), 'latin1'), 'UPPER', 'file copied up and written');
  // a later copy-up-triggering change finds the node in the upper (no EEXIST)
  const a = await f.ov.setattr(ctx, id, { mode: 0o600 });
  t.equal(a.mode & 0o7777, 0o600);
  const sub = walk(f.ov, 'd/sub');
  await f.ov.setattr(ctx, sub, { mode: 0o700 });
  t.equal(fs.statSync(path.join(dir, 'sub')).mode & 0o7777, 0o700, 'directory copied up too');
  await f.ov.setattr(ctx, sub, { mode: 0o750 });
  t.same(workLeftovers(f.work), [], 'nothing left in the work dir');
});

t.test('a small file is copied up without the thread pool, a larger one on it', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.writeFileSync(path.join(l0 as string, 'small'), 'small file');
    fs.writeFileSync(path.join(l0 as string, 'large'), Buffer.alloc(INLINE_COPY_MAX + 1, 7));
  });
  t.teardown(() => f.cleanup());
  const small = walk(f.ov, 'small');
  const large = walk(f.ov, 'large');
  // every thread of the pool waits in a read of an empty FIFO until released
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'stratafs-pool-'));
  const fifos: number[] = [];
  const reads: Promise<unknown>[] = [];
  const release = (): void => {
    for (const fd of fifos.splice(0)) fs.writeSync(fd, 'x');
  };
  t.teardown(async () => {
    release();
    await Promise.all(reads);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  for (let i = 0; i < threads; i++) {
    const p = path.join(dir, `fifo${i}`);
    execFileSync('mkfifo', [p]);
    const fd = fs.openSync(p, fs.constants.O_RDWR);
    fifos.push(fd);
    reads.push(new Promise((resolve) => fs.read(fd, Buffer.alloc(1), 0, 1, null, () => {
      fs.closeSync(fd);
      resolve(null);
    })));
  }
  const pending = Symbol('pending');
  const waited = (p: unknown, ms: number) =>
    Promise.race([p, new Promise((resolve) => setTimeout(() => resolve(pending), ms))]);
  const opened = await waited(f.ov.open(ctx, small, O.O_WRONLY | O.O_APPEND), 5000);
  t.not(opened, pending, 'the small copy-up finished while the pool was busy');
  if (opened !== pending) f.ov.release((opened as { fh: number }).fh);
  t.equal(fs.readFileSync(path.join(f.upper, 'small'), 'utf8'), 'small file');
  const big = f.ov.open(ctx, large, O.O_WRONLY);
  t.equal(await waited(big, 200), pending, 'the larger copy-up waits for the pool');
  release();
  f.ov.release((await big).fh);
  t.equal(fs.statSync(path.join(f.upper, 'large')).size, INLINE_COPY_MAX + 1);
  t.same(workLeftovers(f.work), []);
});

t.test('copy-up leaves the lower file\'s atime as it was (kernel overlayfs: noatime lowers)', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (const n of ['small', 'large']) {
      const p = path.join(l0 as string, n);
      fs.writeFileSync(p, n === 'small' ? 'small' : Buffer.alloc(INLINE_COPY_MAX + 1, 1));
      // atime before mtime: any read would move it, relatime or not
      execFileSync('touch', ['-a', '-d', '2001-02-03 04:05:06', p]);
    }
  });
  t.teardown(() => f.cleanup());
  for (const n of ['small', 'large']) {
    const lower = path.join(f.lowers[0] as string, n);
    const before = fs.statSync(lower, { bigint: true }).atimeNs;
    const { fh } = await f.ov.open(ctx, walk(f.ov, n), O.O_WRONLY | O.O_APPEND);
    f.ov.release(fh);
    t.equal(fs.statSync(path.join(f.upper, n)).size, n === 'small' ? 5 : INLINE_COPY_MAX + 1, `${n}: copied`);
    t.equal(fs.statSync(lower, { bigint: true }).atimeNs, before, `${n}: lower atime unchanged`);
  }
});
