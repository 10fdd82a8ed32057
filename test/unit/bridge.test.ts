import t from 'tap';
import { constants } from 'node:os';
import { FuseSession, type BatchHandler, type FuseTransport } from '../../src/fuse/bridge';
import { FsError } from '../../src/errors';
import {
  FATTR, FOPEN, InitFlag, Opcode, Size, type InitFlagName,
} from '../../src/fuse/wire/protocol';
import type {
  Attr, Ctx, DirEntryOut, Entry, FileSystemApi, OpenResult, SetattrChanges,
} from '../../src/fuse/api';

const E = constants.errno;

// ---- frames -------------------------------------------------------------------------

let nextUnique = 100n;
function frame(opcode: number, nodeId: number, body: Buffer, unique = (nextUnique += 2n)): Buffer {
  const h = Buffer.alloc(Size.IN_HEADER);
  h.writeUInt32LE(Size.IN_HEADER + body.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(unique, 8);
  h.writeBigUInt64LE(BigInt(nodeId), 16);
  h.writeUInt32LE(1000, 24);
  h.writeUInt32LE(1001, 28);
  h.writeUInt32LE(77, 32);
  return Buffer.concat([h, body]);
}
const u32 = (...v: number[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x); return b; }));
const u64 = (...v: number[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(x)); return b; }));
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'latin1');
const uniqueOf = (f: Buffer): bigint => f.readBigUInt64LE(8);

function initFrame(minor: number, flags: bigint, major = 7): Buffer {
  return frame(Opcode.INIT, 0, Buffer.concat([
    u32(major, minor, 131072, Number(flags & 0xffffffffn), Number(flags >> 32n)), Buffer.alloc(44),
  ]));
}
const readIn = (fh: number, offset: number, size: number): Buffer => Buffer.concat([u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]);
const openIn = (flags: number): Buffer => u32(flags, 0);
const releaseIn = (fh: number): Buffer => Buffer.concat([u64(fh), u32(0, 0), u64(0)]);

/** every flag a 6.18 kernel offers (flags and flags2) */
const ALL_OFFERED = Object.values(InitFlag).reduce((a, b) => a | b, 0n) & ~InitFlag.INIT_RESERVED;

// ---- fakes --------------------------------------------------------------------------

function attr(ino: number, mode = 0o100644, gid = 0): Attr {
  return {
    ino: BigInt(ino), size: 0, blocks: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0,
    ctimeNsec: 0, mode, nlink: 1, uid: 0, gid, rdevMajor: 0, rdevMinor: 0, blksize: 4096,
  };
}

