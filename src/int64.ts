/**
 * Exact 64-bit integers: the rule for every 64-bit quantity that crosses stratafs (file
 * sizes, offsets, lengths, lseek results, fallocate ranges, block and inode counts).
 *
 * An `Int64` is a `number` when the value is a safe integer (|v| ≤ 2^53 − 1, the common
 * case, cheap on the hot path) and a `bigint` otherwise. It is never a number that a
 * double has rounded: `Number(2n ** 53n + 1n)` is 2^53, and a truncate to 2^53 + 1 that
 * became one to 2^53 would be silent data corruption. So:
 *
 * - read 64-bit fields from buffers with readU64/readI64 (or `Cursor.u64x/i64x` in the
 *   wire decoder), write them with writeU64/writeI64;
 * - compare with `<`, `>`, `===` against small numbers freely (JavaScript compares a
 *   number with a bigint exactly); do arithmetic with add/sub, which switch to bigint
 *   when a result leaves the safe range;
 * - hand them to the addon as they are: it takes a number or a bigint and refuses a
 *   number that is not a safe integer (native-bindings/src/util.c, arg_off/arg_u64);
 *   what it returns follows the same rule.
 *
 * A function that needs a plain number (a buffer length, a count of entries) asks for
 * one with `toSafeNumber`, which throws rather than round.
 */

export type Int64 = number | bigint;

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE_BIG = BigInt(Number.MIN_SAFE_INTEGER);

/** The canonical Int64 of a bigint: a number when it is safe, else the bigint itself. */
export function fromBigInt(v: bigint): Int64 {
  return v <= MAX_SAFE_BIG && v >= MIN_SAFE_BIG ? Number(v) : v;
}

/** The value as a bigint (exact). Throws on a number that is not a safe integer. */
export function toBigInt(v: Int64): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new RangeError(`${v} is not an exact integer`);
  return BigInt(v);
}

/** True when V is an Int64: a safe integer number, or a bigint. */
export function isInt64(v: unknown): v is Int64 {
  return typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v));
}

/** V as a number, or a RangeError when a number cannot hold it exactly. */
export function toSafeNumber(v: Int64, what = 'value'): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RangeError(`${what} ${v} is not an exact integer`);
    return v;
  }
  if (v > MAX_SAFE_BIG || v < MIN_SAFE_BIG) throw new RangeError(`${what} ${v} does not fit in a number`);
  return Number(v);
}

/** a + b, exact. */
export function add(a: Int64, b: Int64): Int64 {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (Number.isSafeInteger(r)) return r;
  }
  return fromBigInt(toBigInt(a) + toBigInt(b));
}

/** a − b, exact. */
export function sub(a: Int64, b: Int64): Int64 {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a - b;
    if (Number.isSafeInteger(r)) return r;
  }
  return fromBigInt(toBigInt(a) - toBigInt(b));
}

/** The unsigned 64-bit little-endian field at AT. */
export function readU64(buf: Buffer, at: number): Int64 {
  // high word below 2^21: the value is below 2^53 and a number holds it exactly
  const hi = buf.readUInt32LE(at + 4);
  if (hi < 0x200000) return hi * 0x100000000 + buf.readUInt32LE(at);
  return buf.readBigUInt64LE(at);
}

/** The signed 64-bit little-endian field at AT. */
export function readI64(buf: Buffer, at: number): Int64 {
  const hi = buf.readInt32LE(at + 4);
  if (hi < 0x200000 && hi >= -0x200000) {
    const v = hi * 0x100000000 + buf.readUInt32LE(at); // |v| ≤ 2^53: exact
    if (v !== -0x20000000000000) return v; // −2^53 itself is not a safe integer
  }
  return buf.readBigInt64LE(at);
}

/** Writes V as an unsigned 64-bit little-endian field at AT (RangeError outside 0..2^64−1). */
export function writeU64(buf: Buffer, v: Int64, at: number): void {
  // a bigint in the safe range (an inode number) is written through a number: exact, and
  // without the bigints writeBigUInt64LE makes of each half
  const n = typeof v === 'bigint' && v <= MAX_SAFE_BIG && v >= 0n ? Number(v) : v;
  if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) {
    buf.writeUInt32LE(n % 0x100000000, at);
    buf.writeUInt32LE(Math.floor(n / 0x100000000), at + 4);
  } else {
    buf.writeBigUInt64LE(toBigInt(n), at);
  }
}

/** Writes V as a signed 64-bit little-endian field at AT (RangeError outside −2^63..2^63−1). */
export function writeI64(buf: Buffer, v: Int64, at: number): void {
  if (typeof v === 'number' && Number.isSafeInteger(v)) {
    // two's complement in two halves: hi = floor(v / 2^32), lo = the rest (0..2^32−1)
    const hi = Math.floor(v / 0x100000000);
    buf.writeUInt32LE(v - hi * 0x100000000, at);
    buf.writeInt32LE(hi, at + 4);
  } else {
    buf.writeBigInt64LE(toBigInt(v), at);
  }
}
