/**
 * The native addon's syscall wrappers, each exercised on a fresh temp directory (as
 * root: trusted.* xattrs, whiteouts, chown and a tmpfs mount need it).
 */
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { native, C, isNativeError, type NativeError } from '../../src/native';

const E = os.constants.errno;
const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_WRONLY, S_IFMT, S_IFCHR, S_IFREG, S_IFLNK, S_IFDIR } = fs.constants;

/** runs fn, which must throw a NativeError with this code (and the matching errno) */
function throwsErrno(tt: Test, fn: () => unknown, codes: string | string[], syscall?: string): NativeError {
  const want = Array.isArray(codes) ? codes : [codes];
  try {
    fn();
  } catch (e) {
    tt.ok(isNativeError(e), 'a native error');
    const err = e as NativeError;
    tt.ok(want.includes(err.code), `code ${err.code} is one of ${want.join(', ')}`);
    tt.equal(err.errno, E[err.code as keyof typeof E], 'errno matches the code');
    if (syscall) tt.equal(err.syscall, syscall);
    return err;
  }
  tt.fail(`expected ${want.join('/')}`);
  return new Error('not thrown') as NativeError;
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-native-'));
const dirfd = native.openat(C.AT_FDCWD, root, O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
t.teardown(() => {
  native.close(dirfd);
  fs.rmSync(root, { recursive: true, force: true });
});

let seq = 0;
/** a new empty directory under root, with an fd on it */
function subdir(): { dir: string; fd: number } {
  const dir = path.join(root, `d${seq++}`);
  fs.mkdirSync(dir);
  const fd = native.openat(C.AT_FDCWD, dir, O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(fd));
  return { dir, fd };
}

function fstat(fd: number) {
  return native.statx(fd, '', C.AT_EMPTY_PATH);
}

/** glibc's dev_t split, to compare with Node's stat().dev */
function devParts(dev: bigint): [number, number] {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return [major, minor];
}

t.test('constants come from the headers', async (tt) => {
  tt.equal(C.O_DIRECTORY, fs.constants.O_DIRECTORY);
  tt.equal(C.O_NOFOLLOW, fs.constants.O_NOFOLLOW);
  tt.equal(C.PATH_MAX > 255, true);
  for (const [name, value] of Object.entries(C)) tt.ok(Number.isInteger(value), `${name} is an integer`);
  tt.ok(Object.isFrozen(C));
});

t.test('openat and openat2', async (tt) => {
  const { dir, fd } = subdir();
  fs.symlinkSync('/', path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'file'), 'data');

  const f = native.openat2(fd, 'file', O_RDONLY | C.O_CLOEXEC, 0, C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS);
  const buf = Buffer.alloc(10);
  tt.equal(native.pread(f, buf, 0), 4);
  tt.equal(buf.subarray(0, 4).toString(), 'data');
  native.close(f);

  const resolve = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS;
  throwsErrno(tt, () => native.openat2(fd, 'etc/passwd', O_RDONLY, 0, resolve), ['ELOOP', 'EXDEV'], 'openat2');
  throwsErrno(tt, () => native.openat2(fd, 'etc/passwd', O_RDONLY, 0, C.RESOLVE_BENEATH), 'EXDEV');
  throwsErrno(tt, () => native.openat2(fd, '../x', O_RDONLY, 0, C.RESOLVE_BENEATH), 'EXDEV');
  // RESOLVE_IN_ROOT: the absolute link resolves inside dir, where there is no passwd
  throwsErrno(tt, () => native.openat2(fd, 'etc/passwd', O_RDONLY, 0, C.RESOLVE_IN_ROOT), 'ENOENT');

  const created = native.openat2(fd, 'new', O_CREAT | O_EXCL | O_WRONLY | C.O_CLOEXEC, 0o640, C.RESOLVE_BENEATH);
  tt.equal(fstat(created).mode, S_IFREG | 0o640);
  native.close(created);
  throwsErrno(tt, () => native.openat(fd, 'new', O_CREAT | O_EXCL | O_WRONLY, 0o600), 'EEXIST', 'openat');

  const link = native.openat(fd, 'etc', C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  tt.equal(fstat(link).mode & S_IFMT, S_IFLNK, 'O_PATH|O_NOFOLLOW opens the link itself');
  native.close(link);

  const tmp = native.openat(fd, '.', C.O_TMPFILE | O_RDWR, 0o600);
  tt.equal(fstat(tmp).nlink, 0, 'O_TMPFILE has no name');
  native.close(tmp);
});

t.test('statx matches stat(2)', async (tt) => {
  const { dir, fd } = subdir();
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, Buffer.alloc(12345, 1));
  const st = native.statx(fd, 'f', C.AT_SYMLINK_NOFOLLOW);
  const ref = fs.statSync(file, { bigint: true });
  tt.equal(st.ino, ref.ino);
  tt.equal(typeof st.ino, 'bigint');
  tt.equal(st.size, 12345);
  tt.equal(st.mode, Number(ref.mode));
  tt.equal(st.nlink, 1);
  tt.equal(st.uid, Number(ref.uid));
  tt.equal(st.gid, Number(ref.gid));
  tt.equal(st.blocks, Number(ref.blocks));
  tt.equal(st.blksize, Number(ref.blksize));
  tt.same([st.devMajor, st.devMinor], devParts(ref.dev));
  tt.equal(BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec), ref.mtimeNs);
  tt.equal(BigInt(st.ctimeSec) * 1_000_000_000n + BigInt(st.ctimeNsec), ref.ctimeNs);
  tt.equal(BigInt(st.atimeSec) * 1_000_000_000n + BigInt(st.atimeNsec), ref.atimeNs);

  fs.symlinkSync('f', path.join(dir, 'l'));
  tt.equal(native.statx(fd, 'l', C.AT_SYMLINK_NOFOLLOW).mode & S_IFMT, S_IFLNK);
  tt.equal(native.statx(fd, 'l', 0).ino, ref.ino, 'follows without AT_SYMLINK_NOFOLLOW');
  tt.equal(fstat(fd).mode & S_IFMT, S_IFDIR);
  throwsErrno(tt, () => native.statx(fd, 'missing', 0), 'ENOENT', 'statx');
});