class FakeFs implements FileSystemApi {
  calls: [string, ...unknown[]][] = [];
  lookups = new Map<number, number>();
  nodes = new Map<string, number>([['a', 10], ['b', 11], ['c', 12], ['foo', 7]]);
  dir: DirEntryOut[] = [];
  prefetchLookups?: FileSystemApi['prefetchLookups'];
  modes = new Map<number, number>();
  gids = new Map<number, number>();
  opens: OpenResult[] = [];
  nextFh = 1;
  private rec(name: string, ...args: unknown[]): void {
    this.calls.push([name, ...args]);
  }
  called(name: string): unknown[][] {
    return this.calls.filter((c) => c[0] === name).map((c) => c.slice(1));
  }
  private entry(nodeId: number): Entry {
    this.lookups.set(nodeId, (this.lookups.get(nodeId) ?? 0) + 1);
    return { nodeId, generation: 0, attr: attr(nodeId, this.modes.get(nodeId)) };
  }
  init(o: { passthrough: boolean; writebackCache: boolean }): void { this.rec('init', o); }
  destroy(): void { this.rec('destroy'); }
  lookup(ctx: Ctx, parent: number, name: string): Entry | null {
    this.rec('lookup', ctx, parent, name);
    const n = this.nodes.get(name);
    if (name === 'absent') return null;
    if (n === undefined) throw new FsError(E.ENOENT);
    return this.entry(n);
  }
  forget(node: number, n: number): void {
    this.rec('forget', node, n);
    this.lookups.set(node, (this.lookups.get(node) ?? 0) - n);
  }
  getattr(_c: Ctx, node: number): Attr { this.rec('getattr', node); return attr(node, this.modes.get(node), this.gids.get(node)); }
  setattr(_c: Ctx, node: number, ch: SetattrChanges): Attr { this.rec('setattr', node, ch); return attr(node, ch.mode); }
  readlink(): string { return 'target'; }
  mknod(_c: Ctx, _p: number, name: string): Entry { return this.entry(this.nodes.get(name) ?? 20); }
  mkdir(_c: Ctx, _p: number, name: string): Entry { return this.entry(this.nodes.get(name) ?? 21); }
  symlink(): Entry { return this.entry(22); }
  link(): Entry { return this.entry(23); }
  unlink(): void { this.rec('unlink'); }
  rmdir(_c: Ctx, _p: number, name: string): void {
    if (name === 'full') throw new FsError(E.ENOTEMPTY);
    if (name === 'bug') throw new Error('something unexpected');
  }
  rename(...a: unknown[]): void { this.rec('rename', ...a.slice(1)); }
  open(_c: Ctx, node: number, flags: number): OpenResult {
    this.rec('open', node, flags);
    return this.opens.shift() ?? { fh: this.nextFh++ };
  }
  create(_c: Ctx, _p: number, name: string): { entry: Entry; open: OpenResult } {
    return { entry: this.entry(this.nodes.get(name) ?? 24), open: this.opens.shift() ?? { fh: this.nextFh++ } };
  }
  read(_fh: number, _o: number, size: number): Buffer { return Buffer.alloc(Math.min(size, 3), 0x61); }
  write(_fh: number, _o: number, d: Buffer): number { return d.length; }
  flush(): void { /* nothing */ }
  fsync(): void { /* nothing */ }
  release(fh: number): void { this.rec('release', fh); }
  fallocate(): void { /* nothing */ }
  lseek(_fh: number, off: number): number { return off; }
  copyFileRange(): number { return 0; }
  opendir(): OpenResult { return { fh: 50, cacheDir: true, keepCache: true }; }
  readdir(fh: number, offset: number): DirEntryOut[] { this.rec('readdir', fh, offset); return this.dir.slice(offset); }
  releasedir(): void { /* nothing */ }
  fsyncdir(): void { /* nothing */ }
  statfs() { return { blocks: 1, bfree: 1, bavail: 1, files: 1, ffree: 1, bsize: 4096, namelen: 255, frsize: 4096 }; }
  setxattr(): void { /* nothing */ }
  getxattr(_c: Ctx, _n: number, name: string): Buffer {
    if (name === 'user.none') throw new FsError(E.ENODATA);
    return Buffer.from('0123456789');
  }
  listxattr(): string[] { return ['user.a']; }
  removexattr(): void { /* nothing */ }
  access(): void { /* nothing */ }
}

