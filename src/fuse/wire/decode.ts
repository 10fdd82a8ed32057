/**
 * Request decoding: one frame read from /dev/fuse -> a typed request.
 *
 * Pure: no I/O, never throws. A frame that is too short, whose length field disagrees
 * with the buffer, or whose body is cut short decodes to `{ ok: false }` carrying the
 * unique (when the header was readable) so the bridge can still answer it.
 * A frame is `len` bytes at offset `at` of a buffer (a transport's reused read area,
 * or a buffer of its own). Names are NUL-terminated byte strings (latin1, so copies);
 * WRITE and SETXATTR data are views on that buffer unless `copyData` is set, which a
 * transport that reuses its buffer must set: those handlers wait for the thread pool,
 * and a view would see the next batch's bytes.
 */
import { Cursor, Malformed } from './cursor';
import { Opcode, Size, GETATTR_FH, FSYNC_FDATASYNC } from './protocol';
import { readU64, type Int64 } from '../../int64';

export interface InHeader {
  len: number;
  opcode: number;
  /** exact (src/int64.ts): a number while below 2^53, as uniques are for ages */
  unique: Int64;
  /** node ids handed out by stratafs stay below 2^53 */
  nodeId: number;
  uid: number;
  gid: number;
  pid: number;
  /** length of the request extensions in 8-byte units */
  totalExtlen: number;
}

export interface SetattrIn {
  valid: number;
  fh: number;
  /** exact (src/int64.ts): a truncate may ask for up to 2^63 − 1 */
  size: Int64;
  lockOwner: bigint;
  atimeSec: number;
  mtimeSec: number;
  ctimeSec: number;
  atimeNsec: number;
  mtimeNsec: number;
  ctimeNsec: number;
  mode: number;
  uid: number;
  gid: number;
}

export type RequestBody =
  | { kind: 'INIT'; major: number; minor: number; maxReadahead: number; flags: bigint }
  | { kind: 'LOOKUP'; name: string }
  | { kind: 'FORGET'; nlookup: number }
  | { kind: 'BATCH_FORGET'; items: { nodeId: number; nlookup: number }[] }
  | { kind: 'GETATTR'; fh?: number }
  | ({ kind: 'SETATTR' } & SetattrIn)
  | { kind: 'READLINK' }
  | { kind: 'SYMLINK'; name: string; target: string }
  | { kind: 'MKNOD'; name: string; mode: number; rdev: number; umask: number }
  | { kind: 'MKDIR'; name: string; mode: number; umask: number }
  | { kind: 'UNLINK'; name: string }
  | { kind: 'RMDIR'; name: string }
  | { kind: 'RENAME'; newDir: number; name: string; newName: string; flags: number }
  | { kind: 'LINK'; oldNodeId: number; newName: string }
  | { kind: 'OPEN'; flags: number; openFlags: number }
  | { kind: 'OPENDIR'; flags: number; openFlags: number }
  | { kind: 'READ'; fh: number; offset: Int64; size: number; readFlags: number; flags: number }
  | { kind: 'READDIR'; fh: number; offset: number; size: number }
  | { kind: 'READDIRPLUS'; fh: number; offset: number; size: number }
  | { kind: 'WRITE'; fh: number; offset: Int64; writeFlags: number; flags: number; data: Buffer }
  | { kind: 'STATFS' }
  | { kind: 'RELEASE'; fh: number; flags: number; releaseFlags: number }
  | { kind: 'RELEASEDIR'; fh: number; flags: number; releaseFlags: number }
  | { kind: 'FSYNC'; fh: number; datasync: boolean }
  | { kind: 'FSYNCDIR'; fh: number; datasync: boolean }
  | { kind: 'SETXATTR'; name: string; value: Buffer; flags: number; setxattrFlags: number }
  | { kind: 'GETXATTR'; name: string; size: number }
  | { kind: 'LISTXATTR'; size: number }
  | { kind: 'REMOVEXATTR'; name: string }
  | { kind: 'FLUSH'; fh: number }
  | { kind: 'ACCESS'; mask: number }
  | { kind: 'CREATE'; name: string; flags: number; mode: number; umask: number; openFlags: number }
  | { kind: 'INTERRUPT'; target: Int64 }
  | { kind: 'DESTROY' }
  | { kind: 'FALLOCATE'; fh: number; offset: Int64; length: Int64; mode: number }
  | { kind: 'LSEEK'; fh: number; offset: Int64; whence: number }
  | {
      kind: 'COPY_FILE_RANGE';
      fhIn: number;
      offIn: Int64;
      nodeIdOut: number;
      fhOut: number;
      offOut: Int64;
      len: Int64;
      flags: bigint;
    }
  | { kind: 'unknown' };

