// The FUSE session's test bench: request frames, a fake filesystem and a fake
// transport that records what the session writes (test/unit/bridge*.test.ts).
import { constants } from 'node:os';
import { FuseSession, type BatchHandler, type FuseTransport } from '../../src/fuse/bridge';
import { FsError } from '../../src/errors';
import { InitFlag, Opcode, Size, type InitFlagName } from '../../src/fuse/wire/protocol';
import { cstr, initIn, openIn, readIn, releaseIn, requestFrame, u32, u64 } from '../../src/fuse/wire/request';
import type {
  Attr, Ctx, DirEntryOut, Entry, FileSystemApi, OpenResult, SetattrChanges,
} from '../../src/fuse/api';

export const E = constants.errno;
// ---- frames -------------------------------------------------------------------------

let nextUnique = 100n;
export function frame(opcode: number, nodeId: number, body: Buffer, unique = (nextUnique += 2n)): Buffer {
  return requestFrame(opcode, nodeId, unique, { uid: 1000, gid: 1001, pid: 77 }, body);
}
export { cstr, openIn, readIn, releaseIn, u32, u64 };
export const uniqueOf = (f: Buffer): bigint => f.readBigUInt64LE(8);

export function initFrame(minor: number, flags: bigint, major = 7): Buffer {
  return frame(Opcode.INIT, 0, initIn(major, minor, flags));
}

/** every flag a 6.18 kernel offers (flags and flags2) */
export const ALL_OFFERED = Object.values(InitFlag).reduce((a, b) => a | b, 0n) & ~InitFlag.INIT_RESERVED;

// ---- fakes --------------------------------------------------------------------------

export function attr(ino: number, mode = 0o100644, gid = 0): Attr {
  return {
    ino: BigInt(ino), size: 0, blocks: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0,
    ctimeNsec: 0, mode, nlink: 1, uid: 0, gid, rdevMajor: 0, rdevMinor: 0, blksize: 4096,
  };
}

export class FakeFs implements FileSystemApi {
  calls: [string, ...unknown[]][] = [];
  lookups = new Map<number, number>();
  nodes = new Map<string, number>([['a', 10], ['b', 11], ['c', 12], ['foo', 7]]);
  dir: DirEntryOut[] = [];
  prefetchLookups?: FileSystemApi['prefetchLookups'];
  listsWithoutOpen?: boolean;
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
  readdir(fh: number, offset: number, dir?: number): DirEntryOut[] { this.rec('readdir', fh, offset, dir); return this.dir.slice(offset); }
  releasedir(fh: number): void { this.rec('releasedir', fh); }
  fsyncdir(fh: number, datasync: boolean, dir?: number): void { this.rec('fsyncdir', fh, datasync, dir); }
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

export interface Written { fd: number; buf: Buffer }
export class FakeTransport implements FuseTransport {
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
  /** the nodes the readers were told have no xattrs (they answer those themselves) */
  known = new Set<number>();
  answered: [number, number] = [0, 0];
  knownSet(): unknown { return 'known'; }
  knownXattrs(set: unknown, node: number, none: boolean): void {
    if (set !== 'known') throw new Error('not the set of known answers');
    if (none) this.known.add(node);
    else this.known.delete(node);
  }
  knownAnswered(): [number, number, number] { return [...this.answered, this.known.size]; }
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

export const errorOf = (w: Written): number => w.buf.readInt32LE(4);

export async function setup(opts: { isRoot?: boolean; passthrough?: 'auto' | 'off'; writeback?: 'on' | 'off'; offered?: bigint; minor?: number; acl?: boolean; listsWithoutOpen?: boolean } = {}) {
  const fs = new FakeFs();
  fs.listsWithoutOpen = opts.listsWithoutOpen;
  const tr = new FakeTransport();
  const logs: string[] = [];
  const s = new FuseSession({
    devFd: 3, fs, passthrough: opts.passthrough ?? 'auto', writeback: opts.writeback, isRoot: opts.isRoot ?? true, acl: opts.acl,
    transport: tr, debug: (fmt: string) => void logs.push(fmt),
  });
  await s.handleRequest(3, initFrame(opts.minor ?? 45, opts.offered ?? ALL_OFFERED));
  return { fs, tr, s, logs };
}

export function initReply(w: Written) {
  const b = w.buf.subarray(Size.OUT_HEADER);
  return {
    major: b.readUInt32LE(0), minor: b.readUInt32LE(4), flags: BigInt(b.readUInt32LE(12)) | (BigInt(b.readUInt32LE(32)) << 32n),
    maxWrite: b.readUInt32LE(20), timeGran: b.readUInt32LE(24), maxPages: b.readUInt16LE(28), maxStackDepth: b.readUInt32LE(36),
  };
}
export const has = (flags: bigint, name: InitFlagName): boolean => (flags & InitFlag[name]) !== 0n;

