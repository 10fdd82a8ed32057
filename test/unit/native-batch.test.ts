/**
 * The addon's batched calls on the thread pool (native-bindings/src/batch.c): statxMany
 * and listDirs give, name by name, what statx and getdents give, an errno where a name
 * fails, never follow a final symlink, and work on their own copy of the fd.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native, C, type Stat } from '../../src/native';

const E = os.constants.errno;
const { O_RDONLY, S_IFCHR, S_IFMT, S_IFDIR } = fs.constants;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-batch-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

function opath(p: string): number {
  return native.openat(C.AT_FDCWD, p, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
}

t.test('statxMany: each name as statx sees it, errno for the ones that fail', async (tt) => {
  const dir = fs.mkdtempSync(path.join(root, 's-'));
  fs.writeFileSync(path.join(dir, 'f'), 'abc');
  fs.symlinkSync('/etc', path.join(dir, 'lnk'));
  const fd = opath(dir);
  native.mkdirat(fd, 'caf\xe9', 0o755); // names are byte strings
  native.mknodat(fd, 'wh', S_IFCHR, 0, 0);
  const names = ['f', 'caf\xe9', 'lnk', 'wh', 'missing', 'f'];
  const got = native.statxMany(fd, names.join('/'), C.AT_SYMLINK_NOFOLLOW);
  // the call works on its own copy of the fd: closing ours at once changes nothing
  native.close(fd);
  const res = await got;
  tt.equal(res.length, names.length);
  const again = opath(dir);
  t.teardown(() => native.close(again));
  for (const [i, n] of names.slice(0, 4).entries()) {
    tt.same(res[i], native.statx(again, n, C.AT_SYMLINK_NOFOLLOW), `${n} as statx sees it`);
  }
  tt.equal(((res[2] as Stat).mode & S_IFMT), fs.constants.S_IFLNK, 'a final symlink is not followed');
  tt.equal((res[3] as Stat).rdevMajor, 0);
  tt.equal(res[4], E.ENOENT, 'a missing name is its errno');
  tt.same(res[5], res[0], 'a name twice');
  tt.same(await native.statxMany(again, '', 0), [], "'' is no name");
  tt.same(await native.statxMany(again, 'f//missing', C.AT_SYMLINK_NOFOLLOW).then((r) => r.slice(1)), [E.ENOENT, E.ENOENT],
    'an empty name fails as statx of an empty path does');
  // many names, more than one pool call would usually take
  const many = Array.from({ length: 3000 }, (_v, i) => (i % 2 === 0 ? 'f' : `nope${i}`));
  const r = await native.statxMany(again, many.join('/'), C.AT_SYMLINK_NOFOLLOW);
  tt.equal(r.filter((x) => typeof x !== 'number').length, 1500);
  tt.equal(r.filter((x) => x === E.ENOENT).length, 1500);
});

t.test('listDirs: each directory as getdents sees it, without . and .., and its xattr names', async (tt) => {
  const dir = fs.mkdtempSync(path.join(root, 'l-'));
  fs.mkdirSync(path.join(dir, 'a'));
  fs.writeFileSync(path.join(dir, 'a', 'x'), '');
  fs.mkdirSync(path.join(dir, 'a', 'sub'));
  fs.mkdirSync(path.join(dir, 'big'));
  const long = 'n'.repeat(200);
  for (let i = 0; i < 800; i++) fs.writeFileSync(path.join(dir, 'big', `${long}${i}`), '');
  fs.mkdirSync(path.join(dir, 'empty'));
  fs.writeFileSync(path.join(dir, 'file'), '');
  fs.symlinkSync('a', path.join(dir, 'lnk'));
  native.setxattr(path.join(dir, 'a'), 'trusted.overlay.opaque', Buffer.from('y'), 0, false);
  native.setxattr(path.join(dir, 'a'), 'user.caf\xe9', Buffer.from('v'), 0, false);
  const fd = opath(dir);
  const got = native.listDirs(fd, ['a', 'big', 'empty', '.', 'file', 'lnk', 'missing'].join('/'));
  native.close(fd);
  const res = await got;
  type Listed = { entries: { name: string; type: number; ino: bigint }[]; xattrs: string[] | null };
  const names = (i: number): string[] => (res[i] as Listed).entries.map((e) => e.name).sort();
  tt.same(names(0), ['sub', 'x']);
  tt.same([...((res[0] as Listed).xattrs ?? [])].sort(), ['trusted.overlay.opaque', 'user.caf\xe9'], 'the directory\'s own xattr names');
  tt.same((res[2] as Listed).xattrs, [], 'none');
  const sub = (res[0] as Listed).entries.find((e) => e.name === 'sub');
  tt.equal(sub?.type, C.DT_DIR);
  tt.equal(sub?.ino, BigInt(fs.statSync(path.join(dir, 'a', 'sub')).ino));
  tt.equal(names(1).length, 800, 'more than one getdents buffer');
  tt.equal(new Set(names(1)).size, 800);
  tt.same(names(2), []);
  tt.same(names(3), ['a', 'big', 'empty', 'file', 'lnk'], "'.' is the directory itself");
  tt.equal(res[4], E.ENOTDIR, 'a file is its errno');
  tt.ok(res[5] === E.ELOOP || res[5] === E.ENOTDIR, 'a symlink to a directory is not followed');
  tt.equal(res[6], E.ENOENT);
  const rd = native.openat(C.AT_FDCWD, dir, O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(rd));
  tt.same(names(3), native.getdents(rd).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), 'as getdents');
  tt.equal((native.statx(rd, 'a', 0).mode & S_IFMT), S_IFDIR);
});

t.test('bad arguments throw at once', async (tt) => {
  tt.throws(() => native.statxMany(-1, 'a', 0), /EBADF/, 'a bad fd');
  tt.throws(() => native.statxMany(0, ['a'] as unknown as string, 0), /names/, 'names must be a string');
  tt.throws(() => native.listDirs(0, 'a\0b'), /EINVAL/, 'an embedded NUL');
});