t.test('mknodat makes a 0/0 whiteout', async (tt) => {
  const { fd } = subdir();
  native.mknodat(fd, 'wh', S_IFCHR | 0o600, 0, 0);
  const st = native.statx(fd, 'wh', C.AT_SYMLINK_NOFOLLOW);
  tt.equal(st.mode, S_IFCHR | 0o600);
  tt.same([st.rdevMajor, st.rdevMinor], [0, 0]);
  native.mknodat(fd, 'null', S_IFCHR | 0o666, 1, 3);
  const n = native.statx(fd, 'null', 0);
  tt.same([n.rdevMajor, n.rdevMinor], [1, 3]);
  throwsErrno(tt, () => native.mknodat(fd, 'wh', S_IFCHR, 0, 0), 'EEXIST', 'mknodat');
});

t.test('renameat2 NOREPLACE, EXCHANGE, WHITEOUT', async (tt) => {
  const { dir, fd } = subdir();
  fs.writeFileSync(path.join(dir, 'a'), 'A');
  fs.writeFileSync(path.join(dir, 'b'), 'B');
  throwsErrno(tt, () => native.renameat2(fd, 'a', fd, 'b', C.RENAME_NOREPLACE), 'EEXIST', 'renameat2');
  native.renameat2(fd, 'a', fd, 'b', C.RENAME_EXCHANGE);
  tt.equal(fs.readFileSync(path.join(dir, 'a'), 'utf8'), 'B');
  tt.equal(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'A');
  native.renameat2(fd, 'a', fd, 'c', C.RENAME_NOREPLACE);
  tt.notOk(fs.existsSync(path.join(dir, 'a')));
  native.renameat2(fd, 'c', fd, 'd', C.RENAME_WHITEOUT);
  const wh = native.statx(fd, 'c', C.AT_SYMLINK_NOFOLLOW);
  tt.equal(wh.mode & S_IFMT, S_IFCHR, 'the old name is a whiteout');
  tt.same([wh.rdevMajor, wh.rdevMinor], [0, 0]);
  tt.equal(fs.readFileSync(path.join(dir, 'd'), 'utf8'), 'B');
  throwsErrno(tt, () => native.renameat2(fd, 'x', fd, 'y', C.RENAME_EXCHANGE), 'ENOENT');
});

