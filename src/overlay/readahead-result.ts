/**
 * Reading the one Buffer native `readAhead` gives (layout: native-bindings/src/batch.c):
 * name by name, in the order they were asked, first stat(), then listing(), then
 * fileXattrs(). Nothing is
 * made for a name until it is read, and nothing but what the caches keep: a Stat, the
 * entries, the xattr names.
 */
import type { DirEntry, Stat } from '../native';
import type { Int64 } from '../int64';

const TWO_32 = 2 ** 32;
/** the names of an object without xattrs (most): one array for all */
const NO_NAMES: readonly string[] = Object.freeze([]);

export class ReadAheadResult {
  private readonly view: DataView;
  private pos = 0;
  /** the xattr names of the directory the last listing() read; null when unread */
  xattrs: readonly string[] | null = null;

  constructor(private readonly buf: Buffer) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** a signed 64-bit value as a number (times: whole seconds) */
  private num64(at: number): number {
    return this.view.getInt32(at + 4, true) * TWO_32 + this.view.getUint32(at, true);
  }

  /** an Int64 (src/int64.ts): a number when safe, else a bigint */
  private int64(at: number): Int64 {
    const n = this.num64(at);
    return Number.isSafeInteger(n) ? n : this.view.getBigInt64(at, true);
  }

  /** The next name's statx: a Stat, the errno it failed with, or undefined when not asked. */
  stat(): Stat | number | undefined {
    const v = this.view;
    const status = v.getInt32(this.pos, true);
    this.pos += 4;
    if (status !== 0) return status < 0 ? undefined : status;
    const p = this.pos;
    const u = p + 48; // the u32 fields after the six 64-bit ones
    this.pos = u + 48;
    return {
      devMajor: v.getUint32(u, true),
      devMinor: v.getUint32(u + 4, true),
      ino: v.getBigUint64(p, true),
      mode: v.getUint32(u + 8, true),
      nlink: v.getUint32(u + 12, true),
      uid: v.getUint32(u + 16, true),
      gid: v.getUint32(u + 20, true),
      rdevMajor: v.getUint32(u + 24, true),
      rdevMinor: v.getUint32(u + 28, true),
      size: this.int64(p + 8),
      blocks: this.int64(p + 16),
      blksize: v.getUint32(u + 32, true),
      atimeSec: this.num64(p + 24),
      atimeNsec: v.getUint32(u + 36, true),
      mtimeSec: this.num64(p + 32),
      mtimeNsec: v.getUint32(u + 40, true),
      ctimeSec: this.num64(p + 40),
      ctimeNsec: v.getUint32(u + 44, true),
    };
  }

  /**
   * The next name's listing ('.' and '..' left out; its xattr names in `xattrs`), the
   * errno it failed with, or undefined when not read (not asked, or not a directory).
   */
  listing(): DirEntry[] | number | undefined {
    const v = this.view;
    const status = v.getInt32(this.pos, true);
    this.pos += 4;
    if (status !== 0) return status < 0 ? undefined : status;
    const count = v.getUint32(this.pos, true);
    let p = this.pos + 4;
    const entries: DirEntry[] = new Array<DirEntry>(count);
    for (let i = 0; i < count; i++) {
      const ino = v.getBigUint64(p, true);
      const type = this.buf[p + 8] as number;
      const len = this.buf[p + 9] as number;
      entries[i] = { name: this.buf.toString('latin1', p + 10, p + 10 + len), ino, type };
      p += 10 + len;
    }
    this.pos = p;
    this.xattrs = this.names();
    return entries;
  }

  /** The next name's own xattr names (a non-directory's, RA_XATTRS), or null when not read. */
  fileXattrs(): readonly string[] | null {
    return this.names();
  }

  /** xattr names as listxattr gives them (i32 length, -1: not read; NUL-ended names) */
  private names(): readonly string[] | null {
    const p = this.pos + 4;
    const xlen = this.view.getInt32(this.pos, true);
    if (xlen < 0) {
      this.pos = p;
      return null;
    }
    this.pos = p + xlen;
    if (xlen === 0) return NO_NAMES;
    const names: string[] = [];
    for (let s = p; s < p + xlen;) {
      let e = s;
      while (e < p + xlen && this.buf[e] !== 0) e++;
      if (e > s) names.push(this.buf.toString('latin1', s, e));
      s = e + 1;
    }
    return names;
  }
}
