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
 */
import { LRUCache } from 'lru-cache';
import type { DirEntry, Stat } from '../native';
import { layerKey, tryStatAt, type Layer } from '../layers/access';

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
 * small while the working set of a build or a tree walk fits.
 */
export const CACHE_LIMITS: CacheLimits = {
  listings: 8192,
  listingBytes: 16 * 1024 * 1024,
  stats: 40960,
  statBytes: 8 * 1024 * 1024,
};

/**
 * approximate heap bytes of one listing entry besides its name (object, bigint, array
 * slot, and for a lower listing its slot in the name set)
 */
const ENTRY_OVERHEAD = 96;
/** approximate heap bytes of one listing besides its entries (objects, set, LRU slot) */
const LISTING_OVERHEAD = 256;
/** approximate heap bytes of one Stat (about twenty fields, bigint ino) besides its key */
const STAT_OVERHEAD = 200;

interface Listing {
  entries: DirEntry[];
  /**
   * lower listings: the names and their d_type, to answer a lookup of a name that is
   * not there, and to tell the read-ahead (prefetch.ts) which names it need not stat
   */
  names: Map<string, number> | null;
  /**
   * lower listings read ahead (prefetch.ts): the directory's own xattr names, read with
   * its entries; null when not read so
   */
  xattrs: string[] | null;
  /** upper listings: upperGen when read; -1 for lower listings */
  gen: number;
}

type StatSlot = { s: Stat | null };

function typesOf(entries: DirEntry[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of entries) m.set(e.name, e.type);
  return m;
}

/** key of a listing: a directory a lookup asks about for each of its names (layerKey reuses it) */
const keyOf = layerKey;

/** key of a lower attribute: an object path, asked about once or twice */
function statKeyOf(layer: Layer, path: string): string {
  return `${layer.index}\0${path}`;
}

export class LayerCache {
  private readonly listings: LRUCache<string, Listing>;
  private readonly stats: LRUCache<string, StatSlot>;
  /** changes whenever the upper may have changed (see header) */
  private upperGen = 0;
  /** operations that may change the upper, in flight */
  private changing = 0;
  private readonly maxListings: number;
  private readonly maxStats: number;

  constructor(limits: CacheLimits) {
    // bounded in count by hand (bounded()): an LRU given `max` allocates its index
    // arrays for that many entries up front, which an idle mount would pay for
    this.listings = new LRUCache<string, Listing>({
      maxSize: limits.listingBytes,
      sizeCalculation: (l, k) => LISTING_OVERHEAD + 2 * k.length + l.entries.reduce((n, e) => n + ENTRY_OVERHEAD + 2 * e.name.length, 0),
    });
    this.stats = new LRUCache<string, StatSlot>({
      maxSize: limits.statBytes,
      sizeCalculation: (_s, k) => STAT_OVERHEAD + 2 * k.length,
    });
    this.maxListings = limits.listings;
    this.maxStats = limits.stats;
  }

  /** Drops the least recently used entries beyond `max`. */
  private static bounded<V extends object>(lru: LRUCache<string, V>, max: number): void {
    while (lru.size > max) lru.pop();
  }

  /** The entries of directory `path` of `layer`, from the cache or from `read`. */
  listing(layer: Layer, path: string, read: () => DirEntry[]): DirEntry[] {
    const key = keyOf(layer, path);
    if (!layer.upper) {
      const hit = this.listings.get(key);
      if (hit !== undefined) return hit.entries;
      const entries = read();
      this.listings.set(key, { entries, names: typesOf(entries), xattrs: null, gen: -1 });
      LayerCache.bounded(this.listings, this.maxListings);
      return entries;
    }
    if (this.changing > 0) return read();
    const hit = this.listings.get(key);
    if (hit !== undefined && hit.gen === this.upperGen) return hit.entries;
    const entries = read();
    this.listings.set(key, { entries, names: null, xattrs: null, gen: this.upperGen });
    LayerCache.bounded(this.listings, this.maxListings);
    return entries;
  }