export type RequestKind = RequestBody['kind'];

export interface Request<B extends RequestBody = RequestBody> {
  header: InHeader;
  body: B;
}

export interface DecodeError {
  message: string;
  /** present when the header could be read: the bridge answers the request */
  header?: InHeader;
}

export type DecodeResult = { ok: true; req: Request } | { ok: false; error: DecodeError };

export interface DecodeOptions {
  /** FUSE_SETXATTR_EXT was negotiated: fuse_setxattr_in is 16 bytes */
  setxattrExt?: boolean;
  /** WRITE and SETXATTR data are copies, not views (the buffer is reused after decode) */
  copyData?: boolean;
}

const TWO_32 = 2 ** 32;

/** fuse_in_header.pid of the request at `at`: the sending thread (the caller checked that the header fits) */
export function headerPid(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + 32);
}

/** the fixed-size header at `at` (the caller checked that it fits) */
function readHeader(buf: Buffer, at: number): InHeader {
  const lo = buf.readUInt32LE(at + 16);
  const hi = buf.readUInt32LE(at + 20);
  return {
    len: buf.readUInt32LE(at),
    opcode: buf.readUInt32LE(at + 4),
    unique: readU64(buf, at + 8),
    // a node id above 2^53 was never handed out; keep it unusable rather than rounded
    nodeId: hi < 0x200000 ? hi * TWO_32 + lo : -1,
    uid: buf.readUInt32LE(at + 24),
    gid: buf.readUInt32LE(at + 28),
    pid: headerPid(buf, at),
    totalExtlen: buf.readUInt16LE(at + 36),
  };
}

