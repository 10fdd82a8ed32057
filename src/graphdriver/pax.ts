/**
 * PAX extended headers, byte exact.
 *
 * A PAX record is `LEN KEY=VALUE\n`, LEN counting the bytes of the whole record (its own
 * digits included). Keys and values are bytes: Docker (Go's archive/tar) writes names and
 * `SCHILY.xattr.NAME` values as they are on disk, and an xattr such as
 * security.capability or an ACL is binary. tar-stream reads and writes these records as
 * UTF-8 text, which loses every byte that is not UTF-8, so:
 *
 * - import: `PaxTap` sits in front of tar-stream's extract and passes the stream through
 *   unchanged while it walks the same 512-byte header blocks. It keeps the raw records of
 *   each `x` header (over those of the `g` headers before it) for the entry that follows,
 *   keyed by the entry's data offset, which tar-stream reports as `header.byteOffset`:
 *   the two walks are checked to be in step.
 * - export: `encodePax` / `paxHeaderBlock` build the `x` header and its body; the exporter
 *   writes them itself right before the entry (see tar-export.ts).
 *
 * Keys here are byte strings (latin1: one JS char per byte), values Buffers.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { tarError } from './tar-names';
import { SPARSE_MAP, oldGnuSparse, oldGnuExtension, plainFileHeader, type OldGnuSparse } from './sparse';

export type PaxRecords = Map<string, Buffer>;

const BLOCK = 512;
const TYPE_PAX = 0x78; // 'x'
const TYPE_GLOBAL = 0x67; // 'g'
const TYPE_GNU_LONGNAME = 0x4c; // 'L'
const TYPE_GNU_LONGLINK = 0x4b; // 'K'
const TYPE_DIR = 0x35; // '5'
const TYPE_GNU_SPARSE = 0x53; // 'S'
/** bodies of meta headers above this are refused (tar-stream's own limit is 1 MiB) */
const MAX_META = 1 << 20;
const NAME_KEYS = new Set(['path', 'linkpath', 'uname', 'gname']);

/** Parses the body of an `x`/`g` header. Later records win over earlier ones with the same key. */
export function parsePax(body: Buffer): PaxRecords {
  const out: PaxRecords = new Map();
  const sparse: string[] = [];
  let off = 0;
  while (off < body.length) {
    if (body.subarray(off).every((b) => b === 0)) break; // NUL padding after the last record
    const sp = body.indexOf(0x20, off);
    const digits = sp < 0 ? '' : body.toString('latin1', off, sp);
    if (!/^[1-9][0-9]{0,9}$/.test(digits)) throw tarError(`malformed PAX record at byte ${off}: no length`);
    const end = off + Number(digits);
    if (end > body.length || end <= sp + 1 || body[end - 1] !== 0x0a) {
      throw tarError(`malformed PAX record at byte ${off}: length ${digits} does not end the record`);
    }
    const eq = body.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end - 1 || eq === sp + 1) throw tarError(`malformed PAX record at byte ${off}: no KEY=`);
    const key = body.toString('latin1', sp + 1, eq);
    const value = body.subarray(eq + 1, end - 1);
    // as Go's archive/tar: no NUL in a key, nor in a name's value (xattr values may hold any byte)
    if (key.includes('\0') || (NAME_KEYS.has(key) && value.includes(0))) throw tarError(`malformed PAX record "${key}": NUL byte`);
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      // sparse format 0.0: the pairs repeat these keys, in order; kept as one map (sparse.ts)
      if ((key === 'GNU.sparse.offset') !== (sparse.length % 2 === 0) || value.includes(0x2c)) {
        throw tarError(`malformed PAX record "${key}": out of order in the sparse map`);
      }
      sparse.push(value.toString('latin1'));
    } else out.set(key, Buffer.from(value));
    off = end;
  }
  if (sparse.length > 0) out.set(SPARSE_MAP, Buffer.from(sparse.join(','), 'latin1'));
  return out;
}

/** The body of an `x` header holding `records` (keys as byte strings). */
export function encodePax(records: Iterable<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const rest = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
    let len = rest.length + String(rest.length).length;
    if (String(len).length > String(rest.length).length) len++;
    parts.push(Buffer.from(String(len), 'latin1'), rest);
  }
  return Buffer.concat(parts);
}

function octal(buf: Buffer, off: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, off, 'latin1');
}

/** The 512-byte ustar header of an `x` entry with a body of `size` bytes. */
export function paxHeaderBlock(size: number, mtimeSec: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write('PaxHeader', 0, 'latin1');
  octal(b, 100, 8, 0o644);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, Math.max(0, Math.min(mtimeSec, 0o77777777777)));
  b.fill(0x20, 148, 156); // checksum field counts as spaces
  b[156] = TYPE_PAX;
  b.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** Size field: octal text, or base-256 when its first byte has the high bit set. */
