import { readI64, readU64, type Int64 } from '../../int64';

/**
 * A bounds-checked reader over one request body. Every read past the end throws
 * `Malformed`, which decode() turns into a decode error value; nothing else escapes.
 */

const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);

export class Malformed extends Error {}

export class Cursor {
  private pos: number;
  constructor(private readonly buf: Buffer, start: number, private readonly end: number) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): number {
    if (this.pos + n > this.end) throw new Malformed(`truncated ${what}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u16(what = 'u16'): number {
    return this.buf.readUInt16LE(this.need(2, what));
  }

  u32(what = 'u32'): number {
    return this.buf.readUInt32LE(this.need(4, what));
  }

  i32(what = 'i32'): number {
    return this.buf.readInt32LE(this.need(4, what));
  }

  u64(what = 'u64'): bigint {
    return this.buf.readBigUInt64LE(this.need(8, what));
  }

  /** a u64 that must fit in a double without loss (offsets, sizes, node ids we hand out) */
  u64n(what = 'u64'): number {
    const v = this.u64(what);
    if (v > MAX_SAFE_U64) throw new Malformed(`${what} out of range`);
    return Number(v);
  }

  /** a u64 quantity of the file (size, offset, length), exact (src/int64.ts) */
  u64x(what = 'u64'): Int64 {
    return readU64(this.buf, this.need(8, what));
  }

  /** an i64 quantity of the file (an lseek offset), exact */
  i64x(what = 'i64'): Int64 {
    return readI64(this.buf, this.need(8, what));
  }

  /** an i64 read as a number (times) */
  i64n(what = 'i64'): number {
    return Number(this.buf.readBigInt64LE(this.need(8, what)));
  }

  skip(n: number, what = 'padding'): void {
    this.need(n, what);
  }

  /** a NUL-terminated name as a byte string (latin1) */
  cstr(what = 'name'): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new Malformed(`${what} not NUL-terminated`);
    const s = this.buf.toString('latin1', this.pos, nul);
    this.pos = nul + 1;
    return s;
  }

  /** `n` bytes as a view on the request buffer, or with `copy` a copy of them */
  bytes(n: number, what = 'data', copy = false): Buffer {
    const at = this.need(n, what);
    const view = this.buf.subarray(at, at + n);
    return copy ? Buffer.from(view) : view;
  }

  /** the rest of the body as a view */
  rest(): Buffer {
    const at = this.pos;
    this.pos = this.end;
    return this.buf.subarray(at, this.end);
  }
}
