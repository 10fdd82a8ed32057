// The FUSE session against a fake filesystem and transport: INIT, entries, errors,
// READDIRPLUS, INTERRUPT, SETATTR and xattr replies (passthrough, notify and the
// reader: bridge-session.test.ts).
import t from 'tap';
import {
  ALL_OFFERED, E, FakeFs, FakeTransport, cstr, errorOf, frame, has, initFrame, initReply, openIn, readIn, setup, u32, u64, uniqueOf,
} from '../lib/bridge-fixture';
import { FATTR, FOPEN, InitFlag, Opcode, Size } from '../../src/fuse/wire/protocol';
import { FuseSession } from '../../src/fuse/bridge';
import type { Ctx, DirEntryOut } from '../../src/fuse/api';
import type { InitFlagName } from '../../src/fuse/wire/protocol';

// ---- tests --------------------------------------------------------------------------

t.test('INIT as root with passthrough offered', async (t) => {
  const { fs, tr, s } = await setup();
  t.equal(tr.written.length, 1);
  t.equal(errorOf(tr.last()), 0);
  const r = initReply(tr.last());
  t.same([r.major, r.minor], [7, 45]);
  for (const f of ['ASYNC_READ', 'BIG_WRITES', 'ATOMIC_O_TRUNC', 'DO_READDIRPLUS', 'READDIRPLUS_AUTO', 'PARALLEL_DIROPS',
    'MAX_PAGES', 'CACHE_SYMLINKS', 'HANDLE_KILLPRIV_V2', 'INIT_EXT', 'SETXATTR_EXT', 'PASSTHROUGH', 'POSIX_ACL', 'DONT_MASK'] as InitFlagName[]) {
    t.ok(has(r.flags, f), `${f} negotiated`);
  }
  for (const f of ['WRITEBACK_CACHE', 'EXPORT_SUPPORT', 'SECURITY_CTX'] as InitFlagName[]) {
    t.notOk(has(r.flags, f), `${f} not negotiated`);
  }
  t.equal(r.maxStackDepth, 1);
  t.equal(r.maxWrite, 1 << 20);
  t.equal(r.maxPages, 256);
  t.equal(r.timeGran, 1);
  t.same(fs.called('init'), [[{ passthrough: true, writebackCache: false }]]);
  t.equal(s.negotiated?.passthrough, true);
});

t.test('INIT without root, with passthrough off, or not offered: no passthrough, writeback cache only when asked', async (t) => {
  for (const [what, o] of [
    ['not root', { isRoot: false }],
    ['passthrough off', { passthrough: 'off' as const }],
    ['not offered', { offered: ALL_OFFERED & ~InitFlag.PASSTHROUGH }],
    ['no INIT_EXT', { offered: ALL_OFFERED & ~InitFlag.INIT_EXT }],
  ] as const) {
    for (const writeback of [undefined, 'on', 'off'] as const) {
      const { fs, tr } = await setup({ ...o, writeback });
      const r = initReply(tr.last());
      const wb = writeback === 'on';
      t.notOk(has(r.flags, 'PASSTHROUGH'), `${what}: no passthrough`);
      t.equal(has(r.flags, 'WRITEBACK_CACHE'), wb, `${what}, writeback ${writeback ?? 'default'}: writeback cache ${wb}`);
      t.equal(r.maxStackDepth, 0, `${what}: no stack depth`);
      t.same(fs.called('init'), [[{ passthrough: false, writebackCache: wb }]], what);
    }
  }
  const rootWb = await setup({ writeback: 'on' });
  t.notOk(has(initReply(rootWb.tr.last()).flags, 'WRITEBACK_CACHE'), 'writeback=on as root: passthrough wins');
  const noacl = await setup({ acl: false });
  t.notOk(has(initReply(noacl.tr.last()).flags, 'POSIX_ACL'), 'noacl: POSIX_ACL not negotiated');
  const { tr } = await setup({ offered: InitFlag.ASYNC_READ | InitFlag.MAX_PAGES });
  t.equal(initReply(tr.last()).flags, InitFlag.ASYNC_READ | InitFlag.MAX_PAGES, 'only what is offered');
});

