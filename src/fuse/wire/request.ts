/**
 * Request frames as the kernel writes them into /dev/fuse, for what hands a FuseSession
 * requests without a kernel: the build's warm-up (bridge/first-requests.ts), the
 * session's test bench (test/lib/bridge-fixture.ts) and benchmarks/request-cost.ts; and
 * the one reading of a reply they share (where a READDIRPLUS page ends). Little-endian, as on every
 * architecture FUSE runs on here.
 */
import { Size } from './protocol';

export const u32 = (...v: number[]): Buffer => Buffer.from(Uint32Array.from(v).buffer);
export const u64 = (...v: (number | bigint)[]): Buffer => Buffer.from(BigUint64Array.from(v.map((x) => BigInt(x))).buffer);
/** a name as the kernel sends it: its bytes and a NUL */
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'latin1');

/** who a request comes from (the header's uid, gid and pid) */
export interface RequestCaller { uid: number; gid: number; pid: number }

/** one request: the in-header, then the body's parts */
export function requestFrame(opcode: number, nodeId: number, unique: bigint, caller: RequestCaller, ...body: Buffer[]): Buffer {
  const len = Size.IN_HEADER + body.reduce((n, b) => n + b.length, 0);
  const h = Buffer.alloc(Size.IN_HEADER);
  h.writeUInt32LE(len, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(unique, 8);
  h.writeBigUInt64LE(BigInt(nodeId), 16);
  h.writeUInt32LE(caller.uid, 24);
  h.writeUInt32LE(caller.gid, 28);
  h.writeUInt32LE(caller.pid, 32);
  return Buffer.concat([h, ...body]);
}

/** the readahead a kernel offers at INIT (128 KiB, Linux's default) */
const MAX_READAHEAD = 128 * 1024;

/** INIT's body: the kernel's version and the flags it offers */
export const initIn = (major: number, minor: number, flags: bigint): Buffer =>
  Buffer.concat([u32(major, minor, MAX_READAHEAD, Number(flags & 0xffffffffn), Number(flags >> 32n)), Buffer.alloc(44)]);
/** READ's, READDIR's and READDIRPLUS's body */
export const readIn = (fh: number, offset: number, size: number): Buffer => Buffer.concat([u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]);
/** WRITE's body: fuse_write_in (no write flags, lock owner or open flags) and the data */
export const writeIn = (fh: number, offset: number | bigint, data: Buffer): Buffer =>
  Buffer.concat([u64(fh, offset), u32(data.length, 0), u64(0), u32(0, 0), data]);
export const openIn = (flags: number): Buffer => u32(flags, 0);
export const releaseIn = (fh: number): Buffer => Buffer.concat([u64(fh), u32(0, 0), u64(0)]);

/** the offset (cookie) of a READDIRPLUS reply's last entry: where the next page starts */
export function lastPlusOffset(reply: Buffer): number {
  let offset = 0;
  for (let at = Size.OUT_HEADER; at < reply.length;) {
    const dirent = at + Size.ENTRY_OUT;
    offset = Number(reply.readBigUInt64LE(dirent + 8));
    at = dirent + Size.DIRENT_BASE + ((reply.readUInt32LE(dirent + 16) + 7) & ~7);
  }
  return offset;
}
