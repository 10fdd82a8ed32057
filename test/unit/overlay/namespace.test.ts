import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import { native } from '../../../src/native';
import { ctx, exists, fixture, isWhiteoutFile, ls, put, readFile, walk, withErrno, xattr, R, look, workLeftovers } from './fixtures/helpers';

const O = fs.constants;
const E = constants.errno;


t.test('unlink and rmdir of lower names leave 0/0 whiteouts', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'f', 'x');
    put(l0 as string, 'd/a', 'a');
    put(l0 as string, 'e/.keep');
    fs.unlinkSync(path.join(l0 as string, 'e/.keep'));
    put(upper, 'onlyup', 'u');
    put(l0 as string, 'both', 'l');
    put(upper, 'both', 'u');
  });
  t.teardown(() => f.cleanup());
  await f.ov.unlink(ctx, 1, 'f');
  t.ok(isWhiteoutFile(path.join(f.upper, 'f')));
  t.notOk(exists(f.ov, 'f'));
  await f.ov.unlink(ctx, 1, 'onlyup');
  t.notOk(fs.existsSync(path.join(f.upper, 'onlyup')), 'upper-only file just removed');
  await f.ov.unlink(ctx, 1, 'both');
  t.ok(isWhiteoutFile(path.join(f.upper, 'both')), 'upper file over a lower one becomes a whiteout');
  await t.rejects(f.ov.rmdir(ctx, 1, 'd'), withErrno(E.ENOTEMPTY));
  await t.rejects(f.ov.unlink(ctx, 1, 'd'), withErrno(E.EISDIR));
  const d = walk(f.ov, 'd');
  await f.ov.unlink(ctx, d, 'a');
  t.ok(isWhiteoutFile(path.join(f.upper, 'd/a')));
  t.same(ls(f.ov, 'd'), []);
  await f.ov.rmdir(ctx, 1, 'd');
  t.ok(isWhiteoutFile(path.join(f.upper, 'd')), 'merged dir holding only whiteouts: removed and whited out');
  await f.ov.rmdir(ctx, 1, 'e');
  t.ok(isWhiteoutFile(path.join(f.upper, 'e')));
  t.same(ls(f.ov, ''), []);
  t.same(workLeftovers(f.work), []);
  // mkdir over a whiteout is opaque
  await f.ov.mkdir(ctx, 1, 'd', 0o755);
  t.equal(xattr(path.join(f.upper, 'd'), 'trusted.overlay.opaque'), 'y');
  t.same(ls(f.ov, 'd'), [], 'old lower contents stay hidden');
  await f.ov.mkdir(ctx, 1, 'fresh', 0o700);
  t.equal(xattr(path.join(f.upper, 'fresh'), 'trusted.overlay.opaque'), 'y', 'new dir in a merged parent is opaque too');
  t.equal(fs.statSync(path.join(f.upper, 'fresh')).mode & 0o7777, 0o700);
  // create over a whiteout
  const c = await f.ov.create(ctx, 1, 'f', 0o640, O.O_RDWR);
  await f.ov.write(c.open.fh, 0, Buffer.from('new'));
  f.ov.release(c.open.fh);
  t.equal(await readFile(f.ov, 'f'), 'new');
  t.equal(fs.statSync(path.join(f.upper, 'f')).mode & 0o7777, 0o640);
  await t.rejects(Promise.resolve().then(() => f.ov.mkdir(ctx, 1, 'f', 0o755)), withErrno(E.EEXIST));
  await t.rejects(Promise.resolve().then(() => f.ov.mknod(ctx, 1, 'w', O.S_IFCHR | 0o600, 0, 0)), withErrno(E.EPERM));
  await t.rejects(Promise.resolve().then(() => f.ov.create(ctx, 1, '.wh.x', 0o600, O.O_RDWR)), withErrno(E.EINVAL));
});

