// Exact 64-bit quantities (src/int64.ts): the helpers, the wire decoder and encoder, and
// the addon must carry sizes, offsets and lengths past 2^53 without rounding. These
// tests fail if any step on that path turns a value into a double (Number(bigint)
// rounds 2^53 + 1 to 2^53).
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { add, fromBigInt, readI64, readU64, sub, toBigInt, toSafeNumber, writeI64, writeU64, type Int64 } from '../../src/int64';
import { decode, encodeAttr, encodeLseek, encodeStatfs, Opcode } from '../../src/fuse/wire';
import { requestFrame, u32, u64, writeIn } from '../../src/fuse/wire/request';
import { C, native } from '../../src/native';
import type { Attr } from '../../src/fuse/api';

// lseek(2) whence values (POSIX; node:fs has no constants for them)
const SEEK_SET = 0;
const SEEK_END = 2;
const P53 = 2n ** 53n;
const U64_EDGES = [0n, 1n, P53 - 1n, P53, P53 + 1n, 2n ** 62n, 2n ** 63n - 1n, 2n ** 64n - 1n];
const I64_EDGES = [0n, -1n, P53 - 1n, P53, P53 + 1n, -(P53 - 1n), -P53, -(P53 + 1n), 2n ** 63n - 1n, -(2n ** 63n)];
const safe = (v: bigint): boolean => v <= P53 - 1n && v >= -(P53 - 1n);

/** The value is exactly V, as a number when V is safe and as a bigint otherwise. */
function exact(tt: Test, got: Int64, v: bigint, what: string): void {
  tt.equal(typeof got, safe(v) ? 'number' : 'bigint', `${what}: ${safe(v) ? 'a number' : 'a bigint'}`);
  tt.equal(toBigInt(got), v, `${what}: exactly ${v}`);
}

t.test('readU64/readI64 give numbers below 2^53 and exact bigints beyond', async (tt) => {
  const b = Buffer.alloc(8);
  for (const v of U64_EDGES) {
    b.writeBigUInt64LE(v);
    exact(tt, readU64(b, 0), v, `u64 ${v}`);
  }
  for (const v of I64_EDGES) {
    b.writeBigInt64LE(v);
    exact(tt, readI64(b, 0), v, `i64 ${v}`);
  }
});

t.test('writeU64/writeI64 write every edge exactly, numbers and bigints alike', async (tt) => {
  const b = Buffer.alloc(8);
  for (const v of U64_EDGES) {
    writeU64(b, fromBigInt(v), 0);
    tt.equal(b.readBigUInt64LE(0), v, `u64 ${v}`);
    // a bigint inside the safe range (an inode number) takes the number path
    b.fill(0xff);
    writeU64(b, v, 0);
    tt.equal(b.readBigUInt64LE(0), v, `u64 ${v} as a bigint`);
  }
  tt.throws(() => writeU64(b, -1n, 0), RangeError, 'a negative bigint u64 is refused');
  for (const v of I64_EDGES) {
    writeI64(b, fromBigInt(v), 0);
    tt.equal(b.readBigInt64LE(0), v, `i64 ${v}`);
  }
  tt.throws(() => writeU64(b, -1, 0), RangeError, 'a negative u64 is refused');
  tt.throws(() => writeU64(b, 2 ** 53 + 2, 0), RangeError, 'an unsafe number is refused, not written rounded');
});

t.test('arithmetic and conversions never round', async (tt) => {
  exact(tt, add(Number.MAX_SAFE_INTEGER, 2), P53 + 1n, 'add past 2^53');
  exact(tt, sub(fromBigInt(P53 + 1n), 2), P53 - 1n, 'sub back into numbers');
  exact(tt, add(fromBigInt(2n ** 63n - 2n), 1), 2n ** 63n - 1n, 'add near 2^63');
  tt.equal(fromBigInt(5n), 5, 'small bigints become numbers');
  tt.throws(() => toBigInt(2 ** 53 + 2), RangeError, 'an unsafe number is not taken as exact');
  tt.throws(() => toSafeNumber(P53 + 1n), RangeError, 'a bigint past 2^53 is not squeezed into a number');
  tt.equal(toSafeNumber(42n), 42);
});

// ---- the wire -------------------------------------------------------------------------

const frame = (opcode: number, body: Buffer): Buffer => requestFrame(opcode, 1, 2n, { uid: 0, gid: 0, pid: 0 }, body);
const i64 = (x: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigInt64LE(x); return b; };

function body(buf: Buffer): Record<string, unknown> {
  const r = decode(buf);
  if (!r.ok) throw new Error(r.error.message);
  return r.req.body as unknown as Record<string, unknown>;
}