t.test('links, symlinks, directories, owners and modes', async (tt) => {
  const { dir, fd } = subdir();
  fs.writeFileSync(path.join(dir, 'f'), 'x');
  native.linkat(fd, 'f', fd, 'g', 0);
  tt.equal(native.statx(fd, 'f', 0).nlink, 2);
  native.unlinkat(fd, 'g', 0);
  tt.equal(native.statx(fd, 'f', 0).nlink, 1);

  const target = 'caf\xe9/../' + 'x'.repeat(3000);
  native.symlinkat(target, fd, 'l');
  tt.equal(native.readlinkat(fd, 'l'), target, 'a long, non-UTF-8 target round-trips');
  tt.same(fs.readlinkSync(path.join(dir, 'l'), { encoding: 'buffer' }), Buffer.from(target, 'latin1'));
  throwsErrno(tt, () => native.readlinkat(fd, 'f'), 'EINVAL', 'readlinkat');

  native.mkdirat(fd, 'sub', 0o750);
  tt.equal(native.statx(fd, 'sub', 0).mode, S_IFDIR | 0o750);
  throwsErrno(tt, () => native.unlinkat(fd, 'sub', 0), 'EISDIR', 'unlinkat');
  native.unlinkat(fd, 'sub', C.AT_REMOVEDIR);
  tt.notOk(fs.existsSync(path.join(dir, 'sub')));

  native.fchownat(fd, 'l', 1234, 5678, C.AT_SYMLINK_NOFOLLOW);
  const ls = native.statx(fd, 'l', C.AT_SYMLINK_NOFOLLOW);
  tt.same([ls.uid, ls.gid], [1234, 5678], 'the link itself is chowned');
  tt.equal(native.statx(fd, 'f', 0).uid, 0);
  native.fchownat(fd, 'f', 42, -1, 0);
  tt.same([native.statx(fd, 'f', 0).uid, native.statx(fd, 'f', 0).gid], [42, 0], '-1 keeps the gid');
  native.fchmodat(fd, 'f', 0o604);
  tt.equal(native.statx(fd, 'f', 0).mode, S_IFREG | 0o604);

  const f = native.openat(fd, 'f', O_RDWR | C.O_CLOEXEC, 0);
  native.fchmod(f, 0o600);
  native.fchown(f, 7, 8);
  const st = fstat(f);
  tt.same([st.mode, st.uid, st.gid], [S_IFREG | 0o600, 7, 8]);
  native.ftruncate(f, 100000);
  tt.equal(fstat(f).size, 100000);
  native.fsync(f, false);
  native.fsync(f, true);
  native.syncfs(f);
  native.close(f);
  throwsErrno(tt, () => native.close(f), 'EBADF', 'close');
});

t.test('utimensat and futimens keep nanoseconds and honour UTIME_OMIT/NOW', async (tt) => {
  const { dir, fd } = subdir();
  fs.writeFileSync(path.join(dir, 'f'), 'x');
  native.utimensat(fd, 'f', 1_000_000_000, 123_456_789, 1_100_000_000, 987_654_321, 0);
  let st = native.statx(fd, 'f', 0);
  tt.same([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec], [1_000_000_000, 123_456_789, 1_100_000_000, 987_654_321]);

  native.utimensat(fd, 'f', 0, C.UTIME_OMIT, 1_200_000_000, 5, 0);
  st = native.statx(fd, 'f', 0);
  tt.same([st.atimeSec, st.atimeNsec], [1_000_000_000, 123_456_789], 'UTIME_OMIT keeps atime');
  tt.same([st.mtimeSec, st.mtimeNsec], [1_200_000_000, 5]);

  const before = Math.floor(Date.now() / 1000) - 1;
  native.utimensat(fd, 'f', 0, C.UTIME_OMIT, 0, C.UTIME_NOW, 0);
  st = native.statx(fd, 'f', 0);
  tt.ok(st.mtimeSec >= before && st.mtimeSec <= before + 10, 'UTIME_NOW sets the current time');

  fs.symlinkSync('f', path.join(dir, 'l'));
  native.utimensat(fd, 'l', 5, 6, 7, 8, C.AT_SYMLINK_NOFOLLOW);
  const ls = native.statx(fd, 'l', C.AT_SYMLINK_NOFOLLOW);
  tt.same([ls.mtimeSec, ls.mtimeNsec], [7, 8], 'the link itself');
  tt.not(native.statx(fd, 'f', 0).mtimeSec, 7);

  const f = native.openat(fd, 'f', O_RDWR, 0);
  native.futimens(f, 11, 12, 13, 14);
  st = fstat(f);
  tt.same([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec], [11, 12, 13, 14]);
  native.futimens(f, 0, C.UTIME_OMIT, -1, 999_999_999);
  st = fstat(f);
  tt.same([st.atimeSec, st.mtimeSec, st.mtimeNsec], [11, -1, 999_999_999], 'pre-1970 times');
  native.close(f);
  throwsErrno(tt, () => native.utimensat(fd, 'f', 0, 1_000_000_000, 0, 0, 0), 'EINVAL', 'utimensat');
});

