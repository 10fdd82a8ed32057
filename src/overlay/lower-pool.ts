/**
 * The lower layers' listings and attributes, kept once per process for every mount that
 * uses the same lower directory.
 *
 * A lower never changes while it is mounted (cache.ts), so what one mount read of it
 * (a directory's entries, its xattr names, a statx or a miss) is what any other mount
 * of it would read: a shared daemon (`stratafs daemon`, `server=`) serving several
 * containers of one image, or the steps of a `podman build` (each a fresh mount over
 * the image's layers plus the step before), walks a lower cold once, not once per
 * mount. The values kept are the raw ones the syscalls gave (on-disk ids, the lower's
 * st_ino): translating ids for a mount's uid/gid mapping (idmap.ts) and folding layer
 * indexes into st_ino (State.foldIno) happen per mount, on the way to the reply.
 *
 * A lower is known by what a mount reached: the device and inode of its root *and* the
 * path the mount was given for it. The same inodes seen through an idmapped mount show
 * other ids, and through another path they may be another mount of the same directory,
 * so only mounts given the same path to the same root share, and a lower on an
 * idmapped mount is not shared at all (lowerIdentities).
 *
 * One pair of LRUs holds every shared lower's entries, keyed by a prefix per lower
 * (never reused, so an entry of a dropped lower can never answer for a new one). Their
 * bounds are the sum of the bounds of the mounts attached (each mount brings its own,
 * CACHE_LIMITS or OverlayConfig.caches): N mounts of the same lowers may keep what N
 * unshared mounts could, but keep it once. When the last mount of a lower detaches, its
 * entries are dropped, and the bounds shrink by the mount's share.
 */
import { LRUCache } from 'lru-cache';
import type { DirEntry, Stat } from '../native';
import { statAt, type Layer } from '../layers/access';
import { mountOf, readMounts, type MountEntry } from '../mountinfo';

export interface PoolLimits {
  listings: number;
  listingBytes: number;
  stats: number;
  statBytes: number;
}

/** A lower directory's listing as kept. */
export interface LowerListing {
  entries: DirEntry[];
  /** the names and their d_type (a lookup of a name not there; the read-ahead) */
  names: Map<string, number>;
  /** the directory's own xattr names when read with its entries (prefetch.ts), else null */
  xattrs: readonly string[] | null;
}

/**
 * A lower object's statx (null: it does not exist) and, when the read-ahead listed them
 * with it (a non-directory, prefetch.ts), its xattr names as stored. A node keeps the
 * slot of its lower object (State.lowerStat: no key built and looked up per GETATTR);
 * when the slot leaves the cache its fields are cleared (`s` undefined), so what a node
 * still holds of an evicted slot is the empty slot, and the node asks the cache again.
 */
export type StatSlot = { s: Stat | null | undefined; x?: readonly string[] | undefined };

/** Empties a slot that leaves the cache (see StatSlot). */
function emptySlot(slot: StatSlot): void {
  slot.s = undefined;
  if (slot.x !== undefined) slot.x = undefined;
}

/**
 * approximate heap bytes of one listing entry besides its name (object, bigint, array
 * slot, its slot in the name map)
 */
export const ENTRY_OVERHEAD = 96;
/** approximate heap bytes of one listing besides its entries (objects, map, LRU slot) */
export const LISTING_OVERHEAD = 256;
/** approximate heap bytes of one Stat (about twenty fields, bigint ino) besides its key */
export const STAT_OVERHEAD = 200;
/** approximate heap bytes of a slot's xattr name list besides the names (the array; none when empty: one shared) */
export const XATTRS_OVERHEAD = 32;
/** approximate heap bytes of one kept xattr name besides its characters */
export const XATTR_NAME_OVERHEAD = 24;

export function statSlotSize(slot: StatSlot, key: string): number {
  let n = STAT_OVERHEAD + 2 * key.length;
  const x = slot.x;
  if (x !== undefined && x.length > 0) {
    n += XATTRS_OVERHEAD;
    for (const name of x) n += XATTR_NAME_OVERHEAD + name.length;
  }
  return n;
}

export function listingSize(entries: readonly DirEntry[], key: string): number {
  let n = LISTING_OVERHEAD + 2 * key.length;
  for (const e of entries) n += ENTRY_OVERHEAD + 2 * e.name.length;
  return n;
}

/** The shared caches of one lower directory, as a mount holds them. */
interface Shared {
  /** key prefix of its entries */
  readonly prefix: string;
  refs: number;
}

/** What one mount attached: the prefixes of its lowers (by layer index) and its bounds. */
export interface Lease {
  readonly prefixes: ReadonlyArray<string | undefined>;
  readonly limits: PoolLimits;
  /** false once detached */
  live: boolean;
  readonly identities: readonly string[];
}

/** the LRUs bound nothing themselves (trim does, by the attached mounts; a mount refuses a listing beyond its own byte bound) */
const NO_BOUND = Number.MAX_SAFE_INTEGER;

