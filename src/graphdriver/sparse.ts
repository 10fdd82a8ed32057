/**
 * GNU sparse files in layer tars, read the way Go's archive/tar (dockerd) reads them.
 * A sparse entry stores only its data regions; the map says where each goes in a file of
 * `realSize` bytes, and everything else is a hole. Four spellings (GNU tar manual,
 * "Storing Sparse Files"):
 *
 * - old GNU: typeflag 'S'; up to 4 map entries (12-byte offset, 12-byte length) in the
 *   header at byte 386, an "is extended" byte at 482, the real size at 483; when
 *   extended, 512-byte blocks of 21 entries (extended flag at 504) follow the header.
 *   `PaxTap` (pax.ts) turns these into the records below and a plain file header.
 * - PAX 0.0: `GNU.sparse.size`, then `GNU.sparse.offset` / `GNU.sparse.numbytes` repeated
 *   in order (`parsePax` folds them into `GNU.sparse.map`).
 * - PAX 0.1: `GNU.sparse.size`, `GNU.sparse.map` = "off,len,off,len,...",
 *   `GNU.sparse.name` (the header's own name is `DIR/GNUSparseFile.PID/NAME`).
 * - PAX 1.0: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name`,
 *   `GNU.sparse.realsize`; the map is at the start of the entry's data: decimal numbers,
 *   one a line (count, then offset and length pairs), padded to 512 bytes.
 *
 * The map must be sorted, not overlapping, inside the real size, and its lengths must add
 * up to the data stored; anything else, or another version, is refused (STRATAFS_ERR_TAR),
 * never written as a wrong file.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { tarError } from './tar-names';
import type { PaxRecords } from './pax';

const write = promisify(fs.write);

export const SPARSE_MAP = 'GNU.sparse.map';
export const SPARSE_SIZE = 'GNU.sparse.size';
const SPARSE_REALSIZE = 'GNU.sparse.realsize';
const SPARSE_MAJOR = 'GNU.sparse.major';
const SPARSE_MINOR = 'GNU.sparse.minor';
export const SPARSE_NAME = 'GNU.sparse.name';
const SPARSE_NUMBLOCKS = 'GNU.sparse.numblocks';
/** a 1.0 map in the data: at most this many bytes of text */
const MAX_MAP_TEXT = 8 << 20;
const BLOCK = 512;

export interface Segment {
  offset: number;
  length: number;
}

export interface Sparse {
  realSize: number;
  /** the map, or undefined when it is at the start of the data (1.0) */
  segments: Segment[] | undefined;
}

const str = (pax: PaxRecords, key: string): string | undefined => pax.get(key)?.toString('latin1');