t.test('getdents lists every entry with byte-string names', async (tt) => {
  const { dir, fd } = subdir();
  native.mkdirat(fd, 'caf\xe9', 0o755);
  fs.writeFileSync(path.join(dir, 'reg'), '');
  fs.symlinkSync('reg', path.join(dir, 'lnk'));
  native.mknodat(fd, 'wh', S_IFCHR, 0, 0);
  const entries = native.getdents(fd);
  const byName = new Map(entries.map((e) => [e.name, e]));
  tt.same([...byName.keys()].sort(), ['.', '..', 'caf\xe9', 'lnk', 'reg', 'wh']);
  tt.equal(byName.get('caf\xe9')?.type, C.DT_DIR);
  tt.equal(byName.get('reg')?.type, C.DT_REG);
  tt.equal(byName.get('lnk')?.type, C.DT_LNK);
  tt.equal(byName.get('wh')?.type, C.DT_CHR);
  tt.equal(byName.get('reg')?.ino, native.statx(fd, 'reg', 0).ino);
  tt.same(
    fs.readdirSync(dir, { encoding: 'buffer' }).map((b) => b.toString('hex')).sort(),
    ['636166e9', '6c6e6b', '726567', '7768'],
    'the name on disk is the raw bytes',
  );
  tt.same(native.getdents(fd).map((e) => e.name).sort(), [...byName.keys()].sort(), 'again from offset 0');

  // more than one getdents64 buffer's worth
  const big = subdir();
  const long = 'n'.repeat(200);
  for (let i = 0; i < 800; i++) native.mknodat(big.fd, `${long}${i}`, S_IFREG | 0o644, 0, 0);
  const names = native.getdents(big.fd).map((e) => e.name);
  tt.equal(names.length, 802);
  tt.equal(new Set(names).size, 802, 'no duplicates');
  const f = native.openat(fd, 'reg', O_RDONLY, 0);
  throwsErrno(tt, () => native.getdents(f), 'ENOTDIR', 'getdents64');
  native.close(f);
});

t.test('xattrs by path and by fd', async (tt) => {
  const { dir, fd } = subdir();
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, '');
  fs.symlinkSync('f', path.join(dir, 'l'));
  const link = path.join(dir, 'l');

  native.setxattr(file, 'trusted.overlay.opaque', Buffer.from('y'), 0, true);
  native.setxattr(file, 'user.caf\xe9', Buffer.from([0, 1, 2, 255]), 0, false);
  tt.same(native.getxattr(file, 'trusted.overlay.opaque', true), Buffer.from('y'));
  tt.same(native.getxattr(link, 'user.caf\xe9', true), Buffer.from([0, 1, 2, 255]), 'follows the link');
  tt.same(native.listxattr(file, true).sort(), ['trusted.overlay.opaque', 'user.caf\xe9']);
  tt.same(native.listxattr(link, false), [], 'the link itself has none');
  throwsErrno(tt, () => native.getxattr(link, 'user.caf\xe9', false), 'ENODATA', 'lgetxattr');

  native.setxattr(link, 'trusted.overlay.redirect', Buffer.from('/a/b'), 0, false);
  tt.same(native.getxattr(link, 'trusted.overlay.redirect', false), Buffer.from('/a/b'));
  throwsErrno(tt, () => native.getxattr(file, 'trusted.overlay.redirect', true), 'ENODATA', 'getxattr');

  throwsErrno(tt, () => native.setxattr(file, 'user.caf\xe9', Buffer.from('z'), C.XATTR_CREATE, true), 'EEXIST');
  throwsErrno(tt, () => native.setxattr(file, 'user.none', Buffer.from('z'), C.XATTR_REPLACE, true), 'ENODATA');
  native.setxattr(file, 'user.empty', Buffer.alloc(0), 0, true);
  tt.equal(native.getxattr(file, 'user.empty', true).length, 0);

  native.removexattr(file, 'user.empty', true);
  const err = throwsErrno(tt, () => native.getxattr(file, 'user.empty', true), 'ENODATA', 'getxattr');
  tt.match(err.message, /^ENODATA: no data available, getxattr '/);
  throwsErrno(tt, () => native.removexattr(file, 'user.empty', true), 'ENODATA', 'removexattr');

  const f = native.openat(fd, 'f', O_RDONLY, 0);
  native.fsetxattr(f, 'user.fd', Buffer.from('by fd'), 0);
  tt.same(native.fgetxattr(f, 'user.fd'), Buffer.from('by fd'));
  tt.ok(native.flistxattr(f).includes('user.fd'));
  native.fremovexattr(f, 'user.fd');
  throwsErrno(tt, () => native.fgetxattr(f, 'user.fd'), 'ENODATA', 'fgetxattr');
  native.close(f);

  // an O_PATH fd reaches its file through /proc/self/fd
  const p = native.openat(fd, 'f', C.O_PATH | C.O_NOFOLLOW, 0);
  tt.same(native.getxattr(`/proc/self/fd/${p}`, 'trusted.overlay.opaque', true), Buffer.from('y'));
  native.close(p);
});

