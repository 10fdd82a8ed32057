/**
 * Directory offsets that belong to names, not to opens.
 *
 * With FUSE_NO_OPENDIR_SUPPORT the kernel opens directories itself and READDIR comes
 * without a handle (fh 0): a listing read in pieces, or continued after seekdir, has
 * only its offset to go on. So an entry's cookie is a property of its name: a 52-bit
 * hash of it, above the cookies of '.' (1) and '..' (2). A listing is in cookie order
 * and READDIR at offset N returns the entries whose cookies are above N. A name keeps
 * its cookie whatever else is added or removed, so a listing continued after the
 * directory changed repeats no name and skips none that stayed (a name added meanwhile
 * shows when its cookie is further on; ext4's offsets are name hashes too).
 *
 * Two names of one directory with the same hash (about n / 2^52 per name added to a
 * directory of n): the later in (hash, name) order takes the next free cookie, and the
 * node remembers it (`Collisions`, dropped with the node), so it stays while the node
 * lives. Only a name added with the hash of a name already listed can move that name
 * (when it sorts first): the one case a reader past it could see it twice.
 *
 * Listings (ListingStore) are kept between the calls that read one in pieces, a bounded
 * number, each dropped when its end has been served, when its node leaves the inode
 * table or when newer ones push it out; a listing read again at offset 0 is made anew.
 * One pushed out is made anew at the next offset asked for, which the cookies allow.
 */
import type { DirEntryOut } from '../fuse/api';
import type { Node } from './inodes';

/** '.' and '..' take 1 and 2; a name's cookie is above them */
const COOKIE_BASE = 3;
const TWO_32 = 2 ** 32;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The cookie of `name`: 52 bits of two 32-bit FNV-1a style hashes, plus COOKIE_BASE. */
export function nameCookie(name: string): number {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  const hi = fmix32(a ^ name.length) >>> 12;
  return COOKIE_BASE + hi * TWO_32 + fmix32(b);
}

/** cookies given to names whose hash another name of the directory had (see above) */
export type Collisions = WeakMap<Node, Map<string, number>>;

/**
 * Gives each entry of `entries` (the names of directory `node`, '.' and '..' excluded)
 * its cookie as nextOffset and sorts them by it.
 */
export function assignCookies(entries: DirEntryOut[], node: Node, collisions: Collisions): void {
  const moved = collisions.get(node);
  for (const e of entries) e.nextOffset = moved?.get(e.name) ?? nameCookie(e.name);
  entries.sort((x, y) => x.nextOffset - y.nextOffset || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  for (let i = 1; i < entries.length; i++) {
    const prev = (entries[i - 1] as DirEntryOut).nextOffset;
    const e = entries[i] as DirEntryOut;
    if (e.nextOffset > prev) continue;
    e.nextOffset = prev + 1;
    let m = collisions.get(node);
    if (!m) collisions.set(node, (m = new Map()));
    m.set(e.name, e.nextOffset);
  }
}

/** Index of the first entry of `list` (in cookie order) whose cookie is above `offset`. */
export function firstAfter(list: readonly DirEntryOut[], offset: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as DirEntryOut).nextOffset <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** most listings kept, and most entries in all of them (the newest is always kept) */
export const LISTINGS_KEPT = 32;
export const LISTING_ENTRIES_KEPT = 1 << 16;

/** The listings being read in pieces, by directory node, oldest first (see above). */
export class ListingStore {
  private readonly lists = new Map<Node, DirEntryOut[]>();
  private entries = 0;

  get(node: Node): DirEntryOut[] | undefined {
    return this.lists.get(node);
  }

  set(node: Node, list: DirEntryOut[]): void {
    this.drop(node);
    this.lists.set(node, list);
    this.entries += list.length;
    for (const [old, l] of this.lists) {
      if (old === node || (this.lists.size <= LISTINGS_KEPT && this.entries <= LISTING_ENTRIES_KEPT)) break;
      this.lists.delete(old);
      this.entries -= l.length;
    }
  }

  drop(node: Node): void {
    const l = this.lists.get(node);
    if (!l) return;
    this.lists.delete(node);
    this.entries -= l.length;
  }

  get size(): number {
    return this.lists.size;
  }
}
