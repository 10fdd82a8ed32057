/**
 * What the overlay remembers of the layers between requests, bounded in memory.
 *
 * Lowers are read-only while mounted and stratafs is the only writer of the upper, so:
 *
 * - Listings of layer directories (the raw getdents of one directory of one layer). A
 *   lower directory's listing never changes: it stays until the LRU evicts it. An upper
 *   directory's listing is valid only while the upper has not changed since it was
 *   read: every operation that may change the upper (create, mkdir, mknod, symlink,
 *   link, unlink, rmdir, rename, setattr, open with copy-up, xattr changes: each may
 *   copy up, whiteout or mark a directory) bumps `upperGen` when it starts and when it
 *   ends (Overlay wraps them, index.ts), and while one is in flight no upper listing is
 *   served from or stored in the cache. Read-only work (find, tar, ls -l, a build
 *   reading sources) lists each directory once. A cached lower listing also answers
 *   lookups of names it lacks (lowerLacks) without a statx.
 * - statx results of lower objects by layer path, misses (ENOENT) included: a lower
 *   object's metadata cannot change under a mount (its atime may, which the mount then
 *   shows as of the first statx, as the kernel's attribute cache would). Upper objects
 *   are always statx'ed: they change through open handles in ways the overlay does not
 *   track (writes, the kernel's own time updates).
 *
 * Both are LRUs bounded by a count and by approximate bytes (CACHE_LIMITS, one place; a
 * mount may give others, OverlayConfig.caches). A listing larger than the byte bound is
 * not kept: it is read again each time, as without a cache.
 *
 * What is kept of the lowers is shared by the mounts of this process that use the same
 * lower directories (lower-pool.ts, reference-counted, dropped when the last of them
 * closes); the upper's listings are the mount's own.
 */
import { constants as fsc } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { DirEntry, Stat } from '../native';
import type { Awaitable } from '../fuse/api';
import { tryStatAt, type Layer } from '../layers/access';
import { listingSize, lowerIdentities, lowerPool, type Lease, type LowerListing, type LowerPool, type StatSlot } from './lower-pool';
import type { MountEntry } from '../mountinfo';

export interface CacheLimits {
  /** layer directory listings kept */
  listings: number;
  /** approximate bytes of all kept listings */
  listingBytes: number;
  /** lower statx results (and misses) kept */
  stats: number;
  /** approximate bytes of all kept statx results */
  statBytes: number;
}

/**
 * Defaults per mount: ~16 MiB of listings (a 50k-file tree of 5k directories is ~5 MiB)
 * and ~8 MiB of lower attributes (~40k objects), so a daemon serving many mounts stays
 * small while the working set of a build or a tree walk fits. The shared lower caches
 * (lower-pool.ts) are bounded by the sum of their mounts' bounds.
 */
export const CACHE_LIMITS: CacheLimits = {
  listings: 8192,
  listingBytes: 16 * 1024 * 1024,
  stats: 40960,
  statBytes: 8 * 1024 * 1024,
};

interface UpperListing {
  entries: DirEntry[];
  /** upperGen when read */
  gen: number;
}

function typesOf(entries: DirEntry[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of entries) m.set(e.name, e.type);
  return m;
}

export class LayerCache {
  /** the upper's listings, by path */
  private readonly uppers: LRUCache<string, UpperListing>;
  /** the lowers' listings and attributes, shared (lower-pool.ts) */
  private readonly pool: LowerPool;
  private readonly lease: Lease;
  /** changes whenever the upper may have changed (see header) */
  private upperGen = 0;
  /** operations that may change the upper, in flight */
  private changing = 0;
  private readonly maxListings: number;
  private readonly listingBytes: number;

  /**
   * `lowers`: the mount's lower layers (named once, by their roots: lowerIdentities);
   * `mounts`: the mount table, where the mount's start read it already
   */
  constructor(limits: CacheLimits, lowers: readonly Layer[] = [], pool: LowerPool = lowerPool, mounts?: readonly MountEntry[]) {
    // bounded in count by hand: an LRU given `max` allocates its index arrays for that
    // many entries up front, which an idle mount would pay for
    this.uppers = new LRUCache<string, UpperListing>({
      maxSize: limits.listingBytes,
      sizeCalculation: (l, k) => listingSize(l.entries, k),
    });
    this.maxListings = limits.listings;
    this.listingBytes = limits.listingBytes;
    this.pool = pool;
    this.lease = pool.attach(lowerIdentities(lowers, mounts), limits);
  }

  /** the last key keyOf made, and what it was made of */
  private lastIndex = -1;
  private lastPath = '';
  private lastKey: string | null = null;