interface Written { fd: number; buf: Buffer }
class FakeTransport implements FuseTransport {
  written: Written[] = [];
  failNext: number | null = null;
  backingOpens: number[] = [];
  backingCloses: number[] = [];
  keys = new Map<number, string>();
  nextBacking = 1;
  readers: { fds: number[]; onBatch: (frames: { fd: number; buf: Buffer }[]) => void; onEnd: (fd: number, e: number) => void } | null = null;
  stopped = false;
  closed: number[] = [];
  writev(fd: number, bufs: Buffer[]): number {
    if (this.failNext !== null) {
      const errno = this.failNext;
      this.failNext = null;
      throw Object.assign(new Error('write failed'), { errno, code: 'ENOENT', syscall: 'writev' });
    }
    const buf = Buffer.concat(bufs);
    this.written.push({ fd, buf });
    return buf.length;
  }
  startReaders(fds: number[], onBatch: BatchHandler, onEnd: (fd: number, e: number) => void): unknown {
    // frames packed into one reused area, as the native poller hands them over
    const area = Buffer.alloc(1 << 16);
    const index = new Int32Array(3 * 16);
    const feed = (frames: { fd: number; buf: Buffer }[]): void => {
      let off = 0;
      frames.forEach((f, i) => {
        f.buf.copy(area, off);
        index.set([f.fd, off, f.buf.length], 3 * i);
        off += (f.buf.length + 7) & ~7;
      });
      onBatch(area, index, frames.length);
    };
    this.readers = { fds, onBatch: feed, onEnd };
    return 'handle';
  }
  stopReaders(h: unknown): void { this.stopped = h === 'handle'; }
  // no ring here (test/unit/uring-bridge.test.ts covers it): the session goes on through /dev/fuse
  ringStart(): { handle: unknown; queues: number } { throw Object.assign(new Error('no ring'), { errno: E.EOPNOTSUPP, code: 'EOPNOTSUPP' }); }
  ringRegister(): void { throw new Error('no ring'); }
  ringCommit(): void { throw new Error('no ring'); }
  ringStop(): void { /* nothing */ }
  backingOpen(_dev: number, fd: number): number { this.backingOpens.push(fd); return this.nextBacking++; }
  backingClose(_dev: number, id: number): void { this.backingCloses.push(id); }
  fileKey(fd: number): string { return this.keys.get(fd) ?? `key${fd}`; }
  close(fd: number): void { this.closed.push(fd); }
  last(): Written { return this.written[this.written.length - 1]; }
}

const errorOf = (w: Written): number => w.buf.readInt32LE(4);

async function setup(opts: { isRoot?: boolean; passthrough?: 'auto' | 'off'; writeback?: 'on' | 'off'; offered?: bigint; minor?: number; acl?: boolean } = {}) {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const logs: string[] = [];
  const s = new FuseSession({
    devFd: 3, fs, passthrough: opts.passthrough ?? 'auto', writeback: opts.writeback, isRoot: opts.isRoot ?? true, acl: opts.acl,
    transport: tr, debug: (fmt: string) => void logs.push(fmt),
  });
  await s.handleRequest(3, initFrame(opts.minor ?? 45, opts.offered ?? ALL_OFFERED));
  return { fs, tr, s, logs };
}

function initReply(w: Written) {
  const b = w.buf.subarray(Size.OUT_HEADER);
  return {
    major: b.readUInt32LE(0), minor: b.readUInt32LE(4), flags: BigInt(b.readUInt32LE(12)) | (BigInt(b.readUInt32LE(32)) << 32n),
    maxWrite: b.readUInt32LE(20), timeGran: b.readUInt32LE(24), maxPages: b.readUInt16LE(28), maxStackDepth: b.readUInt32LE(36),
  };
}
const has = (flags: bigint, name: InitFlagName): boolean => (flags & InitFlag[name]) !== 0n;

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
  fs.prefetchLookups = (dir, entries) => {
    seen.push([String(dir), ...entries.map((e) => e.name)]);
    return new Promise<void>((r) => { release = r; });
  };
  const n = fs.called('lookup').length;
  const done = s.handleRequest(3, frame(Opcode.READDIRPLUS, 1, readIn(50, 0, 4096)));
  await new Promise((r) => setImmediate(r));
  t.same(seen, [['1', 'a', 'b']], 'asked with the directory and the batch');
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

