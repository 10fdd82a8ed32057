/**
 * Reply encoding: typed values -> the buffers of one writev to /dev/fuse.
 *
 * Every function returns `Buffer[]` whose first element starts with fuse_out_header
 * (len = total of all buffers). Data replies (READ, READLINK, GETXATTR) pass the data
 * buffer through untouched, so a read is written without a copy.
 * Pure: no I/O.
 *
 * Cheap per reply: fixed-size replies are carved from Node's shared allocation pool
 * (Buffer.allocUnsafe, zeroed) rather than each getting an ArrayBuffer of its own, and
 * 64-bit fields go through src/int64 (a safe-integer number as two 32-bit halves, a
 * bigint as is: exact either way, no BigInt allocated for the common case).
 */
import type { Attr, CacheTimeouts, Entry, FsStat } from './types';
import { Size } from './protocol';
import { writeI64, writeU64, type Int64 } from '../../int64';

export type Reply = Buffer[];

/** seconds (may be fractional) -> [sec, nsec] */
export function splitTimeout(seconds: number): [number, number] {
  // a mount uses one or two timeouts for every reply: keep the last split
  if (seconds === lastTimeout) return lastSplit;
  let split: [number, number] = [0, 0];
  if (seconds > 0) {
    const sec = Math.min(Math.floor(seconds), Number.MAX_SAFE_INTEGER);
    split = [sec, Math.min(999_999_999, Math.round((seconds - sec) * 1e9))];
  }
  lastTimeout = seconds;
  lastSplit = split;
  return split;
}
let lastTimeout = 0;
let lastSplit: [number, number] = [0, 0];

/** makedev as the kernel's new_encode_dev (what fuse_attr.rdev and mknod carry) */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(dev: number): { major: number; minor: number } {
  return { major: (dev & 0xfff00) >>> 8, minor: ((dev & 0xff) | ((dev >>> 12) & 0xfff00)) >>> 0 };
}

/** `n` zeroed bytes; small ones share Node's allocation pool */
function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

function header(len: number, error: number, unique: Int64): Buffer {
  const b = zeroed(Size.OUT_HEADER);
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  writeU64(b, unique, 8);
  return b;
}

/** where the body starts in a frame */
const H = Size.OUT_HEADER;

/** header immediately followed by `bodyLen` zeroed bytes in one buffer (the body at H) */
function frame(unique: Int64, bodyLen: number): Buffer {
  const buf = zeroed(H + bodyLen);
  buf.writeUInt32LE(buf.length, 0);
  writeU64(buf, unique, 8);
  return buf;
}

/** the same with a view of the body, for the replies off the hot path */
function framed(unique: Int64, bodyLen: number): { buf: Buffer; body: Buffer } {
  const buf = frame(unique, bodyLen);
  return { buf, body: buf.subarray(H) };
}

/** error-only reply; `errno` is the positive errno (0 = success with no body) */
export function encodeError(unique: Int64, errno: number): Reply {
  return [header(Size.OUT_HEADER, errno === 0 ? 0 : -Math.abs(errno), unique)];
}

export function encodeEmpty(unique: Int64): Reply {
  return encodeError(unique, 0);
}

/** writes fuse_attr (88 bytes) at `at` */
export function writeAttr(b: Buffer, at: number, a: Attr): void {
  writeU64(b, a.ino, at);
  writeU64(b, a.size, at + 8);
  writeU64(b, a.blocks, at + 16);
  writeI64(b, a.atimeSec, at + 24);
  writeI64(b, a.mtimeSec, at + 32);
  writeI64(b, a.ctimeSec, at + 40);
  b.writeUInt32LE(a.atimeNsec, at + 48);
  b.writeUInt32LE(a.mtimeNsec, at + 52);
  b.writeUInt32LE(a.ctimeNsec, at + 56);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(encodeDev(a.rdevMajor, a.rdevMinor), at + 76);
  b.writeUInt32LE(a.blksize, at + 80);
  b.writeUInt32LE(0, at + 84); // flags: no submount, no DAX
}

/** writes fuse_entry_out (128 bytes) at `at` */
export function writeEntry(b: Buffer, at: number, e: Entry, t: CacheTimeouts): void {
  const [es, ens] = splitTimeout(t.entry);
  const [as, ans] = splitTimeout(t.attr);
  writeU64(b, e.nodeId, at);
  writeU64(b, e.generation, at + 8);
  writeU64(b, es, at + 16);
  writeU64(b, as, at + 24);
  b.writeUInt32LE(ens, at + 32);
  b.writeUInt32LE(ans, at + 36);
  writeAttr(b, at + 40, e.attr);
}

export function encodeEntry(unique: Int64, e: Entry, t: CacheTimeouts): Reply {
  const buf = frame(unique, Size.ENTRY_OUT);
  writeEntry(buf, H, e, t);
  return [buf];
}