  /**
   * The pool key of lower directory `path` of `layer` for its listing, or null when the
   * mount keeps nothing of it. A lookup asks several questions about one parent
   * directory in a row: the last key is reused rather than built (and hashed) again
   * for each (as access.ts layerKey).
   */
  private keyOf(layer: Layer, path: string): string | null {
    if (layer.upper || !this.lease.live) return null;
    if (layer.index === this.lastIndex && path === this.lastPath) return this.lastKey;
    const p = this.lease.prefixes[layer.index];
    const key = p === undefined ? null : `${p}\0${path}`;
    this.lastIndex = layer.index;
    this.lastPath = path;
    this.lastKey = key;
    return key;
  }

  /** The pool key of the attributes of lower object `path` of `layer` (asked once or twice: no reuse), or null. */
  private statKeyOf(layer: Layer, path: string): string | null {
    if (layer.upper || !this.lease.live) return null;
    const p = this.lease.prefixes[layer.index];
    return p === undefined ? null : `${p}\0${path}`;
  }

  private putListing(key: string, entries: DirEntry[], xattrs: readonly string[] | null): void {
    // a listing larger than this mount's byte bound is not kept (read again each time)
    if (listingSize(entries, key) > this.listingBytes) return;
    this.pool.listings.set(key, { entries, names: typesOf(entries), xattrs });
    this.pool.trim();
  }

  /** The entries of directory `path` of `layer`, from the cache or from `read`. */
  listing(layer: Layer, path: string, read: () => DirEntry[]): DirEntry[] {
    if (!layer.upper) {
      const key = this.keyOf(layer, path);
      if (key === null) return read();
      const hit = this.pool.listings.get(key);
      if (hit !== undefined) return hit.entries;
      const entries = read();
      this.putListing(key, entries, null);
      return entries;
    }
    if (this.changing > 0) return read();
    const hit = this.uppers.get(path);
    if (hit !== undefined && hit.gen === this.upperGen) return hit.entries;
    const entries = read();
    this.uppers.set(path, { entries, gen: this.upperGen });
    while (this.uppers.size > this.maxListings) this.uppers.pop();
    return entries;
  }

  /**
   * Keeps the entries of lower directory `path` of `layer` read elsewhere (the thread
   * pool, prefetch.ts), unless a listing is kept already. Never for the upper.
   */
  putLowerListing(layer: Layer, path: string, entries: DirEntry[], xattrs: readonly string[] | null = null): void {
    const key = this.keyOf(layer, path);
    if (key === null || this.pool.listings.has(key)) return;
    this.putListing(key, entries, xattrs);
  }

  private peekListing(layer: Layer, path: string): LowerListing | undefined {
    const key = this.keyOf(layer, path);
    return key === null ? undefined : this.pool.listings.peek(key);
  }

  /** The names (and d_types) of the kept listing of lower directory `path` of `layer`, or null (never the upper's). */
  peekLowerNames(layer: Layer, path: string): ReadonlyMap<string, number> | null {
    return this.peekListing(layer, path)?.names ?? null;
  }

  /**
   * The xattr names of lower directory `path` of `layer` when they were read with its
   * kept listing (prefetch.ts), else null (never the upper's): a lookup that finds the
   * directory reads its overlay marks (whiteout.ts dirMarks) without a listxattr.
   */
  lowerXattrNames(layer: Layer, path: string): readonly string[] | null {
    return this.peekListing(layer, path)?.xattrs ?? null;
  }

  /** Is a listing of lower directory `path` of `layer` kept? */
  hasLowerListing(layer: Layer, path: string): boolean {
    const key = this.keyOf(layer, path);
    return key !== null && this.pool.listings.has(key);
  }

  /**
   * Is `name` known not to be in lower directory `dir` of `layer`? True only when that
   * directory's listing is cached and lacks it; false when unknown. A tree walk lists a
   * directory before it looks its names up, so most misses of a merged lookup (a name
   * of the bottom layer is looked for in every layer above) cost no statx.
   */
  lowerLacks(layer: Layer, dir: string, name: string): boolean {
    const key = this.keyOf(layer, dir);
    if (key === null) return false;
    const l = this.pool.listings.get(key);
    return l !== undefined && !l.names.has(name);
  }

  /** statx of lower object `path` of `layer` (null: it does not exist), from the cache or `stat`. */
  lowerStat(layer: Layer, path: string, stat: () => Stat | null): Stat | null {
    const key = this.statKeyOf(layer, path);
    if (key === null) return stat();
    const hit = this.pool.stats.get(key);
    if (hit !== undefined && hit.s !== undefined) return hit.s;
    const s = stat();
    this.pool.stats.set(key, { s });
    this.pool.trim();
    return s;
  }

  /**
   * The kept slot of lower object `path` of `layer` (its statx, null when it does not
   * exist), from the cache or made with `stat`; a fresh slot the cache does not hold
   * when the mount keeps nothing of the layer. For a node to keep while the slot's `s`
   * is set (lower-pool.ts StatSlot).
   */
  lowerStatSlot(layer: Layer, path: string, stat: () => Stat | null): StatSlot {
    const key = this.statKeyOf(layer, path);
    if (key === null) return { s: stat() };
    const hit = this.pool.stats.get(key);
    if (hit !== undefined && hit.s !== undefined) return hit;
    const slot: StatSlot = { s: stat() };
    this.pool.stats.set(key, slot);
    this.pool.trim();
    return slot;
  }