t.test('passthrough: reuse of one backing id per node, fallbacks', async (t) => {
  const { fs, tr, s } = await setup();
  const open = async (node: number, r: OpenResult): Promise<{ flags: number; backing: number; fh: number }> => {
    fs.opens.push(r);
    await s.handleRequest(3, frame(Opcode.OPEN, node, openIn(0)));
    const b = tr.last().buf;
    t.equal(errorOf(tr.last()), 0);
    const flags = b.readUInt32LE(24);
    t.ok(flags & FOPEN.NOFLUSH, 'no FLUSH on close');
    return { fh: Number(b.readBigUInt64LE(16)), flags: flags & ~FOPEN.NOFLUSH, backing: b.readInt32LE(28) };
  };
  const release = (fh: number) => s.handleRequest(3, frame(Opcode.RELEASE, 0, releaseIn(fh)));
  tr.keys.set(100, 'lower:1').set(101, 'lower:1').set(102, 'upper:1');

  const a = await open(7, { fh: 1, backingFd: 100 });
  t.same([a.flags, a.backing], [FOPEN.PASSTHROUGH, 1], 'first open: passthrough');
  const b = await open(7, { fh: 2, backingFd: 101 });
  t.same([b.flags, b.backing], [FOPEN.PASSTHROUGH, 1], 'same real file: same backing id');
  t.same(tr.backingOpens, [100], 'registered once');
  // after copy-up the node is opened on another real file while our count still holds
  // handles of the old one (their RELEASE may simply not have arrived yet): it gets a
  // backing id of its own; the kernel is the judge of whether the old ones are still open
  const c = await open(7, { fh: 3, backingFd: 102 });
  t.same([c.flags, c.backing], [FOPEN.PASSTHROUGH, 2], 'other real file: a backing id of its own');
  t.same(tr.backingOpens, [100, 102], 'registered');
  const nb = await open(7, { fh: 4, keepCache: true });
  t.same([nb.flags, nb.backing], [FOPEN.KEEP_CACHE, 0], 'no backing fd: a plain open');

  await release(1);
  t.same(tr.backingCloses, [], 'still one handle on the first backing id');
  await release(2);
  t.same(tr.backingCloses, [1], 'first backing id closed with its last handle');
  t.equal(s.passthrough.backingOf(7), 2, 'the node now reuses the second');
  await release(3);
  await release(4);
  t.same(tr.backingCloses, [1, 2]);
  t.same(fs.called('release'), [[1], [2], [3], [4]], 'every handle reaches release');
  t.same(s.passthrough.stats(), { nodes: 0, handles: 0, backings: 0 });

  const d = await open(9, { fh: 4, directIo: true });
  t.equal(d.flags, FOPEN.DIRECT_IO, 'direct io asked by the filesystem');
  const d2 = await open(9, { fh: 10, backingFd: 100 });
  t.equal(d2.flags, FOPEN.PASSTHROUGH, 'direct io handles do not block passthrough');
  await release(4);
  await release(10);

  const e = await open(8, { fh: 5, keepCache: true });
  t.equal(e.flags, FOPEN.KEEP_CACHE, 'plain cached open');
  const f = await open(8, { fh: 6, backingFd: 102 });
  t.same([f.flags, f.backing], [0, 0], 'node with cached opens does not start passthrough');
  await release(5);
  await release(6);
  const g = await open(8, { fh: 7, backingFd: 102 });
  t.same([g.flags, g.backing], [FOPEN.PASSTHROUGH, 4], 'after they are closed it may');
  await release(7);
  t.same(tr.backingCloses, [1, 2, 3, 4]);

  // CREATE goes through the same registry
  fs.opens.push({ fh: 8, backingFd: 100 });
  await s.handleRequest(3, frame(Opcode.CREATE, 1, Buffer.concat([u32(0o101, 0o100644, 0o22, 0), cstr('newfile')])));
  const cb = tr.last().buf;
  t.equal(cb.readUInt32LE(Size.OUT_HEADER + Size.ENTRY_OUT + 8), FOPEN.PASSTHROUGH | FOPEN.NOFLUSH);
  t.equal(cb.readInt32LE(Size.OUT_HEADER + Size.ENTRY_OUT + 12), 5);
});

t.test('passthrough not negotiated: backing fds are ignored', async (t) => {
  const { fs, tr, s } = await setup({ isRoot: false });
  fs.opens.push({ fh: 1, backingFd: 100, keepCache: true });
  await s.handleRequest(3, frame(Opcode.OPEN, 7, openIn(0)));
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER + 8), FOPEN.KEEP_CACHE | FOPEN.NOFLUSH);
  t.same(tr.backingOpens, []);
});