function count(text: string, what: string): number {
  if (!/^[0-9]{1,16}$/.test(text)) throw tarError(`sparse file: bad ${what} "${text.slice(0, 40)}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw tarError(`sparse file: ${what} ${text} is too large`);
  return n;
}

function pairs(numbers: string[]): Segment[] {
  if (numbers.length % 2 !== 0) throw tarError('sparse file: the map has an offset without a length');
  const out: Segment[] = [];
  for (let i = 0; i < numbers.length; i += 2) out.push({ offset: count(numbers[i], 'offset'), length: count(numbers[i + 1], 'length') });
  return out;
}

/** Whether the records describe a sparse entry (any GNU.sparse.* layout key). */
export function isSparse(pax: PaxRecords): boolean {
  return pax.has(SPARSE_MAP) || pax.has(SPARSE_MAJOR) || pax.has(SPARSE_MINOR) || pax.has(SPARSE_REALSIZE) || pax.has(SPARSE_NUMBLOCKS);
}

/** The sparse layout of an entry from its records, or undefined for a plain file. */
export function sparseOf(pax: PaxRecords): Sparse | undefined {
  if (!isSparse(pax)) return undefined;
  const major = str(pax, SPARSE_MAJOR);
  const minor = str(pax, SPARSE_MINOR);
  if (major !== undefined || minor !== undefined) {
    if (major === '1' && minor === '0') {
      const real = str(pax, SPARSE_REALSIZE);
      if (real === undefined) throw tarError('sparse file (PAX 1.0) without GNU.sparse.realsize');
      return { realSize: count(real, 'real size'), segments: undefined };
    }
    if (!(major === '0' && (minor === '0' || minor === '1'))) throw tarError(`sparse file format ${major ?? '?'}.${minor ?? '?'} is not supported`);
  }
  const size = str(pax, SPARSE_SIZE) ?? str(pax, SPARSE_REALSIZE);
  const map = str(pax, SPARSE_MAP);
  if (size === undefined || map === undefined) throw tarError('sparse file (PAX 0.x) without GNU.sparse.size and its map');
  return { realSize: count(size, 'real size'), segments: map === '' ? [] : pairs(map.split(',')) };
}

/** A 12-byte numeric header field: octal text, or base-256 when its first byte has the high bit set. */
function numeric(f: Buffer, what: string): number {
  if (f[0] & 0x80) {
    if (f[0] !== 0x80) throw tarError(`sparse header: negative ${what}`);
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i];
    if (!Number.isSafeInteger(n)) throw tarError(`sparse header: ${what} too large`);
    return n;
  }
  const text = f.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw tarError(`sparse header: bad ${what} "${text}"`);
  return parseInt(text, 8);
}

/** An old GNU 'S' header being read: its map so far, and whether extension blocks follow. */
export interface OldGnuSparse {
  header: Buffer;
  realSize: number;
  segments: Segment[];
  extended: boolean;
  /** the map as the records PAX 0.x spells it */
  records(): PaxRecords;
}

/** Reads up to `n` map entries of 24 bytes at `at`; an entry whose offset starts with NUL ends the list. */
function entries(block: Buffer, at: number, n: number, into: Segment[]): void {
  for (let i = 0; i < n; i++) {
    const e = at + i * 24;
    if (block[e] === 0) return;
    into.push({ offset: numeric(block.subarray(e, e + 12), 'offset'), length: numeric(block.subarray(e + 12, e + 24), 'length') });
    if (into.length > MAX_OLD_GNU_ENTRIES) throw tarError('sparse header: too many map entries');
  }
}

const MAX_OLD_GNU_ENTRIES = 1 << 20;

export function oldGnuSparse(header: Buffer): OldGnuSparse {
  const segments: Segment[] = [];
  entries(header, 386, 4, segments);
  const s: OldGnuSparse = {
    header,
    realSize: numeric(header.subarray(483, 495), 'real size'),
    segments,
    extended: header[482] !== 0,
    records: () => new Map([
      [SPARSE_SIZE, Buffer.from(String(s.realSize), 'latin1')],
      [SPARSE_MAP, Buffer.from(s.segments.flatMap((g) => [g.offset, g.length]).join(','), 'latin1')],
    ]),
  };
  return s;
}

/** Reads one extension block into `s`; true if another follows. */
export function oldGnuExtension(block: Buffer, s: OldGnuSparse): boolean {
  entries(block, 0, 21, s.segments);
  return block[504] !== 0;
}

/** `header` as a plain file ('0') header, checksum recomputed. */
export function plainFileHeader(header: Buffer): Buffer {
  const b = Buffer.from(header);
  b[156] = 0x30;
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** Checks a map against the real size and the data stored (bytes after any map text). */
export function checkMap(segments: Segment[], realSize: number, stored: number): void {
  let end = 0;
  let total = 0;
  for (const s of segments) {
    if (s.offset < end) throw tarError('sparse file: map entries overlap or are out of order');
    end = s.offset + s.length;
    if (end > realSize) throw tarError(`sparse file: a data region ends at ${end}, past the real size ${realSize}`);
    total += s.length;
  }
  if (total !== stored) throw tarError(`sparse file: the map holds ${total} bytes of data, the entry ${stored}`);
}

/**
 * Writes one sparse entry's data into `fd` (a new, empty file): each data region at its
 * offset, holes left as holes, then the file extended to its real size. Returns the
 * bytes of data written.
 */
export async function writeSparse(fd: number, sparse: Sparse, storedSize: number, data: AsyncIterable<Buffer>,
  progress?: (bytes: number) => void): Promise<number> {
  const it = data[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let segments = sparse.segments;
  let stored = storedSize;
  if (segments === undefined) {
    // 1.0: the map is text at the start of the data, padded to a block
    const lines: string[] = [];
    let want = 1;
    let used = 0;
    for (;;) {
      const nl = head.indexOf(0x0a, used);
      if (nl < 0) {
        if (head.length > MAX_MAP_TEXT) throw tarError('sparse file: the map is too large');
        const next = await it.next();
        if (next.done) throw tarError('sparse file: the data ends inside its map');
        head = Buffer.concat([head, next.value]);
        continue;
      }
      lines.push(head.toString('latin1', used, nl));
      used = nl + 1;
      if (lines.length === 1) want = 1 + 2 * count(lines[0], 'map size');
      if (lines.length === want) break;
    }
    const mapBytes = Math.ceil(used / BLOCK) * BLOCK;
    if (mapBytes > storedSize) throw tarError('sparse file: the map is larger than the entry');
    while (head.length < mapBytes) {
      const next = await it.next();
      if (next.done) throw tarError('sparse file: the data ends inside its map');
      head = Buffer.concat([head, next.value]);
    }
    segments = pairs(lines.slice(1));
    head = head.subarray(mapBytes);
    stored = storedSize - mapBytes;
  }
  checkMap(segments, sparse.realSize, stored);
  let seg = 0;
  let inSeg = 0;
  let written = 0;
  const put = async (chunk: Buffer): Promise<void> => {
    let off = 0;
    while (off < chunk.length) {
      while (seg < segments.length && inSeg === segments[seg].length) {
        seg++;
        inSeg = 0;
      }
      if (seg >= segments.length) throw tarError('sparse file: more data than its map holds');
      const n = Math.min(chunk.length - off, segments[seg].length - inSeg);
      const { bytesWritten } = await write(fd, chunk, off, n, segments[seg].offset + inSeg);
      off += bytesWritten;
      inSeg += bytesWritten;
      written += bytesWritten;
    }
    progress?.(written);
  };
  if (head.length > 0) await put(head);
  for (let next = await it.next(); !next.done; next = await it.next()) await put(next.value);
  if (written !== stored) throw tarError(`sparse file: ${written} bytes of data, its map says ${stored}`);
  fs.ftruncateSync(fd, sparse.realSize);
  return written;
}