t.test('tmpfs mount: large xattr values and lists, mount/umount2', async (tt) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-native-mnt-'));
  native.mount('tmpfs', mnt, 'tmpfs', C.MS_NODEV | C.MS_NOSUID, 'size=1m,mode=0755');
  tt.teardown(() => {
    try {
      native.umount2(mnt, C.MNT_DETACH);
    } catch {
      // already unmounted by the test
    }
    fs.rmdirSync(mnt);
  });
  const file = path.join(mnt, 'f');
  fs.writeFileSync(file, '');
  const value = Buffer.alloc(C.XATTR_SIZE_MAX);
  for (let i = 0; i < value.length; i++) value[i] = (i * 7) & 0xff;
  native.setxattr(file, 'trusted.big', value, 0, true);
  tt.same(native.getxattr(file, 'trusted.big', true), value, 'XATTR_SIZE_MAX bytes come back whole');
  const names: string[] = [];
  for (let i = 0; i < 100; i++) names.push(`trusted.${'k'.repeat(60)}${i}`);
  for (const n of names) native.setxattr(file, n, Buffer.from('v'), 0, true);
  tt.same(native.listxattr(file, true).sort(), [...names, 'trusted.big'].sort(), 'a list longer than 4 KiB');

  const dfd = native.openat(C.AT_FDCWD, mnt, O_RDONLY | C.O_DIRECTORY, 0);
  const sf = native.fstatfs(dfd);
  tt.equal(Number(sf.blocks) * sf.bsize, 1024 * 1024, 'the size option took effect');
  native.close(dfd);
  throwsErrno(tt, () => native.umount2(mnt + '/f', 0), 'EINVAL', 'umount2');
  native.umount2(mnt, 0);
  tt.notOk(fs.existsSync(file), 'unmounted');
  throwsErrno(tt, () => native.mount('none', mnt, 'no-such-fs', 0, ''), 'ENODEV', 'mount');
});

t.test('fstatfs agrees with statfs(2)', async (tt) => {
  const sf = native.fstatfs(dirfd);
  const ref = fs.statfsSync(root);
  tt.equal(sf.bsize, ref.bsize);
  tt.equal(sf.blocks, ref.blocks);
  tt.equal(sf.files, ref.files);
  tt.ok(sf.namemax >= 255);
  tt.ok(sf.frsize > 0);
});

t.test('pread, pwrite and their async forms', async (tt) => {
  const { fd } = subdir();
  const f = native.openat(fd, 'f', O_CREAT | O_RDWR | C.O_CLOEXEC, 0o600);
  tt.equal(native.pwrite(f, Buffer.from('hello world'), 0), 11);
  tt.equal(await native.pwriteAsync(f, Buffer.from('HELLO'), 6), 5);
  const buf = Buffer.alloc(32);
  tt.equal(native.pread(f, buf, 0), 11, 'short at EOF');
  tt.equal(buf.subarray(0, 11).toString(), 'hello HELLO');
  tt.equal((await native.preadAsync(f, 5, 6)).toString(), 'HELLO');
  tt.equal((await native.preadAsync(f, 100, 6)).toString(), 'HELLO', 'short read');
  tt.equal((await native.preadAsync(f, 10, 1000)).length, 0, 'past EOF');
  const large = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < large.length; i += 4096) large[i] = i & 0xff;
  tt.equal(await native.pwriteAsync(f, large, 100), large.length);
  tt.same(await native.preadAsync(f, large.length, 100), large);
  const parallel = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => native.preadAsync(f, 4096, 100 + i * 4096)));
  parallel.forEach((b, i) => tt.same(b, large.subarray(i * 4096, (i + 1) * 4096)));
  native.close(f);
  await tt.rejects(native.preadAsync(f, 10, 0), { code: 'EBADF', errno: E.EBADF, syscall: 'pread' });
  await tt.rejects(native.pwriteAsync(f, Buffer.from('x'), 0), { code: 'EBADF', syscall: 'pwrite' });
  throwsErrno(tt, () => native.pwrite(f, Buffer.from('x'), 0), 'EBADF', 'pwrite');
});