t.test('the decoder keeps sizes, offsets and lengths exact up to 2^63 - 1', async (tt) => {
  const FATTR_SIZE = 1 << 3;
  for (const v of [P53 - 1n, P53 + 1n, 2n ** 63n - 1n]) {
    // fuse_setattr_in: valid, padding, fh, size, lock_owner, a/m/ctime, a/m/ctimensec, mode, unused4, uid, gid, unused5
    const setattr = Buffer.concat([u32(FATTR_SIZE, 0), u64(7n, v, 0n, 0n, 0n, 0n), u32(0, 0, 0, 0, 0, 0, 0, 0)]);
    exact(tt, body(frame(Opcode.SETATTR, setattr)).size as Int64, v, `SETATTR size ${v}`);
    const read = Buffer.concat([u64(7n, v), u32(4096, 0), u64(0n), u32(0, 0)]);
    exact(tt, body(frame(Opcode.READ, read)).offset as Int64, v, `READ offset ${v}`);
    const write = writeIn(7, v, Buffer.from('x'));
    exact(tt, body(frame(Opcode.WRITE, write)).offset as Int64, v, `WRITE offset ${v}`);
    const falloc = body(frame(Opcode.FALLOCATE, Buffer.concat([u64(7n, v, v), u32(0, 0)])));
    exact(tt, falloc.offset as Int64, v, `FALLOCATE offset ${v}`);
    exact(tt, falloc.length as Int64, v, `FALLOCATE length ${v}`);
    const cfr = body(frame(Opcode.COPY_FILE_RANGE, u64(7n, v, 1n, 8n, v, v, 0n)));
    exact(tt, cfr.offIn as Int64, v, `COPY_FILE_RANGE off_in ${v}`);
    exact(tt, cfr.offOut as Int64, v, `COPY_FILE_RANGE off_out ${v}`);
    exact(tt, cfr.len as Int64, v, `COPY_FILE_RANGE len ${v}`);
  }
  for (const v of [-1n, P53 + 1n, -(P53 + 1n), 2n ** 63n - 1n]) {
    const lseek = body(frame(Opcode.LSEEK, Buffer.concat([u64(7n), i64(v), u32(3, 0)])));
    exact(tt, lseek.offset as Int64, v, `LSEEK offset ${v}`);
  }
});

t.test('the encoder writes sizes, block counts and lseek results exactly', async (tt) => {
  const attr: Attr = {
    ino: 5n, size: fromBigInt(2n ** 63n - 1n), blocks: fromBigInt(P53 + 1n), atimeSec: 0, atimeNsec: 0, mtimeSec: 0,
    mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, blksize: 4096,
  };
  const a = Buffer.concat(encodeAttr(1n, attr, 1));
  // fuse_out_header (16) + fuse_attr_out: attr_valid, attr_valid_nsec, dummy (16), then fuse_attr
  tt.equal(a.readBigUInt64LE(16 + 16 + 8), 2n ** 63n - 1n, 'attr size');
  tt.equal(a.readBigUInt64LE(16 + 16 + 16), P53 + 1n, 'attr blocks');
  tt.equal(Buffer.concat(encodeLseek(1n, fromBigInt(P53 + 1n))).readBigInt64LE(16), P53 + 1n, 'lseek result');
  const s = Buffer.concat(encodeStatfs(1n, {
    blocks: fromBigInt(P53 + 1n), bfree: fromBigInt(P53 + 3n), bavail: 1, files: fromBigInt(2n ** 64n - 1n), ffree: 0, bsize: 4096, namelen: 255, frsize: 4096,
  }));
  tt.same([s.readBigUInt64LE(16), s.readBigUInt64LE(24), s.readBigUInt64LE(40)], [P53 + 1n, P53 + 3n, 2n ** 64n - 1n], 'statfs counts');
});

// ---- the addon ---------------------------------------------------------------------------

t.test('the addon takes and returns 64-bit sizes and offsets exactly (tmpfs allows 2^63 - 1)', async (tt) => {
  const dir = fs.mkdtempSync(path.join('/dev/shm', 'stratafs-int64-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fd = fs.openSync(path.join(dir, 'sparse'), 'w+');
  tt.teardown(() => fs.closeSync(fd));
  for (const v of [P53 + 1n, 2n ** 63n - 1n, P53 - 1n]) {
    native.ftruncate(fd, fromBigInt(v));
    exact(tt, native.statx(fd, '', C.AT_EMPTY_PATH).size, v, `statx size after ftruncate(${v})`);
    exact(tt, native.lseek(fd, 0, SEEK_END), v, `lseek SEEK_END after ftruncate(${v})`);
  }
  native.ftruncate(fd, fromBigInt(2n ** 63n - 1n));
  exact(tt, native.lseek(fd, fromBigInt(P53 + 1n), SEEK_SET), P53 + 1n, 'lseek SEEK_SET to 2^53 + 1');
  exact(tt, native.lseek(fd, fromBigInt(P53 + 1n), C.SEEK_HOLE), P53 + 1n, 'SEEK_HOLE from 2^53 + 1');
  tt.equal(native.pwrite(fd, Buffer.from('edge'), fromBigInt(P53 + 1n)), 4, 'pwrite at 2^53 + 1');
  const back = Buffer.alloc(6);
  tt.equal(native.pread(fd, back, fromBigInt(P53)), 6, 'pread at 2^53');
  tt.equal(back.toString('latin1'), '\0edge\0', 'the bytes landed at 2^53 + 1, not at a rounded offset');
  exact(tt, native.lseek(fd, fromBigInt(P53 + 1n), C.SEEK_DATA), P53 + 1n, 'SEEK_DATA at 2^53 + 1 is in the page written');
  tt.throws(() => native.ftruncate(fd, 2 ** 53 + 2), /safe integer/, 'an unsafe number is refused, not rounded');
  tt.throws(() => native.lseek(fd, 2 ** 60, SEEK_SET), /safe integer/, 'lseek refuses an unsafe number');
});