t.test('xattrs: a node without any remembers it, until it gets one', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'plain', 'p');
    put(l0 as string, 'private', 'q');
    execFileSync('setfattr', ['-n', 'trusted.overlay.origin', '-v', 'x', path.join(l0 as string, 'private')]);
    put(l0 as string, 'some', 's');
    execFileSync('setfattr', ['-n', 'user.a', '-v', '1', path.join(l0 as string, 'some')]);
  });
  t.teardown(() => f.cleanup());
  const plain = walk(f.ov, 'plain');
  t.equal(f.ov.getxattr(ctx, plain, 'security.selinux'), null);
  // layers must not change behind a mount: one that does shows the node remembered
  execFileSync('setfattr', ['-n', 'user.behind', '-v', '1', path.join(f.lowers[0] as string, 'plain')]);
  t.equal(f.ov.getxattr(ctx, plain, 'user.behind'), null, 'remembered: no xattrs, not asked again');
  await f.ov.setxattr(ctx, plain, 'user.new', Buffer.from('v'), 0);
  t.equal(f.ov.getxattr(ctx, plain, 'user.new')?.toString(), 'v', 'setxattr clears what was remembered');
  t.equal(f.ov.getxattr(ctx, plain, 'user.other'), null);
  const priv = walk(f.ov, 'private');
  t.equal(f.ov.getxattr(ctx, priv, 'security.selinux'), null, 'only private xattrs: nothing visible');
  t.equal(f.ov.getxattr(ctx, priv, 'trusted.overlay.origin'), null);
  const some = walk(f.ov, 'some');
  t.equal(f.ov.getxattr(ctx, some, 'security.selinux'), null);
  t.equal(f.ov.getxattr(ctx, some, 'user.a')?.toString(), '1', 'a node with xattrs still reads them after a miss');
  // copy-up keeps them
  await f.ov.setattr(ctx, some, { mode: 0o600 });
  t.equal(f.ov.getxattr(ctx, some, 'user.a')?.toString(), '1', 'after copy-up');
});

t.test('owner of new files; setgid parent', async (t) => {
  const f = await fixture(1, ([l0]) => {
    fs.mkdirSync(path.join(l0 as string, 'sg'));
    fs.chownSync(path.join(l0 as string, 'sg'), 0, 4242);
    fs.chmodSync(path.join(l0 as string, 'sg'), 0o2775);
  });
  t.teardown(() => f.cleanup());
  const me = { uid: 1001, gid: 1002, pid: 1 };
  const e = await f.ov.mkdir(me, 1, 'plain', 0o755);
  t.equal(e.attr.uid, 1001);
  t.equal(e.attr.gid, 1002);
  const sg = walk(f.ov, 'sg');
  const d = await f.ov.mkdir(me, sg, 'sub', 0o755);
  t.equal(d.attr.gid, 4242, 'group of the setgid parent');
  t.equal(d.attr.mode & 0o2000, 0o2000, 'new dir inherits S_ISGID');
  const c = await f.ov.create(me, sg, 'file', 0o644, O.O_WRONLY);
  f.ov.release(c.open.fh);
  t.equal(c.entry.attr.gid, 4242);
  t.equal(c.entry.attr.uid, 1001);
  const s = await f.ov.symlink(me, sg, 'ln', 'target');
  t.equal(s.attr.uid, 1001);
  t.equal(f.ov.readlink(ctx, s.nodeId), 'target');
  const n = await f.ov.mknod(me, 1, 'fifo', O.S_IFIFO | 0o600, 0, 0);
  t.equal(n.attr.mode, O.S_IFIFO | 0o600);
});

t.test('rename of files', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'a', 'A');
    put(l0 as string, 'b', 'B');
    put(l0 as string, 'sub/c', 'C');
    put(upper, 'u', 'U');
  });
  t.teardown(() => f.cleanup());
  const a = walk(f.ov, 'a');
  const ino = f.ov.getattr(ctx, a).ino;
  await f.ov.rename(ctx, 1, 'a', walk(f.ov, 'sub'), 'a2', R);
  t.ok(isWhiteoutFile(path.join(f.upper, 'a')), 'whiteout at the old name');
  t.equal(fs.readFileSync(path.join(f.upper, 'sub/a2'), 'utf8'), 'A');
  t.equal(await readFile(f.ov, 'sub/a2'), 'A');
  t.equal(walk(f.ov, 'sub/a2'), a, 'same node after rename');
  t.equal(f.ov.getattr(ctx, a).ino, ino);
  await t.rejects(f.ov.rename(ctx, 1, 'b', 1, 'u', { ...R, noReplace: true }), withErrno(E.EEXIST));
  await f.ov.rename(ctx, 1, 'u', 1, 'b', R);
  t.equal(await readFile(f.ov, 'b'), 'U', 'replaces the lower file');
  t.notOk(fs.existsSync(path.join(f.upper, 'u')), 'no whiteout when no lower had the name');
  await f.ov.rename(ctx, walk(f.ov, 'sub'), 'c', 1, 'b', { ...R, exchange: true });
  t.equal(await readFile(f.ov, 'b'), 'C');
  t.equal(await readFile(f.ov, 'sub/c'), 'U');
  t.same(ls(f.ov, ''), ['b', 'sub']);
  t.same(ls(f.ov, 'sub'), ['a2', 'c']);
  await t.rejects(f.ov.rename(ctx, 1, 'b', 1, 'x', { ...R, whiteout: true }), withErrno(E.EINVAL));
});

