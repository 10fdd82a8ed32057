/**
 * The addon's read-ahead call on the thread pool (native-bindings/src/batch.c), read
 * through its decoder (src/overlay/readahead-result.ts): readAhead gives, name by name
 * and directory by directory, what statx, getdents and listxattr give, an errno where a
 * name fails, only what was asked, never follows a final symlink, and works on its own
 * copies of the fds.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native, C, type DirEntry, type Stat } from '../../src/native';
import { ReadAheadResult } from '../../src/overlay/readahead-result';

const E = os.constants.errno;
const { O_RDONLY, S_IFCHR, S_IFMT, S_IFDIR } = fs.constants;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-batch-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

function opath(p: string): number {
  return native.openat(C.AT_FDCWD, p, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
}

/** what readAhead gave for one name */
interface Got {
  stat: Stat | number | undefined;
  list: DirEntry[] | number | undefined;
  xattrs?: readonly string[] | null;
  /** a non-directory's own xattr names (RA_XATTRS), when read */
  fileXattrs?: readonly string[];
}

/** readAhead of `groups` (a dir fd and its names with what is wanted of each), decoded */
async function readAhead(groups: [number, [string, number][]][]): Promise<Got[]> {
  const names = groups.flatMap(([, ns]) => ns.map(([n]) => n));
  const p = native.readAhead(Int32Array.from(groups, ([fd]) => fd), Uint32Array.from(groups, ([, ns]) => ns.length),
    names.join('/'), Uint8Array.from(groups.flatMap(([, ns]) => ns.map(([, w]) => w))));
  const r = new ReadAheadResult(await p);
  return names.map(() => {
    const stat = r.stat();
    const list = r.listing();
    const got: Got = typeof list === 'object' ? { stat, list, xattrs: r.xattrs } : { stat, list };
    const own = r.fileXattrs();
    if (own !== null) got.fileXattrs = own;
    return got;
  });
}

const { RA_STAT, RA_LIST, RA_XATTRS } = C;
const BOTH = RA_STAT | RA_LIST;

t.test('readAhead: each name as statx sees it, errno for the ones that fail', async (tt) => {
  const dir = fs.mkdtempSync(path.join(root, 's-'));
  fs.writeFileSync(path.join(dir, 'f'), 'abc');
  fs.symlinkSync('/etc', path.join(dir, 'lnk'));
  const fd = opath(dir);
  native.mkdirat(fd, 'caf\xe9', 0o755); // names are byte strings
  native.mknodat(fd, 'wh', S_IFCHR, 0, 0);
  const names = ['f', 'caf\xe9', 'lnk', 'wh', 'missing', 'f'];
  const got = readAhead([[fd, names.map((n) => [n, RA_STAT])]]);
  // the call works on its own copy of the fd: closing ours at once changes nothing
  native.close(fd);
  const res = (await got).map((g) => g.stat);
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
  tt.same(await readAhead([[again, []]]), [], 'no name');
  tt.same((await readAhead([[again, [['f', RA_STAT], ['', RA_STAT], ['missing', RA_STAT]]]])).slice(1).map((g) => g.stat),
    [E.ENOENT, E.ENOENT], 'an empty name fails as statx of an empty path does');
  tt.same(await readAhead([[again, [['f', 0]]]]), [{ stat: undefined, list: undefined }], 'nothing asked, nothing read');
  // many names, more than one pool call would usually take
  const many = Array.from({ length: 3000 }, (_v, i): [string, number] => [i % 2 === 0 ? 'f' : `nope${i}`, RA_STAT]);
  const r = (await readAhead([[again, many]])).map((g) => g.stat);
  tt.equal(r.filter((x) => typeof x === 'object').length, 1500);
  tt.equal(r.filter((x) => x === E.ENOENT).length, 1500);
});