t.test('fallocate, lseek SEEK_DATA/SEEK_HOLE, copy_file_range, FICLONE', async (tt) => {
  const { fd } = subdir();
  const f = native.openat(fd, 'sparse', O_CREAT | O_RDWR, 0o600);
  const MiB = 1024 * 1024;
  native.ftruncate(f, 16 * MiB);
  native.pwrite(f, Buffer.alloc(4096, 0xaa), 8 * MiB);
  tt.equal(native.lseek(f, 0, C.SEEK_DATA), 8 * MiB);
  tt.equal(native.lseek(f, 8 * MiB, C.SEEK_HOLE), 8 * MiB + 4096);
  native.fallocate(f, C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, 8 * MiB, 4096);
  throwsErrno(tt, () => native.lseek(f, 0, C.SEEK_DATA), 'ENXIO', 'lseek');
  tt.equal(fstat(f).size, 16 * MiB, 'KEEP_SIZE');
  native.fallocate(f, 0, 0, MiB);
  tt.ok(fstat(f).blocks >= (MiB / 512), 'allocated');
  native.fallocate(f, C.FALLOC_FL_KEEP_SIZE, 16 * MiB, MiB);
  tt.equal(fstat(f).size, 16 * MiB);
  native.fallocate(f, 0, 16 * MiB, MiB);
  tt.equal(fstat(f).size, 17 * MiB);

  const src = native.openat(fd, 'src', O_CREAT | O_RDWR, 0o600);
  native.pwrite(src, Buffer.from('0123456789'), 0);
  const dst = native.openat(fd, 'dst', O_CREAT | O_RDWR, 0o600);
  tt.equal(native.copyFileRange(src, 2, dst, 100, 5), 5);
  const out = Buffer.alloc(5);
  native.pread(dst, out, 100);
  tt.equal(out.toString(), '23456');
  tt.equal(native.copyFileRange(src, 10, dst, 0, 5), 0, 'at EOF');
  const ro = native.openat(fd, 'src', O_RDONLY, 0);
  throwsErrno(tt, () => native.copyFileRange(src, 0, ro, 0, 5), 'EBADF', 'copy_file_range');
  // the same on the thread pool
  tt.equal(await native.copyFileRangeAsync(src, 5, dst, 200, 4), 4);
  native.pread(dst, out, 200);
  tt.equal(out.toString('latin1', 0, 4), '5678');
  await tt.rejects(native.copyFileRangeAsync(src, 0, ro, 0, 5), { code: 'EBADF', syscall: 'copy_file_range' });
  native.close(ro);

  // ext4 cannot clone: the wrapper reports that as an errno
  let cloned = false;
  try {
    native.ficlone(dst, src);
    cloned = true;
  } catch (e) {
    tt.ok(isNativeError(e) && ['EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOTTY'].includes(e.code) && e.syscall === 'ioctl');
  }
  if (cloned) tt.equal(fstat(dst).size, 10, 'cloned');
  for (const x of [f, src, dst]) native.close(x);
});

