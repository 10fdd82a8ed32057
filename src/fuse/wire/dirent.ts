/**
 * READDIR / READDIRPLUS reply bodies.
 *
 * fuse_dirent: ino u64, off u64 (cookie of the *next* entry), namelen u32, type u32
 * (DT_* = S_IFMT >> 12), name, zero padding to 8 bytes. fuse_direntplus is a
 * fuse_entry_out (128 bytes) followed by a fuse_dirent. The kernel's `size` is a hard
 * budget: an entry that does not fit is left for the next call (the writer reports how
 * many entries it took).
 */
import type { CacheTimeouts, DirEntryOut, Entry } from './types';
import { writeU64, type Int64 } from '../../int64';
import { writeEntry, type Reply } from './encode';
import { constants as fsc } from 'node:fs';
import { IFTODT_SHIFT, Size } from './protocol';

const align8 = (n: number): number => (n + 7) & ~7;

export function direntSize(name: string): number {
  return align8(Size.DIRENT_BASE + Buffer.byteLength(name, 'latin1'));
}

export function direntplusSize(name: string): number {
  return Size.ENTRY_OUT + direntSize(name);
}

/** the S_IFMT bits of a mode -> DT_* (dirent.h IFTODT) */
export function dtype(typeBits: number): number {
  return (typeBits & fsc.S_IFMT) >>> IFTODT_SHIFT;
}

function writeDirent(b: Buffer, at: number, d: DirEntryOut): number {
  const namelen = Buffer.byteLength(d.name, 'latin1');
  writeU64(b, d.ino, at);
  writeU64(b, d.nextOffset, at + 8);
  b.writeUInt32LE(namelen, at + 16);
  b.writeUInt32LE(dtype(d.type), at + 20);
  b.write(d.name, at + Size.DIRENT_BASE, namelen, 'latin1');
  return align8(Size.DIRENT_BASE + namelen);
}

/**
 * Accumulates entries into one reply of at most `budget` body bytes. `add*` return
 * false (and add nothing) when the entry does not fit.
 */
export class DirentWriter {
  private readonly buf: Buffer;
  private used = 0;
  count = 0;

  constructor(private readonly unique: Int64, private readonly budget: number) {
    this.buf = Buffer.alloc(Size.OUT_HEADER + Math.max(0, budget));
  }

  fits(size: number): boolean {
    return this.used + size <= this.budget;
  }

  /** body bytes a READDIRPLUS entry named `name` takes */
  plusSize(name: string): number {
    return direntplusSize(name);
  }

  add(d: DirEntryOut): boolean {
    const size = direntSize(d.name);
    if (!this.fits(size)) return false;
    this.used += writeDirent(this.buf, Size.OUT_HEADER + this.used, d);
    this.count++;
    return true;
  }

  /**
   * READDIRPLUS entry; `entry` null sends node id 0 (the kernel then only lists the
   * name: used for '.' and '..' and entries whose lookup failed).
   */
  addPlus(d: DirEntryOut, entry: Entry | null, t: CacheTimeouts): boolean {
    const size = direntplusSize(d.name);
    if (!this.fits(size)) return false;
    const at = Size.OUT_HEADER + this.used;
    if (entry) writeEntry(this.buf, at, entry, t);
    // with no entry the 128 bytes stay zero: node id 0, no timeouts, empty attr
    writeDirent(this.buf, at + Size.ENTRY_OUT, d);
    this.used += size;
    this.count++;
    return true;
  }

  finish(): Reply {
    const out = this.buf.subarray(0, Size.OUT_HEADER + this.used);
    out.writeUInt32LE(out.length, 0);
    out.writeInt32LE(0, 4);
    writeU64(out, this.unique, 8);
    return [out];
  }
}