t.test('readAhead: sizes and times beyond 32 bits decode whole', async (tt) => {
  const dir = fs.mkdtempSync(path.join(root, 'b-'));
  const f = path.join(dir, 'sparse');
  fs.writeFileSync(f, '');
  fs.truncateSync(f, 2 ** 40 + 5);
  fs.utimesSync(f, new Date(2 ** 33 * 1000), new Date(-7000));
  const fd = opath(dir);
  t.teardown(() => native.close(fd));
  const [g] = await readAhead([[fd, [['sparse', RA_STAT]]]]);
  tt.same(g?.stat, native.statx(fd, 'sparse', C.AT_SYMLINK_NOFOLLOW));
  tt.equal((g?.stat as Stat).size, 2 ** 40 + 5);
  tt.equal((g?.stat as Stat).atimeSec, 2 ** 33);
  tt.equal((g?.stat as Stat).mtimeSec, -7, 'a time before 1970');
});

t.test('readAhead: each directory as getdents sees it, without . and .., and its xattr names', async (tt) => {
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
  fs.writeFileSync(Buffer.from(path.join(dir, 'a', 'caf\xe9'), 'latin1'), ''); // a byte string name
  native.setxattr(path.join(dir, 'a'), 'trusted.overlay.opaque', Buffer.from('y'), 0, false);
  native.setxattr(path.join(dir, 'a'), 'user.caf\xe9', Buffer.from('v'), 0, false);
  const fd = opath(dir);
  const other = opath(path.join(dir, 'a'));
  const got = readAhead([
    [fd, [['a', BOTH], ['big', RA_LIST], ['empty', BOTH], ['.', RA_LIST], ['file', BOTH], ['lnk', BOTH], ['missing', RA_LIST], ['file', RA_LIST]]],
    [other, [['sub', BOTH], ['x', RA_STAT]]],
  ]);
  native.close(fd);
  native.close(other);
  const res = await got;
  const names = (i: number): string[] => (res[i]?.list as DirEntry[]).map((e) => e.name).sort();
  tt.same(names(0), ['caf\xe9', 'sub', 'x']);
  tt.same([...(res[0]?.xattrs ?? [])].sort(), ['trusted.overlay.opaque', 'user.caf\xe9'], 'the directory\'s own xattr names');
  tt.equal(((res[0]?.stat as Stat).mode & S_IFMT), S_IFDIR, 'stat and listing of one name');
  tt.same(res[2]?.xattrs, [], 'none');
  const sub = (res[0]?.list as DirEntry[]).find((e) => e.name === 'sub');
  tt.equal(sub?.type, C.DT_DIR);
  tt.equal(sub?.ino, BigInt(fs.statSync(path.join(dir, 'a', 'sub')).ino));
  tt.equal(res[1]?.stat, undefined, 'listed, not stat\'ed: only what was asked');
  tt.equal(names(1).length, 800, 'more than one getdents buffer');
  tt.equal(new Set(names(1)).size, 800);
  tt.ok(names(1).every((n) => n.startsWith(long)), 'long names whole');
  tt.same(names(2), []);
  tt.same(names(3), ['a', 'big', 'empty', 'file', 'lnk'], "'.' is the directory itself");
  tt.same(res[4], { stat: native.statx(opath(dir), 'file', C.AT_SYMLINK_NOFOLLOW), list: undefined },
    'a file stat\'ed is not opened as a directory');
  tt.equal(((res[5]?.stat as Stat).mode & S_IFMT), fs.constants.S_IFLNK);
  tt.equal(res[5]?.list, undefined, 'a symlink to a directory is not listed');
  tt.equal(res[6]?.list, E.ENOENT, 'a missing directory is its errno');
  tt.equal(res[7]?.list, E.ENOTDIR, 'a file asked to be listed without its statx is its errno');
  tt.same(names(8), [], 'a directory of the second group');
  tt.same(res[8]?.xattrs, []);
  tt.equal(res[9]?.list, undefined);
  tt.equal(((res[9]?.stat as Stat).mode & S_IFMT), fs.constants.S_IFREG, 'the names of the second group are its fd\'s');
  const rd = native.openat(C.AT_FDCWD, dir, O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  t.teardown(() => native.close(rd));
  tt.same(names(3), native.getdents(rd).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), 'as getdents');
});