t.test('passthrough: a failing BACKING_OPEN falls back to a cached open', async (t) => {
  const { fs, tr, s } = await setup();
  tr.backingOpen = () => { throw Object.assign(new Error('EPERM'), { errno: E.EPERM }); };
  fs.opens.push({ fh: 1, backingFd: 100 });
  await s.handleRequest(3, frame(Opcode.OPEN, 7, openIn(0)));
  t.equal(errorOf(tr.last()), 0);
  t.equal(tr.last().buf.readUInt32LE(Size.OUT_HEADER + 8), FOPEN.NOFLUSH);
});

t.test('notify is sent later, never synchronously', async (t) => {
  const { tr, s } = await setup();
  const n = tr.written.length;
  const p = s.notify.invalEntry(1, 'foo');
  const q = s.notify.delete(1, 7, 'foo');
  const r = s.notify.invalInode(7, -1, 0);
  t.equal(tr.written.length, n, 'nothing written yet');
  t.same(await Promise.all([p, q, r]), [true, true, true]);
  t.same(tr.written.slice(n).map((w) => [w.fd, w.buf.readInt32LE(4), w.buf.readBigUInt64LE(8)]), [[3, 3, 0n], [3, 6, 0n], [3, 2, 0n]]);
  tr.failNext = E.ENOENT;
  t.equal(await s.notify.invalEntry(1, 'x'), false, 'a refused notify resolves false');
});

t.test('start: the device fd is read on the JS thread; the session ends with its reader', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  let ended = false;
  s.on('end', () => (ended = true));
  const done = s.start();
  const rd = tr.readers!;
  t.same(rd.fds, [3], 'the device fd alone');
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }, { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('foo')) }]);
  await s.ready();
  await new Promise((r) => setImmediate(r));
  t.same(tr.written.map((w) => w.fd), [3, 3], 'INIT and LOOKUP answered');
  rd.onEnd(3, 0);
  await done;
  t.ok(ended, "'end' emitted");
  t.ok(tr.stopped, 'poller stopped');
  t.same(tr.closed, [], 'nothing to close');
  t.equal(fs.called('destroy').length, 1, 'filesystem destroyed');
});

t.test('requests read are counted by opcode', async (t) => {
  const fs = new FakeFs();
  const tr = new FakeTransport();
  const s = new FuseSession({ devFd: 3, fs, transport: tr, isRoot: true, debug: () => undefined });
  const done = s.start();
  const rd = tr.readers!;
  t.same(s.requestCounts(), {}, 'nothing read yet');
  rd.onBatch([{ fd: 3, buf: initFrame(45, ALL_OFFERED) }]);
  await s.ready();
  rd.onBatch([
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('foo')) },
    { fd: 3, buf: frame(Opcode.LOOKUP, 1, cstr('absent')) },
    { fd: 3, buf: frame(Opcode.GETATTR, 7, Buffer.alloc(16)) },
    { fd: 3, buf: frame(4000, 1, Buffer.alloc(0)) },
    { fd: 3, buf: Buffer.alloc(3) },
  ]);
  await new Promise((r) => setImmediate(r));
  t.same(s.requestCounts(), { INIT: 1, LOOKUP: 2, GETATTR: 1, 'OP_63+': 1, OP_0: 1 },
    'by name; unknown large opcodes share one slot; a frame too short to hold one counts as 0');
  rd.onEnd(3, 0);
  await done;
});

t.test('importing the bridge does not load the addon', async (t) => {
  const keys = Object.keys(require.cache);
  t.ok(keys.some((k) => /src[\\/]fuse[\\/]bridge[\\/]session/.test(k)), 'the bridge is in the module cache');
  t.same(keys.filter((k) => k.endsWith('.node') || /src[\\/]native[\\/]index/.test(k)), [], 'the addon is not');
});
