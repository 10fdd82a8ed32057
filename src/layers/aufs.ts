/**
 * AUFS whiteouts in the lowers, read once per lower directory.
 *
 * A lookup must know whether `.wh.<name>` hides a name in a lower directory, and
 * whether a lower directory holds `.wh..wh..opq` (see whiteout.ts). Asking with a
 * statx per lower layer and per name, and an open of every lower directory met to look
 * for the opaque marker, made those checks most of a lookup's syscalls, while almost
 * no layer has such entries. Lowers never change under a mount, so the first lookup in
 * a lower directory lists it once (getdents) and keeps what it found: the hidden names
 * (only for the rare directory that has any) and the opaque marker. The index is an
 * LRU bounded in entries; an evicted directory is simply listed again. The listing is
 * read through a ListingSource (the overlay's listing cache, src/overlay/cache.ts): the
 * readdir of a directory a lookup went through, and the lookups in a directory just
 * listed, read it once between them.
 *
 * A directory that cannot be listed (no read permission for an unprivileged daemon)
 * falls back to the per-name checks, which need search permission only.
 */
import { LRUCache } from 'lru-cache';
import { native, type DirEntry } from '../native';
import { layerKey, openDirAt, tryStatAt, type Layer } from './access';
import { AUFS_OPAQUE, AUFS_PREFIX } from './whiteout';

/**
 * Where the index reads listings through: the overlay's listing cache (so a lookup and
 * a readdir of one directory list it once between them), or a plain read.
 */
export interface ListingSource {
  listing(layer: Layer, path: string, read: () => DirEntry[]): DirEntry[];
}

interface AufsDir {
  /** names hidden by `.wh.<name>` entries, null when there are none */
  hidden: Set<string> | null;
  /** holds `.wh..wh..opq` */
  opaque: boolean;
}

const NONE: AufsDir = { hidden: null, opaque: false };

/** The raw entries of directory `name` in `dirfd` ('' = itself); throws when it cannot be listed. */
function list(dirfd: number, name: string): DirEntry[] {
  const fd = openDirAt(dirfd, name);
  try {
    return native.getdents(fd).filter((e) => e.name !== '.' && e.name !== '..');
  } finally {
    native.close(fd);
  }
}

/** The AUFS entries among a directory's entries. */
function scan(entries: DirEntry[]): AufsDir {
  let d = NONE;
  for (const e of entries) {
    if (!e.name.startsWith(AUFS_PREFIX)) continue;
    if (d === NONE) d = { hidden: null, opaque: false };
    if (e.name === AUFS_OPAQUE) d.opaque = true;
    else if (!e.name.startsWith(AUFS_PREFIX + AUFS_PREFIX)) (d.hidden ??= new Set()).add(e.name.slice(AUFS_PREFIX.length));
  }
  return d;
}

export class AufsIndex {
  private readonly dirs: LRUCache<string, AufsDir>;

  /** `caches`: the listing is read through the listing cache, so a readdir that follows reuses it */
  constructor(max: number, private readonly caches: ListingSource) {
    // counted with sizes of 1 rather than `max`, which allocates for `max` entries up front
    this.dirs = new LRUCache<string, AufsDir>({ maxSize: max, sizeCalculation: () => 1 });
  }

  private get(layer: Layer, path: string, dirfd: number, name: string): AufsDir | null {
    const key = layerKey(layer, path);
    const hit = this.dirs.get(key);
    if (hit !== undefined) return hit;
    let d: AufsDir;
    try {
      d = scan(this.caches.listing(layer, path, () => list(dirfd, name)));
    } catch {
      return null;
    }
    this.dirs.set(key, d);
    return d;
  }

  /** Does `.wh.<name>` exist in the lower directory at `path` of `layer` (O_PATH fd `dirfd`)? */
  hides(layer: Layer, path: string, dirfd: number, name: string): boolean {
    const d = this.get(layer, path, dirfd, '');
    if (d === null) return tryStatAt(dirfd, AUFS_PREFIX + name) !== null;
    return d.hidden !== null && d.hidden.has(name);
  }

  /**
   * Is the lower directory at `path` (`name` in `parentFd`) AUFS-opaque? `ownFd` gives
   * an fd of the directory itself for the fallback.
   */
  opaque(layer: Layer, path: string, parentFd: number, name: string, ownFd: () => number | null): boolean {
    const d = this.get(layer, path, parentFd, name);
    if (d !== null) return d.opaque;
    const fd = ownFd();
    return fd !== null && tryStatAt(fd, AUFS_OPAQUE) !== null;
  }

  clear(): void {
    this.dirs.clear();
  }
}