t.test('hard links', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'a', 'A');
  });
  t.teardown(() => f.cleanup());
  const a = walk(f.ov, 'a');
  const e = await f.ov.link(ctx, a, 1, 'b');
  t.equal(e.nodeId, a, 'link returns the same node');
  t.equal(e.attr.nlink, 2);
  t.equal(fs.statSync(path.join(f.upper, 'a')).ino, fs.statSync(path.join(f.upper, 'b')).ino);
  await f.ov.unlink(ctx, 1, 'a');
  t.equal(f.ov.getattr(ctx, walk(f.ov, 'b')).nlink, 1);
  t.ok(isWhiteoutFile(path.join(f.upper, 'a')));
  t.equal(await readFile(f.ov, 'b'), 'A');
  await t.rejects(Promise.resolve().then(() => f.ov.link(ctx, 1, 1, 'root2')), withErrno(E.EPERM));
});

t.test('xattrs: private names hidden and escaped, others pass', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'd/x', '');
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.join(l0 as string, 'd')]);
    execFileSync('setfattr', ['-n', 'user.a', '-v', '1', path.join(l0 as string, 'd')]);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  t.same(f.ov.listxattr(ctx, d), ['user.a']);
  t.equal(f.ov.getxattr(ctx, d, 'trusted.overlay.opaque'), null, 'absent (ENODATA)');
  t.equal(f.ov.getxattr(ctx, d, 'user.overlay.opaque'), null);
  await f.ov.setxattr(ctx, d, 'trusted.overlay.foo', Buffer.from('v'), 0);
  t.equal(xattr(path.join(f.upper, 'd'), 'trusted.overlay.overlay.foo'), 'v', 'stored escaped like the kernel does');
  t.equal(f.ov.getxattr(ctx, d, 'trusted.overlay.foo')?.toString(), 'v');
  t.same(f.ov.listxattr(ctx, d).sort(), ['trusted.overlay.foo', 'user.a']);
  await f.ov.setxattr(ctx, d, 'user.b', Buffer.from('2'), 0);
  await f.ov.removexattr(ctx, d, 'user.a');
  t.same(f.ov.listxattr(ctx, d).sort(), ['trusted.overlay.foo', 'user.b']);
  execFileSync('setfacl', ['-m', 'u:1234:rwx', path.join(f.upper, 'd')]);
  t.ok(f.ov.listxattr(ctx, d).includes('system.posix_acl_access'), 'ACL passes through');
});

t.test('rename of a directory over an empty merged directory', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(l0 as string, 'src/in', 'in');
    put(l0 as string, 'dst/gone', 'g');
    put(upper, 'full/x', 'x');
  });
  t.teardown(() => f.cleanup());
  await t.rejects(f.ov.rename(ctx, 1, 'src', 1, 'full', R), withErrno(E.ENOTEMPTY));
  await t.rejects(f.ov.rename(ctx, walk(f.ov, 'src'), 'in', 1, 'dst', R), withErrno(E.EISDIR));
  await t.rejects(f.ov.rename(ctx, 1, 'src', walk(f.ov, 'full'), 'x', R), withErrno(E.ENOTDIR));
  await f.ov.unlink(ctx, walk(f.ov, 'dst'), 'gone');
  t.same(ls(f.ov, 'dst'), []);
  await f.ov.rename(ctx, 1, 'src', 1, 'dst', R);
  t.same(ls(f.ov, ''), ['dst', 'full']);
  t.same(ls(f.ov, 'dst'), ['in'], 'the moved dir merges its own lower, not the old target');
  t.equal(await readFile(f.ov, 'dst/in'), 'in');
  t.ok(isWhiteoutFile(path.join(f.upper, 'src')));
  t.same(workLeftovers(f.work), []);
});

t.test('forget drops nodes', async (t) => {
  const f = await fixture(1, ([l0]) => {
    put(l0 as string, 'a/b/c', 'c');
  });
  t.teardown(() => f.cleanup());
  const base = f.ov.nodeCount;
  const a = look(f.ov, 1, 'a');
  const b = look(f.ov, a.nodeId, 'b');
  const c = look(f.ov, b.nodeId, 'c');
  look(f.ov, b.nodeId, 'c');
  t.equal(f.ov.nodeCount, base + 3);
  f.ov.forget(a.nodeId, 1);
  t.equal(f.ov.nodeCount, base + 3, 'a parent stays while a child lives');
  f.ov.forget(c.nodeId, 1);
  t.equal(f.ov.nodeCount, base + 3, 'c still has one lookup');
  f.ov.forget(c.nodeId, 1);
  f.ov.forget(b.nodeId, 1);
  t.equal(f.ov.nodeCount, base, 'all gone');
  t.throws(() => f.ov.getattr(ctx, c.nodeId), withErrno(E.ENOENT));
});