t.test('readAhead: a non-directory\'s own xattr names, as llistxattr gives them', async (tt) => {
  const dir = fs.mkdtempSync(path.join(root, 'x-'));
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, '');
  native.setxattr(f, 'user.caf\xe9', Buffer.from('v'), 0, false);
  native.setxattr(f, 'trusted.overlay.metacopy', Buffer.alloc(0), 0, false);
  fs.writeFileSync(path.join(dir, 'none'), '');
  const many = path.join(dir, 'many');
  fs.writeFileSync(many, '');
  // more names than the first 1 KiB buffer: listed again at the size asked
  for (let i = 0; i < 60; i++) native.setxattr(many, `user.${'m'.repeat(30)}${i}`, Buffer.from('v'), 0, false);
  fs.symlinkSync('f', path.join(dir, 'lnk'));
  fs.mkdirSync(path.join(dir, 'd'));
  native.setxattr(path.join(dir, 'd'), 'user.d', Buffer.from('v'), 0, false);
  const fd = opath(dir);
  t.teardown(() => native.close(fd));
  const all = RA_STAT | RA_LIST | RA_XATTRS;
  const res = await readAhead([[fd, [['f', all], ['none', RA_STAT | RA_XATTRS], ['many', RA_XATTRS], ['lnk', all], ['d', all],
    ['d', RA_STAT | RA_XATTRS], ['missing', all], ['f', RA_STAT]]]]);
  tt.same([...(res[0]?.fileXattrs ?? [])].sort(), native.listxattr(f, false).sort(), 'the names on disk, private ones too');
  tt.equal(res[0]?.fileXattrs?.length, 2);
  tt.same(res[0]?.stat, native.statx(fd, 'f', C.AT_SYMLINK_NOFOLLOW), 'with its statx');
  tt.same(res[1]?.fileXattrs, [], 'none');
  tt.equal(res[2]?.stat, undefined, 'not stat\'ed: only what was asked');
  tt.same([...(res[2]?.fileXattrs ?? [])].sort(), native.listxattr(many, false).sort(), 'a set larger than the first buffer');
  tt.same(res[3]?.fileXattrs, native.listxattr(path.join(dir, 'lnk'), false), 'a symlink\'s own, not its target\'s');
  tt.not(res[3]?.fileXattrs?.length, 2);
  tt.equal(res[4]?.fileXattrs, undefined, 'a directory: its names come with its listing');
  tt.same(res[4]?.xattrs, ['user.d']);
  tt.equal(res[5]?.fileXattrs, undefined, 'a directory stat\'ed only: none either');
  tt.same(res[6], { stat: E.ENOENT, list: undefined }, 'a missing name: its statx errno, nothing else');
  tt.equal(res[7]?.fileXattrs, undefined, 'not asked, not read');
});

t.test('bad arguments throw at once', async (tt) => {
  const one = Uint32Array.of(1);
  const stat = Uint8Array.of(RA_STAT);
  tt.throws(() => native.readAhead(Int32Array.of(-1), one, 'a', stat), /EBADF/, 'a bad fd');
  tt.throws(() => native.readAhead(Int32Array.of(0), one, ['a'] as unknown as string, stat), /names/, 'names must be a string');
  tt.throws(() => native.readAhead(Int32Array.of(0), one, 'a\0b', Uint8Array.of(1, 1)), /EINVAL/, 'an embedded NUL');
  tt.throws(() => native.readAhead(Int32Array.of(0), Uint32Array.of(2), 'a', stat), /EINVAL/, 'counts that do not add up');
  tt.throws(() => native.readAhead(Int32Array.of(0), one, 'a/b', Uint8Array.of(1, 1)), /EINVAL/, 'a name without a count');
  tt.throws(() => native.readAhead(Int32Array.of(0), one, 'a', Uint8Array.of()), /EINVAL/, 'a name without a want');
  tt.throws(() => native.readAhead([0] as unknown as Int32Array, one, 'a', stat), /dirfds/, 'fds must be an Int32Array');
});