  /** lowerStat of `name` in the directory `dirfd` (a lookup: no closure per call) */
  lowerStatAt(layer: Layer, path: string, dirfd: number, name: string): Stat | null {
    const key = this.statKeyOf(layer, path);
    if (key === null) return tryStatAt(dirfd, name);
    const hit = this.pool.stats.get(key);
    if (hit !== undefined && hit.s !== undefined) return hit.s;
    const s = tryStatAt(dirfd, name);
    this.pool.stats.set(key, { s });
    this.pool.trim();
    return s;
  }

  /** Is the statx of lower object `path` of `layer` (or its miss) kept? */
  hasLowerStat(layer: Layer, path: string): boolean {
    const key = this.statKeyOf(layer, path);
    return key !== null && this.pool.stats.has(key);
  }

  /**
   * Keeps a statx of lower object `path` of `layer` made elsewhere (null: it does not
   * exist) and, when given, its xattr names as stored. Never for the upper.
   */
  putLowerStat(layer: Layer, path: string, s: Stat | null, xattrs: readonly string[] | null = null): void {
    const key = this.statKeyOf(layer, path);
    if (key === null) return;
    this.pool.stats.set(key, xattrs === null || s === null ? { s } : { s, x: xattrs });
    this.pool.trim();
  }

  /**
   * Whether lower object `path` of `layer` is kept as a non-directory without its xattr
   * names (a walk's read-ahead that listed none read its statx): the read-ahead then
   * lists them alone (prefetch.ts), not statx it again.
   */
  lowerFileLacksXattrs(layer: Layer, path: string): boolean {
    return this.statWithoutXattrs(this.statKeyOf(layer, path)) !== undefined;
  }

  /**
   * Adds the xattr names (as stored) of lower non-directory `path` of `layer` to its
   * kept statx; nothing when that is no longer kept (its lookup reads it) or has some.
   */
  putLowerFileXattrs(layer: Layer, path: string, xattrs: readonly string[]): void {
    const key = this.statKeyOf(layer, path);
    const s = this.statWithoutXattrs(key);
    if (key === null || s === undefined) return;
    // a new slot (its size counted again); the one a node holds is emptied and asked again (StatSlot)
    this.pool.stats.set(key, { s, x: xattrs });
    this.pool.trim();
  }

  /** The kept statx under `key` when it is a non-directory's kept without its xattr names. */
  private statWithoutXattrs(key: string | null): Stat | undefined {
    const slot = key === null ? undefined : this.pool.stats.peek(key);
    const s = slot?.s;
    if (s === undefined || s === null || slot?.x !== undefined) return undefined;
    return (s.mode & fsc.S_IFMT) === fsc.S_IFDIR ? undefined : s;
  }

  /**
   * The xattr names (as stored) of lower object `path` of `layer` when the read-ahead
   * listed them with its statx (a non-directory; a directory's come with its listing,
   * lowerXattrNames), else null. Never the upper's.
   */
  lowerFileXattrs(layer: Layer, path: string): readonly string[] | null {
    const key = this.statKeyOf(layer, path);
    if (key === null) return null;
    return this.pool.stats.peek(key)?.x ?? null;
  }

  /**
   * Runs `op`, which may change the upper: no cached upper listing is used while it
   * runs, and none read before it is used after it.
   */
  changingUpper<T>(op: () => Promise<T>): Promise<T>;
  /** ... or that may be done at once: then its value (or its throw), with no promise */
  changingUpper<T>(op: () => Awaitable<T>): Awaitable<T>;
  changingUpper<T>(op: () => Awaitable<T>): Awaitable<T> {
    this.upperGen += 1;
    this.changing += 1;
    const done = (): void => {
      this.changing -= 1;
      this.upperGen += 1;
    };
    let p: Awaitable<T>;
    try {
      p = op();
    } catch (e) {
      done();
      throw e;
    }
    if (p instanceof Promise) return p.finally(done);
    done();
    return p;
  }

  /**
   * for tests and statistics: the upper listings of this mount, and the shared lower
   * caches whole (every attached mount's lowers)
   */
  get sizes(): { listings: number; listingBytes: number; stats: number; statBytes: number } {
    return {
      listings: this.uppers.size + this.pool.listings.size,
      listingBytes: this.uppers.calculatedSize + this.pool.listings.calculatedSize,
      stats: this.pool.stats.size,
      statBytes: this.pool.stats.calculatedSize,
    };
  }

  /** Drops the upper listings and detaches from the shared lower caches (the mount closes). */
  clear(): void {
    this.uppers.clear();
    this.pool.detach(this.lease);
  }
}