t.test('copyData keeps holes and copies a sparse 1 GiB file quickly', async (tt) => {
  const { fd } = subdir();
  const GiB = 1024 * 1024 * 1024;
  const src = native.openat(fd, 'src', O_CREAT | O_RDWR | C.O_CLOEXEC, 0o600);
  const extents: [number, Buffer][] = [
    [0, Buffer.alloc(64 * 1024, 1)],
    [300 * 1024 * 1024, Buffer.alloc(1024 * 1024, 2)],
    [700 * 1024 * 1024 + 4096, Buffer.alloc(8192, 3)],
  ];
  for (const [off, data] of extents) native.pwrite(src, data, off);
  native.ftruncate(src, GiB); // the last GiB-700MiB is a trailing hole
  const dst = native.openat(fd, 'dst', O_CREAT | O_RDWR | C.O_CLOEXEC, 0o600);
  native.pwrite(dst, Buffer.alloc(4096, 0xee), 500 * 1024 * 1024); // stale data must not survive

  const started = process.hrtime.bigint();
  await native.copyData(src, dst, GiB);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  tt.ok(ms < 5000, `copied in ${ms.toFixed(0)} ms`);

  const st = fstat(dst);
  tt.equal(st.size, GiB);
  tt.ok(Number(st.blocks) * 512 < 8 * 1024 * 1024, `holes stay holes (${st.blocks} blocks)`);
  for (const [off, data] of extents) {
    const got = Buffer.alloc(data.length);
    native.pread(dst, got, off);
    tt.same(got, data, `extent at ${off}`);
  }
  const stale = Buffer.alloc(4096, 0xff);
  native.pread(dst, stale, 500 * 1024 * 1024);
  tt.ok(stale.every((b) => b === 0), 'dst was emptied first');
  tt.equal(native.lseek(dst, 0, C.SEEK_HOLE), 64 * 1024, 'first hole where the source has it');
  tt.equal(native.lseek(dst, 64 * 1024, C.SEEK_DATA), 300 * 1024 * 1024);

  // a shorter size truncates; a dense file is copied byte for byte
  const small = native.openat(fd, 'small', O_CREAT | O_RDWR, 0o600);
  await native.copyData(src, small, 1000, true);
  tt.equal(fstat(small).size, 1000);
  tt.throws(() => native.copyData(src, small, 1000, 'yes' as never), { name: 'TypeError' }, 'sync is a boolean');
  const dense = Buffer.alloc(3 * 1024 * 1024 + 5);
  for (let i = 0; i < dense.length; i++) dense[i] = (i * 31) & 0xff;
  const a = native.openat(fd, 'a', O_CREAT | O_RDWR, 0o600);
  const b = native.openat(fd, 'b', O_CREAT | O_RDWR, 0o600);
  native.pwrite(a, dense, 0);
  await native.copyData(a, b, dense.length);
  tt.same(await native.preadAsync(b, dense.length + 10, 0), dense);

  // across filesystems (ext4 -> tmpfs) copy_file_range refuses: the read/write path runs
  const shm = fs.mkdtempSync('/dev/shm/stratafs-native-');
  tt.teardown(() => fs.rmSync(shm, { recursive: true, force: true }));
  const other = native.openat(C.AT_FDCWD, path.join(shm, 'copy'), O_CREAT | O_RDWR | C.O_CLOEXEC, 0o600);
  await native.copyData(src, other, 701 * 1024 * 1024);
  const ost = fstat(other);
  tt.equal(ost.size, 701 * 1024 * 1024);
  tt.ok(Number(ost.blocks) * 512 < 8 * 1024 * 1024, 'holes kept on the other filesystem too');
  for (const [off, data] of extents) {
    const got = Buffer.alloc(data.length);
    native.pread(other, got, off);
    tt.same(got, data, `extent at ${off} on tmpfs`);
  }
  for (const x of [src, dst, small, a, b, other]) native.close(x);
  await tt.rejects(native.copyData(a, b, 10), { code: 'EBADF', errno: E.EBADF });
});