function body(op: number, c: Cursor, opts: DecodeOptions): RequestBody {
  switch (op) {
    case Opcode.INIT: {
      const major = c.u32('major');
      const minor = c.u32('minor');
      const maxReadahead = c.u32('max_readahead');
      let flags = BigInt(c.u32('flags'));
      // 7.36+: flags2 follows (the kernel sends the 64-byte fuse_init_in)
      if (c.remaining >= 4) flags |= BigInt(c.u32('flags2')) << 32n;
      return { kind: 'INIT', major, minor, maxReadahead, flags };
    }
    case Opcode.LOOKUP:
      return { kind: 'LOOKUP', name: c.cstr() };
    case Opcode.FORGET:
      return { kind: 'FORGET', nlookup: c.u64n('nlookup') };
    case Opcode.BATCH_FORGET: {
      const count = c.u32('count');
      c.skip(4);
      if (count * Size.FORGET_ONE > c.remaining) throw new Malformed('truncated forget list');
      const items: { nodeId: number; nlookup: number }[] = [];
      for (let i = 0; i < count; i++) items.push({ nodeId: c.u64n('nodeid'), nlookup: c.u64n('nlookup') });
      return { kind: 'BATCH_FORGET', items };
    }
    case Opcode.GETATTR: {
      const getattrFlags = c.u32('getattr_flags');
      c.skip(4);
      const fh = c.u64n('fh');
      return (getattrFlags & GETATTR_FH) !== 0 ? { kind: 'GETATTR', fh } : { kind: 'GETATTR' };
    }
    case Opcode.SETATTR: {
      const valid = c.u32('valid');
      c.skip(4);
      const fh = c.u64n('fh');
      const size = c.u64x('size');
      const lockOwner = c.u64('lock_owner');
      const atimeSec = c.i64n('atime');
      const mtimeSec = c.i64n('mtime');
      const ctimeSec = c.i64n('ctime');
      const atimeNsec = c.u32('atimensec');
      const mtimeNsec = c.u32('mtimensec');
      const ctimeNsec = c.u32('ctimensec');
      const mode = c.u32('mode');
      c.skip(4);
      const uid = c.u32('uid');
      const gid = c.u32('gid');
      c.skip(4);
      return {
        kind: 'SETATTR', valid, fh, size, lockOwner, atimeSec, mtimeSec, ctimeSec,
        atimeNsec, mtimeNsec, ctimeNsec, mode, uid, gid,
      };
    }
    case Opcode.READLINK:
      return { kind: 'READLINK' };
    case Opcode.SYMLINK: {
      const name = c.cstr('name');
      return { kind: 'SYMLINK', name, target: c.cstr('target') };
    }
    case Opcode.MKNOD: {
      const mode = c.u32('mode');
      const rdev = c.u32('rdev');
      const umask = c.u32('umask');
      c.skip(4);
      return { kind: 'MKNOD', mode, rdev, umask, name: c.cstr() };
    }
    case Opcode.MKDIR: {
      const mode = c.u32('mode');
      const umask = c.u32('umask');
      return { kind: 'MKDIR', mode, umask, name: c.cstr() };
    }
    case Opcode.UNLINK:
      return { kind: 'UNLINK', name: c.cstr() };
    case Opcode.RMDIR:
      return { kind: 'RMDIR', name: c.cstr() };
    case Opcode.RENAME:
    case Opcode.RENAME2: {
      const newDir = c.u64n('newdir');
      let flags = 0;
      if (op === Opcode.RENAME2) {
        flags = c.u32('flags');
        c.skip(4);
      }
      const name = c.cstr('oldname');
      return { kind: 'RENAME', newDir, flags, name, newName: c.cstr('newname') };
    }
    case Opcode.LINK: {
      const oldNodeId = c.u64n('oldnodeid');
      return { kind: 'LINK', oldNodeId, newName: c.cstr('newname') };
    }
    case Opcode.OPEN:
    case Opcode.OPENDIR: {
      const flags = c.u32('flags');
      const openFlags = c.u32('open_flags');
      return { kind: op === Opcode.OPEN ? 'OPEN' : 'OPENDIR', flags, openFlags };
    }
    case Opcode.READ:
    case Opcode.READDIR:
    case Opcode.READDIRPLUS: {
      const fh = c.u64n('fh');
      if (op === Opcode.READ) {
        const offset = c.u64x('offset');
        const size = c.u32('size');
        const readFlags = c.u32('read_flags');
        c.skip(8, 'lock_owner');
        const flags = c.u32('flags');
        c.skip(4);
        return { kind: 'READ', fh, offset, size, readFlags, flags };
      }
      // a directory offset is a cookie stratafs handed out (a small number)
      const offset = c.u64n('offset');
      const size = c.u32('size');
      c.skip(4, 'read_flags');
      c.skip(8, 'lock_owner');
      c.skip(8, 'flags');
      return { kind: op === Opcode.READDIR ? 'READDIR' : 'READDIRPLUS', fh, offset, size };
    }
    case Opcode.WRITE: {
      const fh = c.u64n('fh');
      const offset = c.u64x('offset');
      const size = c.u32('size');
      const writeFlags = c.u32('write_flags');
      c.skip(8, 'lock_owner');
      const flags = c.u32('flags');
      c.skip(4);
      return { kind: 'WRITE', fh, offset, writeFlags, flags, data: c.bytes(size, 'write data', opts.copyData) };
    }
    case Opcode.STATFS:
      return { kind: 'STATFS' };
    case Opcode.RELEASE:
    case Opcode.RELEASEDIR: {
      const fh = c.u64n('fh');
      const flags = c.u32('flags');
      const releaseFlags = c.u32('release_flags');
      c.skip(8, 'lock_owner');
      return { kind: op === Opcode.RELEASE ? 'RELEASE' : 'RELEASEDIR', fh, flags, releaseFlags };
    }
    case Opcode.FSYNC:
    case Opcode.FSYNCDIR: {
      const fh = c.u64n('fh');
      const datasync = (c.u32('fsync_flags') & FSYNC_FDATASYNC) !== 0;
      c.skip(4);
      return { kind: op === Opcode.FSYNC ? 'FSYNC' : 'FSYNCDIR', fh, datasync };
    }
    case Opcode.SETXATTR: {
      const size = c.u32('size');
      const flags = c.u32('flags');
      let setxattrFlags = 0;
      if (opts.setxattrExt) {
        setxattrFlags = c.u32('setxattr_flags');
        c.skip(4);
      }
      const name = c.cstr();
      return { kind: 'SETXATTR', name, flags, setxattrFlags, value: c.bytes(size, 'xattr value', opts.copyData) };
    }
    case Opcode.GETXATTR: {
      const size = c.u32('size');
      c.skip(4);
      return { kind: 'GETXATTR', size, name: c.cstr() };
    }
    case Opcode.LISTXATTR: {
      const size = c.u32('size');
      c.skip(4);
      return { kind: 'LISTXATTR', size };
    }
    case Opcode.REMOVEXATTR:
      return { kind: 'REMOVEXATTR', name: c.cstr() };
    case Opcode.FLUSH: {
      const fh = c.u64n('fh');
      c.skip(8);
      c.skip(8, 'lock_owner');
      return { kind: 'FLUSH', fh };
    }
    case Opcode.ACCESS: {
      const mask = c.u32('mask');
      c.skip(4);
      return { kind: 'ACCESS', mask };
    }
    case Opcode.CREATE: {
      const flags = c.u32('flags');
      const mode = c.u32('mode');
      const umask = c.u32('umask');
      const openFlags = c.u32('open_flags');
      return { kind: 'CREATE', flags, mode, umask, openFlags, name: c.cstr() };
    }
    case Opcode.INTERRUPT:
      return { kind: 'INTERRUPT', target: c.u64x('unique') };
    case Opcode.DESTROY:
      return { kind: 'DESTROY' };
    case Opcode.FALLOCATE: {
      const fh = c.u64n('fh');
      const offset = c.u64x('offset');
      const length = c.u64x('length');
      const mode = c.u32('mode');
      c.skip(4);
      return { kind: 'FALLOCATE', fh, offset, length, mode };
    }
    case Opcode.LSEEK: {
      const fh = c.u64n('fh');
      const offset = c.i64x('offset');
      const whence = c.u32('whence');
      c.skip(4);
      return { kind: 'LSEEK', fh, offset, whence };
    }
    case Opcode.COPY_FILE_RANGE: {
      const fhIn = c.u64n('fh_in');
      const offIn = c.u64x('off_in');
      const nodeIdOut = c.u64n('nodeid_out');
      const fhOut = c.u64n('fh_out');
      const offOut = c.u64x('off_out');
      const len = c.u64x('len');
      const flags = c.u64('flags');
      return { kind: 'COPY_FILE_RANGE', fhIn, offIn, nodeIdOut, fhOut, offOut, len, flags };
    }
    default:
      return { kind: 'unknown' };
  }
}

/** Decodes the frame of `len` bytes at offset `at` of `buf` (default: all of it). Never throws. */
export function decode(buf: Buffer, opts: DecodeOptions = {}, at = 0, len = buf.length - at): DecodeResult {
  if (len < Size.IN_HEADER) {
    return { ok: false, error: { message: `frame of ${len} bytes is shorter than the header` } };
  }
  const header = readHeader(buf, at);
  if (header.len !== len) {
    return { ok: false, error: { message: `length field ${header.len} != frame size ${len}`, header } };
  }
  const end = header.len - header.totalExtlen * 8;
  if (end < Size.IN_HEADER) {
    return { ok: false, error: { message: `extension length ${header.totalExtlen * 8} exceeds the frame`, header } };
  }
  if (header.nodeId < 0) {
    return { ok: false, error: { message: 'node id out of range', header } };
  }
  try {
    return { ok: true, req: { header, body: body(header.opcode, new Cursor(buf, at + Size.IN_HEADER, at + end), opts) } };
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) {
      return { ok: false, error: { message: `${header.opcode}: ${e.message}`, header } };
    }
    return { ok: false, error: { message: `unexpected: ${String(e)}`, header } };
  }
}