export class LowerPool {
  readonly listings = new LRUCache<string, LowerListing>({
    maxSize: NO_BOUND,
    sizeCalculation: (l, k) => listingSize(l.entries, k),
  });
  readonly stats = new LRUCache<string, StatSlot>({
    maxSize: NO_BOUND,
    sizeCalculation: statSlotSize,
    dispose: emptySlot,
  });
  private readonly lowers = new Map<string, Shared>();
  private readonly bound: PoolLimits = { listings: 0, listingBytes: 0, stats: 0, statBytes: 0 };
  private nextPrefix = 0;

  /**
   * Attaches a mount with the lowers named by `identities` (lowerIdentities), indexed by
   * layer index (holes allowed), and its cache bounds.
   */
  attach(identities: ReadonlyArray<string | undefined>, limits: PoolLimits): Lease {
    const prefixes = identities.map((id) => {
      if (id === undefined) return undefined;
      let s = this.lowers.get(id);
      if (s === undefined) {
        s = { prefix: (this.nextPrefix++).toString(36), refs: 0 };
        this.lowers.set(id, s);
      }
      s.refs += 1;
      return s.prefix;
    });
    this.bound.listings += limits.listings;
    this.bound.listingBytes += limits.listingBytes;
    this.bound.stats += limits.stats;
    this.bound.statBytes += limits.statBytes;
    return { prefixes, limits, live: true, identities: identities.filter((i): i is string => i !== undefined) };
  }

  /** Detaches a mount: the lowers no other mount uses are dropped, the bounds shrink. */
  detach(lease: Lease): void {
    if (!lease.live) return;
    lease.live = false;
    const dropped = new Set<string>();
    for (const id of lease.identities) {
      const s = this.lowers.get(id);
      if (s === undefined) continue;
      s.refs -= 1;
      if (s.refs === 0) {
        this.lowers.delete(id);
        dropped.add(s.prefix);
      }
    }
    this.bound.listings -= lease.limits.listings;
    this.bound.listingBytes -= lease.limits.listingBytes;
    this.bound.stats -= lease.limits.stats;
    this.bound.statBytes -= lease.limits.statBytes;
    if (this.lowers.size === 0) {
      this.listings.clear();
      this.stats.clear();
      return;
    }
    if (dropped.size > 0) {
      for (const lru of [this.listings, this.stats] as Array<LRUCache<string, object>>) {
        const gone: string[] = [];
        for (const k of lru.keys()) if (dropped.has(k.slice(0, k.indexOf('\0')))) gone.push(k);
        for (const k of gone) lru.delete(k);
      }
    }
    this.trim();
  }

  /** Drops the least recently used entries beyond the bounds. */
  trim(): void {
    const b = this.bound;
    while (this.listings.size > b.listings || this.listings.calculatedSize > b.listingBytes) this.listings.pop();
    while (this.stats.size > b.stats || this.stats.calculatedSize > b.statBytes) this.stats.pop();
  }

  /** lowers attached (for tests and statistics) */
  get lowerCount(): number {
    return this.lowers.size;
  }
}

let privates = 0;

/** Our namespace's mount table; undefined when it cannot be read. */
function mountTable(): readonly MountEntry[] | undefined {
  try {
    return readMounts();
  } catch {
    return undefined;
  }
}

/**
 * The names of a mount's lowers as the mount reached them (see the header), indexed by
 * layer index: the device and inode of a lower's root and the path given, for a lower
 * on a mount that shows the ids on disk. A lower on an idmapped mount (or where that
 * cannot be told) gets a name of its own, shared with no other mount: its ids are those
 * of a mapping that nothing here can see, and the temporary mount containers-storage
 * makes for it may be made again at the same path with another mapping once this mount
 * holds its clone (and the mount's id is reused then, too). The mount table is read
 * once per mount (`table`: the one the mount's start read), and looked into per lower
 * only when some mount is idmapped.
 */
export function lowerIdentities(lowers: readonly Layer[], table?: readonly MountEntry[]): Array<string | undefined> {
  const mounts = table ?? mountTable();
  // a table that cannot be read cannot tell an idmapped mount: no lower is shared then
  const idmapped = mounts === undefined || mounts.some((m) => m.options.includes('idmapped'));
  const ids: Array<string | undefined> = [];
  for (const l of lowers) {
    let shared = l.idShifted !== true;
    if (shared && idmapped) {
      const on = mounts && mountOf(l.path, mounts);
      shared = on !== undefined && !on.options.includes('idmapped');
    }
    if (!shared) {
      ids[l.index] = `private:${(privates++).toString(36)}`;
      continue;
    }
    const root = statAt(l.rootFd, '');
    ids[l.index] = `${root.devMajor}:${root.devMinor}:${root.ino}:${l.path}`;
  }
  return ids;
}

/** The pool of this process. */
export const lowerPool = new LowerPool();