/** "no such name", for the kernel to cache `timeout` seconds: node id 0 */
export function encodeNegativeEntry(unique: Int64, timeout: number): Reply {
  const buf = frame(unique, Size.ENTRY_OUT);
  const [s, ns] = splitTimeout(timeout);
  writeU64(buf, s, H + 16);
  buf.writeUInt32LE(ns, H + 32);
  return [buf];
}

export function encodeAttr(unique: Int64, attr: Attr, timeout: number): Reply {
  const buf = frame(unique, Size.ATTR_OUT);
  const [s, ns] = splitTimeout(timeout);
  writeU64(buf, s, H);
  buf.writeUInt32LE(ns, H + 8);
  writeAttr(buf, H + 16, attr);
  return [buf];
}

export interface OpenOut {
  fh: number;
  openFlags: number;
  backingId: number;
}

function writeOpen(b: Buffer, at: number, o: OpenOut): void {
  writeU64(b, o.fh, at);
  b.writeUInt32LE(o.openFlags >>> 0, at + 8);
  b.writeInt32LE(o.backingId, at + 12);
}

export function encodeOpen(unique: Int64, o: OpenOut): Reply {
  const buf = frame(unique, Size.OPEN_OUT);
  writeOpen(buf, H, o);
  return [buf];
}

/** CREATE: fuse_entry_out followed by fuse_open_out */
export function encodeCreate(unique: Int64, e: Entry, t: CacheTimeouts, o: OpenOut): Reply {
  const { buf, body } = framed(unique, Size.ENTRY_OUT + Size.OPEN_OUT);
  writeEntry(body, 0, e, t);
  writeOpen(body, Size.ENTRY_OUT, o);
  return [buf];
}

/** fuse_write_out (also the COPY_FILE_RANGE reply) */
export function encodeWrite(unique: Int64, size: number): Reply {
  const { buf, body } = framed(unique, Size.WRITE_OUT);
  body.writeUInt32LE(size >>> 0, 0);
  return [buf];
}

export function encodeStatfs(unique: Int64, s: FsStat): Reply {
  const { buf, body } = framed(unique, Size.STATFS_OUT);
  writeU64(body, s.blocks, 0);
  writeU64(body, s.bfree, 8);
  writeU64(body, s.bavail, 16);
  writeU64(body, s.files, 24);
  writeU64(body, s.ffree, 32);
  body.writeUInt32LE(s.bsize, 40);
  body.writeUInt32LE(s.namelen, 44);
  body.writeUInt32LE(s.frsize, 48);
  // padding and spare[6] stay zero
  return [buf];
}

/** GETXATTR/LISTXATTR with size 0: only the size the value needs */
export function encodeXattrSize(unique: Int64, size: number): Reply {
  const buf = frame(unique, Size.GETXATTR_OUT);
  buf.writeUInt32LE(size, H);
  return [buf];
}

/** any reply whose body is raw data (READ, GETXATTR/LISTXATTR values): [header, data] */
export function encodeData(unique: Int64, data: Buffer): Reply {
  if (data.length === 0) return [header(Size.OUT_HEADER, 0, unique)];
  return [header(Size.OUT_HEADER + data.length, 0, unique), data];
}

/** READLINK: the target bytes, no NUL */
export function encodeReadlink(unique: Int64, target: string): Reply {
  return encodeData(unique, Buffer.from(target, 'latin1'));
}

/** LISTXATTR data: every name NUL-terminated */
export function xattrList(names: string[]): Buffer {
  return Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1');
}

export function encodeLseek(unique: Int64, offset: Int64): Reply {
  const { buf, body } = framed(unique, Size.LSEEK_OUT);
  writeI64(body, offset, 0);
  return [buf];
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  /** the 64-bit flag set; bits 32-63 go to flags2 */
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  mapAlignment: number;
  maxStackDepth: number;
  requestTimeout: number;
}

/** fuse_init_out, 7.45 layout (64 bytes) */
export function encodeInit(unique: Int64, o: InitOut): Reply {
  const { buf, body } = framed(unique, Size.INIT_OUT);
  body.writeUInt32LE(o.major, 0);
  body.writeUInt32LE(o.minor, 4);
  body.writeUInt32LE(o.maxReadahead, 8);
  body.writeUInt32LE(Number(o.flags & 0xffffffffn), 12);
  body.writeUInt16LE(o.maxBackground, 16);
  body.writeUInt16LE(o.congestionThreshold, 18);
  body.writeUInt32LE(o.maxWrite, 20);
  body.writeUInt32LE(o.timeGran, 24);
  body.writeUInt16LE(o.maxPages, 28);
  body.writeUInt16LE(o.mapAlignment, 30);
  body.writeUInt32LE(Number((o.flags >> 32n) & 0xffffffffn), 32);
  body.writeUInt32LE(o.maxStackDepth, 36);
  body.writeUInt16LE(o.requestTimeout, 40);
  // unused[11] stays zero
  return [buf];
}