t.test('INIT minor and major handling', async (t) => {
  t.equal(initReply((await setup({ minor: 50 })).tr.last()).minor, 45, 'newer kernel: our 45');
  t.equal(initReply((await setup({ minor: 40 })).tr.last()).minor, 40, 'older kernel: its minor');
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, debug: () => undefined });
  await s.handleRequest(3, initFrame(0, 0n, 8));
  t.equal(initReply(tr.last()).major, 7, 'major 8: answer 7 and wait');
  t.equal(s.negotiated, undefined);
  t.same(fs.called('init'), []);
  await s.handleRequest(3, initFrame(20, 0n));
  t.equal(errorOf(tr.last()), -E.EPROTO, 'too old');
});

t.test('requests before INIT are refused', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, debug: () => undefined });
  await s.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('a')));
  t.equal(errorOf(tr.last()), -E.EIO);
  t.same(fs.called('lookup'), []);
});

t.test('LOOKUP replies on the fd the request came from, with the caller', async (t) => {
  const { fs, tr, s } = await setup();
  const f = frame(Opcode.LOOKUP, 1, cstr('foo'));
  await s.handleRequest(9, f);
  const w = tr.last();
  t.equal(w.fd, 9);
  t.equal(w.buf.readBigUInt64LE(8), uniqueOf(f));
  t.equal(w.buf.length, Size.OUT_HEADER + Size.ENTRY_OUT);
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER), 7n, 'node id');
  const [ctx, parent, name] = fs.called('lookup')[0] as [Ctx, number, string];
  t.same(ctx, { uid: 1000, gid: 1001, pid: 77 });
  t.same([parent, name], [1, 'foo']);
});

t.test('LOOKUP of a name that is not there: a negative entry the kernel caches', async (t) => {
  const { tr, s } = await setup();
  await s.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('absent')));
  const w = tr.last();
  t.equal(errorOf(w), 0, 'not an error');
  t.equal(w.buf.length, Size.OUT_HEADER + Size.ENTRY_OUT);
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER), 0n, 'node id 0');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 16), 1n, 'entry_valid: the entry timeout');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 24), 0n, 'no attributes');
  // with no caching, a plain ENOENT
  const fs = new FakeFs();
  const tr0 = new FakeTransport();
  const s0 = new FuseSession({ devFd: 3, fs, transport: tr0, entryTimeout: 0, debug: () => undefined });
  await s0.handleRequest(3, initFrame(45, ALL_OFFERED));
  await s0.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('absent')));
  t.equal(errorOf(tr0.last()), -E.ENOENT);
});

t.test('the kernel cache timeouts are the bridge\'s: entries, READDIRPLUS and attributes carry its own', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, entryTimeout: 3, attrTimeout: 7, debug: () => undefined });
  await s.handleRequest(3, initFrame(45, ALL_OFFERED));
  await s.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('foo')));
  let w = tr.last();
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER), 7n, 'an entry');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 16), 3n, 'entry_valid: the session\'s entry timeout');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 24), 7n, 'attr_valid: the session\'s attribute timeout');
  await s.handleRequest(3, frame(Opcode.GETATTR, 7, Buffer.alloc(16)));
  w = tr.last();
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER), 7n, 'GETATTR attr_valid');
});

/** a second session over the same fakes, already past INIT */
async function setupReuse(fs: FakeFs, tr: FakeTransport): Promise<FuseSession> {
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  await s.handleRequest(3, initFrame(45, ALL_OFFERED));
  return s;
}

t.test('errors become negative errnos', async (t) => {
  const { tr, s } = await setup();
  await s.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('missing')));
  t.equal(errorOf(tr.last()), -E.ENOENT);
  await s.handleRequest(3, frame(Opcode.RMDIR, 1, cstr('full')));
  t.equal(errorOf(tr.last()), -E.ENOTEMPTY, 'FsError errno');
  await s.handleRequest(3, frame(Opcode.RMDIR, 1, cstr('bug')));
  t.equal(errorOf(tr.last()), -E.EIO, 'anything else: EIO');
  await s.handleRequest(3, frame(Opcode.GETXATTR, 1, Buffer.concat([u32(0, 0), cstr('user.none')])));
  t.equal(errorOf(tr.last()), -E.ENODATA);
});