t.test('error objects and argument checks', async (tt) => {
  const err = throwsErrno(tt, () => native.openat(dirfd, 'missing', O_RDONLY, 0), 'ENOENT', 'openat');
  tt.ok(err instanceof Error);
  tt.equal(err.errno, E.ENOENT);
  tt.equal(err.message, "ENOENT: no such file or directory, openat 'missing'");
  const bytes = throwsErrno(tt, () => native.openat(dirfd, 'caf\xe9', O_RDONLY, 0), 'ENOENT');
  tt.equal(bytes.message, "ENOENT: no such file or directory, openat 'caf\xe9'", 'the name keeps its bytes');

  throwsErrno(tt, () => native.openat(dirfd, 'x'.repeat(C.PATH_MAX + 10), O_RDONLY, 0), 'ENAMETOOLONG', 'openat');
  throwsErrno(tt, () => native.openat(dirfd, 'n'.repeat(256), O_RDONLY, 0), 'ENAMETOOLONG', 'openat');
  throwsErrno(tt, () => native.openat(dirfd, 'a\0b', O_RDONLY, 0), 'EINVAL', 'openat');

  tt.throws(() => native.openat(dirfd, 42 as unknown as string, O_RDONLY, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  tt.throws(() => native.close('3' as unknown as number), { name: 'TypeError' });
  tt.throws(() => native.ftruncate(0, -1), { name: 'TypeError' });
  tt.throws(() => native.setxattr(root, 'user.x', 'str' as unknown as Buffer, 0, true), { name: 'TypeError' });
  tt.throws(() => native.fuseStopPoller({} as never), { name: 'TypeError' });
});

t.test('process: raiseNofileLimit and setsid (in a child)', async (tt) => {
  const addon = path.join(__dirname, '..', '..', 'native-bindings', 'build', 'Release', 'stratafs.node');
  // Node raises the limit itself at startup, so the child lowers it first (prlimit)
  const script = `
    const fs = require('fs');
    const { execFileSync } = require('child_process');
    const a = require(${JSON.stringify(addon)});
    const nofile = () => fs.readFileSync('/proc/self/limits', 'utf8')
      .split('\\n').find((l) => l.startsWith('Max open files')).split(/\\s+/).slice(3, 5).map(Number);
    execFileSync('prlimit', ['--pid', String(process.pid), '--nofile=64:']);
    const lowered = nofile();
    const limit = a.raiseNofileLimit();
    const raised = nofile();
    const sid = a.setsid();
    let again = '';
    try { a.setsid(); } catch (e) { again = e.code; }
    console.log(JSON.stringify({ lowered, limit, raised, sid, pid: process.pid, again }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  tt.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    lowered: number[]; limit: number; raised: number[]; sid: number; pid: number; again: string;
  };
  tt.equal(out.lowered[0], 64, 'the soft limit was lowered');
  tt.same(out.raised, [out.lowered[1], out.lowered[1]], 'soft limit = hard limit');
  tt.equal(out.limit, out.lowered[1], 'returns the new soft limit');
  tt.equal(out.sid, out.pid, 'a new session led by the child');
  tt.equal(out.again, 'EPERM', 'a session leader cannot setsid again');
});

/** a FIFO opened read-write, non-blocking: it never blocks and can be polled, a stand-in for /dev/fuse */
function pollableFifo(tt: Test): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-poller-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'fifo');
  tt.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  tt.teardown(() => fs.closeSync(fd));
  return fd;
}

t.test('a stopped poller lets go of its callbacks (an ended mount is collectable)', async (tt) => {
  const fd = pollableFifo(tt);
  const collected: string[] = [];
  const registry = new FinalizationRegistry((what: string) => collected.push(what));
  (() => {
    // the session's shape: callbacks that close over an object which holds the handle
    const session: { handle?: unknown; payload: number[] } = { payload: new Array(1000).fill(1) };
    session.handle = native.fuseStartPoller([fd], 1 << 16, Buffer.alloc(1 << 16), new Int32Array(3), () => void session.payload, () => void session.handle);
    registry.register(session, 'session');
    native.fuseStopPoller(session.handle as never);
  })();
  const gc = (() => {
    v8.setFlagsFromString('--expose-gc');
    const f = vm.runInNewContext('gc') as () => void;
    v8.setFlagsFromString('--no-expose-gc');
    return f;
  })();
  for (let i = 0; i < 20 && collected.length === 0; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  tt.same(collected, ['session'], 'the session, its callbacks and the handle are collected once stopped');
});

t.test('the poller reads into the shared area and describes each read in the index', async (tt) => {
  const fd = pollableFifo(tt);
  const readSize = 1 << 16;
  const area = Buffer.alloc(readSize + 4096, 0xee);
  const index = new Int32Array(3 * 4).fill(-1);
  const seen: { fd: number; at: number; bytes: string }[] = [];
  let wake: () => void = () => undefined;
  const h = native.fuseStartPoller([fd], readSize, area, index, (n) => {
    for (let i = 0; i < n; i++) {
      const at = index[3 * i + 1] as number;
      seen.push({ fd: index[3 * i] as number, at, bytes: area.toString('latin1', at, at + (index[3 * i + 2] as number)) });
    }
    wake();
  }, () => tt.fail('no end'));
  tt.teardown(() => native.fuseStopPoller(h));
  for (const msg of ['first request', 'second']) {
    const got = new Promise<void>((r) => (wake = r));
    fs.writeSync(fd, msg);
    await got;
  }
  tt.same(seen, [{ fd, at: 0, bytes: 'first request' }, { fd, at: 0, bytes: 'second' }],
    'each read at the start of the area (reused), with its fd and length');
  tt.equal(area.toString('latin1', 0, 13), 'secondrequest', 'the second read overwrote the first in place');
  tt.throws(() => native.fuseStartPoller([fd], readSize, Buffer.alloc(readSize - 1), index, () => undefined, () => undefined),
    { code: 'EINVAL' }, 'an area smaller than one read');
  tt.throws(() => native.fuseStartPoller([fd], readSize, area, new Int32Array(2), () => undefined, () => undefined),
    { code: 'EINVAL' }, 'an index without room for one request');
  tt.throws(() => native.fuseStartPoller([fd], readSize, area, new Uint32Array(3) as never, () => undefined, () => undefined),
    { name: 'TypeError' }, 'an index that is not an Int32Array');
});