export function headerSize(block: Buffer): number {
  const f = block.subarray(124, 136);
  if (f[0] & 0x80) {
    if (f[0] !== 0x80) throw tarError('tar header has a negative size');
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i];
    if (!Number.isSafeInteger(n)) throw tarError('tar header size is too large');
    return n;
  }
  const text = f.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw tarError(`tar header has a bad size field "${text}"`);
  return parseInt(text, 8);
}

/**
 * A pass-through that reads the PAX records of a tar stream as bytes. `recordsAt(offset)`
 * returns the records of the entry whose data starts at `offset` (`header.byteOffset`
 * of tar-stream's entry), in entry order.
 */
export class PaxTap extends Transform {
  private pos = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** bytes still to skip (entry data and padding) */
  private skip = 0;
  /** a meta header whose body is being collected */
  private meta: { type: number; size: number } | undefined;
  private global: PaxRecords = new Map();
  private local: PaxRecords | undefined;
  private readonly entries: { offset: number; records: PaxRecords }[] = [];
  /** an old GNU sparse header whose extension blocks are being read */
  private gnuSparse: OldGnuSparse | undefined;

  recordsAt(offset: number): PaxRecords {
    const next = this.entries.shift();
    if (next === undefined || next.offset !== offset) {
      throw tarError(`tar structure out of step at byte ${offset} (PAX reader at ${next?.offset ?? 'end'})`);
    }
    return next.records;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.walk(chunk);
    } catch (e) {
      done(e as Error);
      return;
    }
    done();
  }

  /** passes bytes on; `pos` counts what the tar reader after us has seen */
  private passOn(b: Buffer): void {
    this.push(b);
    this.pos += b.length;
  }

  private walk(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        this.skip -= n;
        this.passOn(chunk.subarray(off, off + n));
        off += n;
        continue;
      }
      const need = this.meta ? padded(this.meta.size) : BLOCK;
      const n = Math.min(need - this.pendingLen, chunk.length - off);
      this.pending.push(chunk.subarray(off, off + n));
      this.pendingLen += n;
      off += n;
      if (this.pendingLen < need) continue;
      const whole = Buffer.concat(this.pending, this.pendingLen);
      this.pending = [];
      this.pendingLen = 0;
      if (this.meta) {
        this.passOn(whole);
        this.metaBody(this.meta.type, whole.subarray(0, this.meta.size));
      } else if (this.gnuSparse) this.sparseExtension(whole);
      else this.header(whole);
    }
  }

  /** an extension block of an old GNU sparse header: read, not passed on */
  private sparseExtension(block: Buffer): void {
    const s = this.gnuSparse!;
    if (oldGnuExtension(block, s)) return;
    this.gnuSparse = undefined;
    this.sparseHeader(s);
  }

  /**
   * An old GNU sparse entry, its map read: the tar reader gets a plain file header (its
   * data is the stored regions) and the importer the map as records (sparse.ts).
   */
  private sparseHeader(s: OldGnuSparse): void {
    this.passOn(plainFileHeader(s.header));
    const records = new Map([...this.global, ...(this.local ?? []), ...s.records()]);
    this.local = undefined;
    this.entries.push({ offset: this.pos, records });
    this.skip = padded(headerSize(s.header));
  }

  private metaBody(type: number, body: Buffer): void {
    this.meta = undefined;
    if (type === TYPE_GLOBAL) this.global = new Map([...this.global, ...parsePax(body)]);
    else if (type === TYPE_PAX) this.local = new Map([...(this.local ?? []), ...parsePax(body)]);
  }

  private header(block: Buffer): void {
    // end-of-archive blocks (tar-stream skips any block that is zero outside its checksum field)
    if (block.every((b, i) => b === 0 || (i >= 148 && i < 156))) {
      this.passOn(block);
      return;
    }
    const type = block[156];
    const size = headerSize(block);
    if (type === TYPE_GNU_SPARSE) {
      const s = oldGnuSparse(block);
      if (s.extended) this.gnuSparse = s;
      else this.sparseHeader(s);
      return;
    }
    this.passOn(block);
    if (type === TYPE_PAX || type === TYPE_GLOBAL || type === TYPE_GNU_LONGNAME || type === TYPE_GNU_LONGLINK) {
      if (size > MAX_META) throw tarError(`tar meta header of ${size} bytes is too large`);
      if (size > 0) this.meta = { type, size };
      return;
    }
    const records = new Map([...this.global, ...(this.local ?? [])]);
    this.local = undefined;
    const paxSize = records.get('size');
    let dataSize = size;
    if (paxSize !== undefined && paxSize.length > 0) {
      const s = paxSize.toString('latin1');
      if (!/^[0-9]{1,16}$/.test(s)) throw tarError(`malformed PAX size "${s}"`);
      dataSize = Number(s);
    }
    if (type === TYPE_DIR && dataSize > 0) throw tarError('tar directory entry carries data');
    this.entries.push({ offset: this.pos, records });
    this.skip = padded(dataSize);
  }
}

const padded = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;