t.test('unknown opcode: ENOSYS; malformed: EIO; FORGET: no reply', async (t) => {
  const { fs, tr, s } = await setup();
  const n = tr.written.length;
  const getlk = frame(Opcode.GETLK, 7, Buffer.alloc(48));
  await s.handleRequest(3, getlk);
  t.equal(errorOf(tr.last()), -E.ENOSYS);
  t.equal(tr.last().buf.readBigUInt64LE(8), uniqueOf(getlk));
  await s.handleRequest(3, frame(9999, 7, Buffer.alloc(0)));
  t.equal(errorOf(tr.last()), -E.ENOSYS, 'opcode beyond the table');

  const bad = frame(Opcode.LOOKUP, 1, Buffer.from('no-nul', 'latin1'));
  await s.handleRequest(3, bad);
  t.equal(errorOf(tr.last()), -E.EIO, 'name without NUL');
  t.equal(tr.last().buf.readBigUInt64LE(8), uniqueOf(bad), 'answered with its unique');
  const lying = frame(Opcode.LOOKUP, 1, cstr('a'));
  lying.writeUInt32LE(lying.length + 10, 0);
  await s.handleRequest(3, lying);
  t.equal(errorOf(tr.last()), -E.EIO, 'length field wrong');
  const before = tr.written.length;
  await s.handleRequest(3, Buffer.alloc(7));
  t.equal(tr.written.length, before, 'unreadable header: nothing to answer');
  t.equal(tr.written.length, n + 4);

  const w = tr.written.length;
  await s.handleRequest(3, frame(Opcode.FORGET, 10, u64(3)));
  await s.handleRequest(3, frame(Opcode.BATCH_FORGET, 0, Buffer.concat([u32(2, 0), u64(11, 1, 12, 2)])));
  t.equal(tr.written.length, w, 'no replies to forgets');
  t.same(fs.called('forget'), [[10, 3], [11, 1], [12, 2]]);
  const truncForget = frame(Opcode.FORGET, 10, Buffer.alloc(3));
  await s.handleRequest(3, truncForget);
  t.equal(tr.written.length, w, 'no reply to a malformed forget either');
});

t.test('an undeliverable entry reply gives the lookup back', async (t) => {
  const { fs, tr, s } = await setup();
  tr.failNext = E.ENOENT;
  await s.handleRequest(3, frame(Opcode.LOOKUP, 1, cstr('foo')));
  t.same(fs.called('forget'), [[7, 1]]);
  t.equal(fs.lookups.get(7), 0, 'count back to zero');
  tr.failNext = E.ENOENT;
  await s.handleRequest(3, frame(Opcode.OPEN, 7, openIn(0)));
  t.equal(fs.called('release').length, 1, 'unseen open handle released');
});

t.test('READDIRPLUS looks up only entries that are sent', async (t) => {
  const { fs, tr, s } = await setup();
  const d = (name: string, i: number, type = 0o100000): DirEntryOut => ({ name, ino: BigInt(100 + i), type, nextOffset: i + 1 });
  fs.dir = [d('.', 0, 0o40000), d('..', 1, 0o40000), d('a', 2), d('b', 3), d('c', 4)];
  const size = 3 * (128 + 32) + 128 + 24; // '.', '..', 'a' fit; 'b' does not
  await s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 0, size)));
  const w = tr.last();
  t.equal(errorOf(w), 0);
  t.equal(w.buf.length, Size.OUT_HEADER + 3 * 160, 'three entries');
  t.same(fs.called('lookup').map((c) => c[2]), ['a'], 'lookup only for "a"');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER), 0n, '"." with node id 0');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 160), 0n, '".." with node id 0');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 320), 10n, '"a" with its node');
  t.equal(w.buf.readBigUInt64LE(Size.OUT_HEADER + 320 + 128 + 8), 3n, 'next cookie of "a"');

  // continue from the cookie
  await s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 3, 4096)));
  t.same(fs.called('lookup').map((c) => c[2]), ['a', 'b', 'c']);
  t.same([fs.lookups.get(10), fs.lookups.get(11), fs.lookups.get(12)], [1, 1, 1], 'one lookup per entry sent');

  // an interrupted reply returns its lookups
  tr.failNext = E.ENOENT;
  await s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 2, 4096)));
  t.same([fs.lookups.get(10), fs.lookups.get(11), fs.lookups.get(12)], [1, 1, 1], 'given back');

  // an entry whose lookup fails is still listed, without a node
  fs.dir = [d('gone', 0)];
  await s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 0, 4096)));
  t.equal(tr.last().buf.readBigUInt64LE(Size.OUT_HEADER), 0n);
  t.equal(tr.last().buf.length, Size.OUT_HEADER + 128 + 32);

  // READDIR: no lookups at all
  fs.dir = [d('a', 0), d('b', 1)];
  const n = fs.called('lookup').length;
  await s.handleRequest(3, frame(Opcode.READDIR, 1, readIn(50, 0, 4096)));
  t.equal(tr.last().buf.length, Size.OUT_HEADER + 2 * 32);
  t.equal(fs.called('lookup').length, n);
});