  /**
   * Keeps the entries of lower directory `path` of `layer` read elsewhere (the thread
   * pool, prefetch.ts), unless a listing is kept already. Never for the upper.
   */
  putLowerListing(layer: Layer, path: string, entries: DirEntry[], xattrs: string[] | null = null): void {
    if (layer.upper) return;
    const key = keyOf(layer, path);
    if (this.listings.has(key)) return;
    this.listings.set(key, { entries, names: typesOf(entries), xattrs, gen: -1 });
    LayerCache.bounded(this.listings, this.maxListings);
  }

  /** The names (and d_types) of the kept listing of lower directory `path` of `layer`, or null (never the upper's). */
  peekLowerNames(layer: Layer, path: string): ReadonlyMap<string, number> | null {
    if (layer.upper) return null;
    return this.listings.peek(keyOf(layer, path))?.names ?? null;
  }

  /**
   * The xattr names of lower directory `path` of `layer` when they were read with its
   * kept listing (prefetch.ts), else null (never the upper's): a lookup that finds the
   * directory reads its overlay marks (whiteout.ts dirMarks) without a listxattr.
   */
  lowerXattrNames(layer: Layer, path: string): readonly string[] | null {
    if (layer.upper) return null;
    return this.listings.peek(keyOf(layer, path))?.xattrs ?? null;
  }

  /** Is a listing of lower directory `path` of `layer` kept? */
  hasLowerListing(layer: Layer, path: string): boolean {
    return !layer.upper && this.listings.has(keyOf(layer, path));
  }

  /**
   * Is `name` known not to be in lower directory `dir` of `layer`? True only when that
   * directory's listing is cached and lacks it; false when unknown. A tree walk lists a
   * directory before it looks its names up, so most misses of a merged lookup (a name
   * of the bottom layer is looked for in every layer above) cost no statx.
   */
  lowerLacks(layer: Layer, dir: string, name: string): boolean {
    const l = this.listings.get(keyOf(layer, dir));
    return l !== undefined && l.names !== null && !l.names.has(name);
  }

  /** statx of lower object `path` of `layer` (null: it does not exist), from the cache or `stat`. */
  lowerStat(layer: Layer, path: string, stat: () => Stat | null): Stat | null {
    const key = statKeyOf(layer, path);
    const hit = this.stats.get(key);
    if (hit !== undefined) return hit.s;
    const s = stat();
    this.stats.set(key, { s });
    LayerCache.bounded(this.stats, this.maxStats);
    return s;
  }

  /** lowerStat of `name` in the directory `dirfd` (a lookup: no closure per call) */
  lowerStatAt(layer: Layer, path: string, dirfd: number, name: string): Stat | null {
    const key = statKeyOf(layer, path);
    const hit = this.stats.get(key);
    if (hit !== undefined) return hit.s;
    const s = tryStatAt(dirfd, name);
    this.stats.set(key, { s });
    LayerCache.bounded(this.stats, this.maxStats);
    return s;
  }

  /** Is the statx of lower object `path` of `layer` (or its miss) kept? */
  hasLowerStat(layer: Layer, path: string): boolean {
    return !layer.upper && this.stats.has(statKeyOf(layer, path));
  }

  /** Keeps a statx of lower object `path` of `layer` made elsewhere (null: it does not exist). Never for the upper. */
  putLowerStat(layer: Layer, path: string, s: Stat | null): void {
    if (layer.upper) return;
    this.stats.set(statKeyOf(layer, path), { s });
    LayerCache.bounded(this.stats, this.maxStats);
  }

  /**
   * Runs `op`, which may change the upper: no cached upper listing is used while it
   * runs, and none read before it is used after it.
   */
  changingUpper<T>(op: () => Promise<T>): Promise<T> {
    this.upperGen += 1;
    this.changing += 1;
    const done = (): void => {
      this.changing -= 1;
      this.upperGen += 1;
    };
    let p: Promise<T>;
    try {
      p = op();
    } catch (e) {
      done();
      throw e;
    }
    return p.finally(done);
  }

  /** for tests and statistics */
  get sizes(): { listings: number; listingBytes: number; stats: number; statBytes: number } {
    return {
      listings: this.listings.size,
      listingBytes: this.listings.calculatedSize,
      stats: this.stats.size,
      statBytes: this.stats.calculatedSize,
    };
  }

  clear(): void {
    this.listings.clear();
    this.stats.clear();
  }
}