t.test('cached directory fds follow renames and removals', async (t) => {
  const f = await fixture(1, ([l0], upper) => {
    put(upper, 'a/sub/x', 'x');
    put(l0 as string, 'keep', 'k');
  });
  t.teardown(() => f.cleanup());
  t.equal(await readFile(f.ov, 'a/sub/x'), 'x');
  await f.ov.rename(ctx, 1, 'a', 1, 'b', R);
  await f.ov.mkdir(ctx, 1, 'a', 0o755);
  await f.ov.mkdir(ctx, walk(f.ov, 'a'), 'sub', 0o755);
  const c = await f.ov.create(ctx, walk(f.ov, 'a/sub'), 'y', 0o644, O.O_WRONLY);
  f.ov.release(c.open.fh);
  t.ok(fs.existsSync(path.join(f.upper, 'a/sub/y')), 'new file in the new dir');
  t.notOk(fs.existsSync(path.join(f.upper, 'b/sub/y')), 'not in the renamed one');
  await f.ov.unlink(ctx, walk(f.ov, 'a/sub'), 'y');
  await f.ov.rmdir(ctx, walk(f.ov, 'a'), 'sub');
  await f.ov.mkdir(ctx, walk(f.ov, 'a'), 'sub', 0o755);
  const d = await f.ov.create(ctx, walk(f.ov, 'a/sub'), 'z', 0o644, O.O_WRONLY);
  f.ov.release(d.open.fh);
  t.ok(fs.existsSync(path.join(f.upper, 'a/sub/z')), 'new file in the re-made dir');
  t.same(ls(f.ov, 'b/sub'), ['x']);
});

t.test('whiteouts are links of one shared 0/0 inode, as the kernel makes them', async (t) => {
  const f = await fixture(1, ([l0]) => {
    for (const n of ['a', 'b', 'c']) put(l0 as string, `d/${n}`, n);
  });
  t.teardown(() => f.cleanup());
  const d = walk(f.ov, 'd');
  for (const n of ['a', 'b', 'c']) await f.ov.unlink(ctx, d, n);
  const inos = ['a', 'b', 'c'].map((n) => {
    const p = path.join(f.upper, 'd', n);
    t.ok(isWhiteoutFile(p), `${n} is a whiteout`);
    return fs.statSync(p).ino;
  });
  t.equal(new Set(inos).size, 1, 'one inode');
  t.equal(fs.statSync(path.join(f.upper, 'd/a')).nlink, 4, 'three whiteouts and the shared one in the work dir');
  t.same(workLeftovers(f.work), [], 'nothing else in the work dir');
  t.same(ls(f.ov, 'd'), []);
});

t.test('create, mkdir and a chown of one id stat the new name no more than they must', async (t) => {
  const f = await fixture(1, ([l0]) => put(l0 as string, 'lower', 'x'));
  t.teardown(() => f.cleanup());
  // count the statx calls that name `watched` (the untar path: thousands of these)
  let watched = '';
  let calls = 0;
  const n = native as unknown as Record<'statx' | 'statxOrErrno', (...a: unknown[]) => unknown>;
  const orig = { statx: n.statx, statxOrErrno: n.statxOrErrno };
  for (const k of ['statx', 'statxOrErrno'] as const) {
    n[k] = (...a: unknown[]) => {
      if (a[1] === watched) calls++;
      return orig[k].apply(native, a);
    };
  }
  t.teardown(() => Object.assign(n, orig));
  const count = async (name: string, op: () => Promise<unknown>): Promise<number> => {
    watched = name;
    calls = 0;
    await op();
    watched = '';
    return calls;
  };
  // the free-name check (ENOENT) and the lookup of what was made: no second look at the
  // name before the rename, nor a second statx for the reply's attributes
  let fh = -1;
  t.equal(await count('new', async () => {
    fh = (await f.ov.create(ctx, 1, 'new', 0o640, O.O_RDWR)).open.fh;
  }), 2, 'create: 2 statx of the name');
  f.ov.release(fh);
  t.equal(await count('dir', () => f.ov.mkdir(ctx, 1, 'dir', 0o755)), 2, 'mkdir in a merged parent: 2 statx of the name');
  t.equal(xattr(path.join(f.upper, 'dir'), 'trusted.overlay.opaque'), 'y', 'still opaque in a merged parent');
  // a chown naming only the owner: the group stays, without reading it first
  const node = look(f.ov, 1, 'new').nodeId;
  t.equal(await count('new', () => f.ov.setattr(ctx, node, { uid: 4321 })), 1, 'chown of the uid: 1 statx (the reply)');
  const s = fs.lstatSync(path.join(f.upper, 'new'));
  t.same([s.uid, s.gid, s.mode & 0o7777], [4321, 0, 0o640]);
  await f.ov.setattr(ctx, node, { gid: 8765 });
  const s2 = fs.lstatSync(path.join(f.upper, 'new'));
  t.same([s2.uid, s2.gid], [4321, 8765], 'chown of the gid keeps the uid');
});