t.test('READDIRPLUS lets the filesystem read ahead before its lookups, and waits for it', async (t) => {
  const { fs, tr, s } = await setup();
  const d = (name: string, i: number): DirEntryOut => ({ name, ino: BigInt(100 + i), type: 0o100000, nextOffset: i + 1 });
  fs.dir = [d('a', 0), d('b', 1)];
  let release: () => void = () => undefined;
  const seen: string[][] = [];
  const fits: (number | undefined)[] = [];
  fs.prefetchLookups = (dir, entries, most) => {
    seen.push([String(dir), ...entries.map((e) => e.name)]);
    fits.push(most);
    return new Promise<void>((r) => { release = r; });
  };
  const n = fs.called('lookup').length;
  const done = s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 0, 4096)));
  await new Promise((r) => setImmediate(r));
  t.same(seen, [['1', 'a', 'b']], 'asked with the directory and the batch');
  // 4096 bytes over fuse_entry_out (128) + fuse_dirent (24) + a one-byte name padded to 8
  t.same(fits, [Math.floor(4096 / (128 + 32))], 'and the most entries its reply can hold');
  t.equal(fs.called('lookup').length, n, 'no lookup while the read-ahead runs');
  release();
  await done;
  t.same(fs.called('lookup').slice(n).map((c) => c[2]), ['a', 'b'], 'then the lookups');
  t.equal(tr.last().buf.readBigUInt64LE(Size.OUT_HEADER), 10n);
  // nothing to read ahead (undefined): answered at once, synchronously
  fs.prefetchLookups = () => undefined;
  await s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 0, 4096)));
  t.same(fs.called('lookup').slice(n + 2).map((c) => c[2]), ['a', 'b']);
});

t.test('INTERRUPT', async (t) => {
  const { tr, s } = await setup();
  const intr = frame(Opcode.INTERRUPT, 0, u64(123456));
  await s.handleRequest(3, intr);
  t.equal(errorOf(tr.last()), -E.EAGAIN, 'unknown target: EAGAIN');
  t.equal(tr.last().buf.readBigUInt64LE(8), uniqueOf(intr));

  // a target being handled: the interrupt is ignored and the request completes
  const fs = new FakeFs();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = Object.assign(fs, {
    async unlink(): Promise<void> { await gate; },
  });
  const tr2 = new FakeTransport();
  const s2 = await setupReuse(slow, tr2);
  const req = frame(Opcode.UNLINK, 1, cstr('x'));
  const pending = s2.handleRequest(3, req);
  const n = tr2.written.length;
  await s2.handleRequest(3, frame(Opcode.INTERRUPT, 0, u64(Number(uniqueOf(req)))));
  t.equal(tr2.written.length, n, 'no reply to the interrupt');
  release();
  await pending;
  t.equal(errorOf(tr2.last()), 0, 'request answered normally');
});

t.test('SETATTR mapping and suid clearing', async (t) => {
  const { fs, s } = await setup();
  const setattrIn = (valid: number, o: { fh?: number; size?: number; atime?: number; mode?: number; uid?: number; gid?: number } = {}) =>
    Buffer.concat([u32(valid, 0), u64(o.fh ?? 0, o.size ?? 0, 0, o.atime ?? 0, 0, 0), u32(5, 0, 0, o.mode ?? 0, 0, o.uid ?? 0, o.gid ?? 0, 0)]);
  await s.handleRequest(3, frame(Opcode.SETATTR, 10, setattrIn(FATTR.ATIME | FATTR.MTIME_NOW | FATTR.FH | FATTR.MODE,
    { fh: 4, atime: 1234, mode: 0o100755 })));
  t.same(fs.called('setattr').pop(), [10, { mode: 0o755, atime: { sec: 1234, nsec: 5 }, mtime: 'now', fh: 4 }]);

  fs.modes.set(10, 0o106755);
  await s.handleRequest(3, frame(Opcode.SETATTR, 10, setattrIn(FATTR.SIZE | FATTR.KILL_SUIDGID, { size: 0 })));
  t.same(fs.called('setattr').pop(), [10, { size: 0, mode: 0o755 }], 'truncate with KILL_SUIDGID clears suid+sgid');

  await s.handleRequest(3, frame(Opcode.SETATTR, 10, setattrIn(FATTR.SIZE, { size: 0 })));
  t.same(fs.called('setattr').pop(), [10, { size: 0 }], 'privileged truncate keeps the bits');

  fs.modes.set(10, 0o106745);
  fs.gids.set(10, 1001); // the caller's group
  await s.handleRequest(3, frame(Opcode.SETATTR, 10, setattrIn(FATTR.UID, { uid: 5 })));
  t.same(fs.called('setattr').pop(), [10, { uid: 5, mode: 0o2745 }], 'chown by a group member: suid off, sgid without g+x stays');
  fs.modes.set(13, 0o102767); // group 0, the caller (gid 1001, pid 77: no supplementary groups) is not in it
  await s.handleRequest(3, frame(Opcode.SETATTR, 13, setattrIn(FATTR.SIZE | FATTR.KILL_SUIDGID, { size: 0 })));
  t.same(fs.called('setattr').pop(), [13, { size: 0, mode: 0o767 }], 'truncate by a non-member: sgid without g+x goes too (02767)');

  fs.modes.set(11, 0o43755);
  await s.handleRequest(3, frame(Opcode.SETATTR, 11, setattrIn(FATTR.GID, { gid: 5 })));
  t.same(fs.called('setattr').pop(), [11, { gid: 5 }], 'directories keep their bits');

  fs.modes.set(12, 0o104755);
  const write = Buffer.concat([u64(4, 0), u32(1, 4), u64(0), u32(0, 0), Buffer.from('x')]);
  await s.handleRequest(3, frame(Opcode.WRITE, 12, write));
  t.same(fs.called('setattr').pop(), [12, { mode: 0o755, fh: 4 }], 'WRITE_KILL_SUIDGID');
});

t.test('WRITE_KILL_SUIDGID: no getattr for a node known without set-id bits', async (t) => {
  const { fs, s } = await setup();
  const setattrIn = (valid: number, mode: number) =>
    Buffer.concat([u32(valid, 0), u64(0, 0, 0, 0, 0, 0), u32(0, 0, 0, mode, 0, 0, 0, 0)]);
  const write = Buffer.concat([u64(4, 0), u32(1, 4), u64(0), u32(0, 0), Buffer.from('x')]);
  fs.modes.set(14, 0o100644);
  for (let i = 0; i < 3; i++) await s.handleRequest(3, frame(Opcode.WRITE, 14, write));
  t.equal(fs.called('getattr').length, 1, 'one getattr for three writes to a file without set-id bits');
  t.equal(fs.called('setattr').length, 0, 'and no setattr');

  // a chmod u+s: the next write clears the bit again
  await s.handleRequest(3, frame(Opcode.SETATTR, 14, setattrIn(FATTR.MODE, 0o104644)));
  fs.modes.set(14, 0o104644);
  await s.handleRequest(3, frame(Opcode.WRITE, 14, write));
  t.same(fs.called('setattr').pop(), [14, { mode: 0o644, fh: 4 }], 'after a chmod u+s the write clears it');

  // a node the kernel forgot may come back as another file with the same id
  fs.modes.set(15, 0o100644);
  await s.handleRequest(3, frame(Opcode.WRITE, 15, write));
  await s.handleRequest(3, frame(Opcode.FORGET, 15, u64(1)));
  fs.modes.set(15, 0o102755);
  await s.handleRequest(3, frame(Opcode.WRITE, 15, write));
  t.same(fs.called('setattr').pop(), [15, { mode: 0o755, fh: 4 }], 'after FORGET the node is asked again');
});

t.test('xattr size protocol', async (t) => {
  const { tr, s } = await setup();
  await s.handleRequest(3, frame(Opcode.GETXATTR, 1, Buffer.concat([u32(0, 0), cstr('user.k')])));
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER), 10, 'size query');
  await s.handleRequest(3, frame(Opcode.GETXATTR, 1, Buffer.concat([u32(4, 0), cstr('user.k')])));
  t.equal(errorOf(tr.last()), -E.ERANGE);
  await s.handleRequest(3, frame(Opcode.GETXATTR, 1, Buffer.concat([u32(64, 0), cstr('user.k')])));
  t.equal(tr.last().buf.subarray(Size.OUT_HEADER).toString(), '0123456789');
  await s.handleRequest(3, frame(Opcode.LISTXATTR, 1, u32(64, 0)));
  t.equal(tr.last().buf.subarray(Size.OUT_HEADER).toString('latin1'), 'user.a\0');
});

t.test('OPENDIR flags, RENAME2 flags, DESTROY', async (t) => {
  const { fs, tr, s } = await setup();
  await s.handleRequest(3, frame(Opcode.OPENDIR, 1, openIn(0)));
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER + 8), FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE);
  await s.handleRequest(3, frame(Opcode.RENAME2, 1, Buffer.concat([u64(5), u32(2, 0), cstr('x'), cstr('y')])));
  t.same(fs.called('rename').pop(), [1, 'x', 5, 'y', { noReplace: false, exchange: true, whiteout: false }]);
  await s.handleRequest(3, frame(Opcode.RENAME, 1, Buffer.concat([u64(5), cstr('x'), cstr('y')])));
  t.same(fs.called('rename').pop(), [1, 'x', 5, 'y', { noReplace: false, exchange: false, whiteout: false }]);
  await s.handleRequest(3, frame(Opcode.DESTROY, 0, Buffer.alloc(0)));
  t.equal(fs.called('destroy').length, 1);
  t.equal(errorOf(tr.last()), 0);
});

t.test('DESTROY then the end of the connection destroys once', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, debug: () => undefined });
  const done = s.start();
  tr.readers!.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }]);
  await s.ready();
  await s.handleRequest(3, frame(Opcode.DESTROY, 0, Buffer.alloc(0)));
  tr.readers!.onEnd(3, E.ENODEV);
  await done;
  t.equal(fs.called('destroy').length, 1);
});

t.test('an undeliverable CREATE reply gives back the entry and the handle', async (t) => {
  const { fs, tr, s } = await setup();
  fs.opens.push({ fh: 33, backingFd: 100 });
  tr.failNext = E.ENOENT;
  await s.handleRequest(3, frame(Opcode.CREATE, 1, Buffer.concat([u32(0o101, 0o100644, 0o22, 0), cstr('created')])));
  t.equal(fs.lookups.get(24), 0, 'lookup count back to zero');
  t.same(fs.called('release'), [[33]], 'handle released');
  t.same(tr.backingCloses, [1], 'backing id closed');
  t.same(s.passthrough.stats(), { nodes: 0, handles: 0, backings: 0 });
});

t.test('NO_OPENDIR_SUPPORT: OPENDIR answered ENOSYS when the filesystem lists without handles; READDIR and FSYNCDIR by node with fh 0', async (t) => {
  const dirEnt = (name: string, i: number): DirEntryOut => ({ name, ino: BigInt(100 + i), type: 0o40000, nextOffset: i + 1 });
  {
    const { fs, tr, s } = await setup({ listsWithoutOpen: true });
    await s.handleRequest(3, frame(Opcode.OPENDIR, 7, openIn(0)));
    t.equal(errorOf(tr.last()), -E.ENOSYS, 'offered and supported: ENOSYS, so the kernel opens directories itself');
    fs.dir = [dirEnt('.', 0), dirEnt('..', 1)];
    await s.handleRequest(3, frame(Opcode.READDIRPLUS, 7, readIn(0, 0, 4096)));
    t.equal(errorOf(tr.last()), 0);
    await s.handleRequest(3, frame(Opcode.READDIR, 7, readIn(0, 1, 4096)));
    t.same(fs.called('readdir'), [[0, 0, 7], [0, 1, 7]], 'fh 0 with the directory\'s node');
    await s.handleRequest(3, frame(Opcode.FSYNCDIR, 7, Buffer.concat([u64(0), u32(1, 0)])));
    t.equal(errorOf(tr.last()), 0);
    t.same(fs.called('fsyncdir'), [[0, true, 7]]);
  }
  for (const [what, opts] of [
    ['not offered', { listsWithoutOpen: true, offered: ALL_OFFERED & ~InitFlag.NO_OPENDIR_SUPPORT }],
    ['a filesystem that lists by handle', {}],
  ] as const) {
    const { fs, tr, s } = await setup(opts);
    await s.handleRequest(3, frame(Opcode.OPENDIR, 7, openIn(0)));
    t.equal(errorOf(tr.last()), 0, `${what}: OPENDIR answered`);
    t.equal(tr.last().buf.readBigUInt64LE(Size.OUT_HEADER), 50n, `${what}: with the handle`);
    fs.dir = [dirEnt('.', 0)];
    await s.handleRequest(3, frame(Opcode.READDIR, 7, readIn(50, 0, 4096)));
    await s.handleRequest(3, frame(Opcode.RELEASEDIR, 7, Buffer.concat([u64(50), u32(0, 0), u64(0)])));
    t.same(fs.called('readdir'), [[50, 0, 7]]);
    t.same(fs.called('releasedir'), [[50]]);
  }
});
