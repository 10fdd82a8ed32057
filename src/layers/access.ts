/**
 * Layer roots and safe path resolution inside them.
 *
 * A layer is a directory tree: the upper (writable, optional) and the lowers (read-only,
 * top first). Nothing here ever builds a joined host path: every access starts at the
 * layer's root fd, reaches the *parent directory* of the object with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) and then uses
 * the *at syscalls with AT_SYMLINK_NOFOLLOW (or O_NOFOLLOW) on the final name. A hostile
 * layer with `etc -> /` or `x -> ../../..` therefore cannot make us touch anything
 * outside itself: a symlink in the middle of a path fails with ELOOP/EXDEV, a symlink as
 * the final name is treated as the symlink itself.
 *
 * Relative paths ("layer paths") are byte strings with '/' separators and no leading
 * slash; '' is the layer root.
 *
 * The parent-dir fds are cached (LRU, the fd is closed when an entry is evicted). An
 * eviction can close an fd taken earlier: every `get` of a directory not in the cache
 * (a lookup walk, a listing) may evict another entry. So a user takes an fd right
 * before it uses it, after any other walk, and never keeps it across an await. Entries
 * are dropped when a directory in the upper is renamed or removed (`invalidate`), so a
 * cached fd never points at a directory that moved, and closed once they have not been
 * used for a while (`idleMs`), so an idle mount holds a handful of fds, not one per
 * directory it ever walked.
 */
import { constants as fsc } from 'node:fs';
import createDebug from 'debug';
import { LRUCache } from 'lru-cache';
import { E, fail, toErrno } from '../errors';
import { C, native, type Stat } from '../native';

const log = createDebug('stratafs:overlay');

export interface Layer {
  /** 0 = upper when there is one; lowers follow, top first */
  readonly index: number;
  /** host path as given in the configuration (only for messages and statfs) */
  readonly path: string;
  /** O_PATH directory fd of the layer root */
  readonly rootFd: number;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly upper: boolean;
  /**
   * reached through an idmapped mount (containers-storage hands lowers so to a mount
   * program for `--uidmap` containers): its ids are already the ids to show, the
   * uid/gid mapping of the mount does not apply to them (overlay/idmap.ts)
   */
  readonly idShifted?: boolean;
}

/** the last key layerKey made, and what it was made of */
let lastKeyIndex = -1;
let lastKeyPath = '';
let lastKey = '';

/**
 * The cache key of `path` in `layer` (`index NUL path`), one string for all the caches
 * of layer paths (directory fds, listings, attributes, AUFS marks). A lookup asks
 * several of them about the same parent directory in a row: the last key is reused
 * rather than built (and hashed) again for each.
 */
export function layerKey(layer: Layer, path: string): string {
  if (layer.index !== lastKeyIndex || path !== lastKeyPath) {
    lastKeyIndex = layer.index;
    lastKeyPath = path;
    lastKey = `${layer.index}\0${path}`;
  }
  return lastKey;
}

export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

export function dirnameOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export function basenameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Every ancestor path of `path`, itself included ('' excluded). */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  out.push(path);
  return out;
}

function openBeneath(dirfd: number, path: string): number {
  return native.openat2(dirfd, path, C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0,
    C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS);
}

/** An fd in the cache and the sweep tick it was last used in. */
interface DirFd {
  readonly fd: number;
  tick: number;
}

export interface DirFdsOptions {
  /**
   * An entry not used for this long is closed (within half as long again): a periodic
   * sweep on an unref'd timer, running only while the cache holds entries. 0 keeps
   * entries until they are evicted or invalidated.
   */
  idleMs?: number;
}

/** How long a directory fd may sit unused in the cache (DirFdsOptions.idleMs). */
export const DIR_FD_IDLE_MS = 30_000;

/** Sweeps per idle period: an entry idle for SWEEP_TICKS sweeps is closed. */
const SWEEP_TICKS = 2;

/**
 * The directory-fd cache of all layers. `below` indexes the cached keys by every
 * ancestor directory, so invalidating a directory costs the entries under it, not a
 * scan of the whole cache.
 *
 * Expiry costs a hit one store: an entry remembers the sweep tick it was last used in.
 * A sweep (every idleMs / SWEEP_TICKS) advances the tick and closes, from the least
 * recently used end, the entries last used more than SWEEP_TICKS ticks ago; it stops at
 * the first younger one, as the LRU order is the order of last use. Sweeps run between
 * event-loop tasks, never while a caller holds an fd it just took.
 */
export class DirFds {
  private readonly cache: LRUCache<string, DirFd>;
  private readonly below = new Map<string, Set<string>>();
  private readonly sweepMs: number;
  private timer: NodeJS.Timeout | undefined;
  private tick = 0;
  constructor(max: number, options: DirFdsOptions = {}) {
    const idleMs = options.idleMs ?? DIR_FD_IDLE_MS;
    this.sweepMs = idleMs > 0 ? Math.max(1, Math.ceil(idleMs / SWEEP_TICKS)) : 0;
    this.cache = new LRUCache<string, DirFd>({
      // bounded by a size of 1 per entry, not `max`: `max` allocates the LRU's index
      // arrays for that many entries up front, which every idle mount would pay for
      maxSize: max,
      sizeCalculation: () => 1,
      dispose: (entry, key) => {
        this.unindex(key);
        try {
          native.close(entry.fd);
        } catch {
          // already closed: nothing to do
        }
      },
    });
  }

  private index(layer: Layer, path: string, key: string): void {
    for (const a of ancestors(path)) {
      const k = `${layer.index}\0${a}`;
      let set = this.below.get(k);
      if (!set) this.below.set(k, (set = new Set()));
      set.add(key);
    }
  }

  private unindex(key: string): void {
    const sep = key.indexOf('\0');
    const layerPart = key.slice(0, sep);
    for (const a of ancestors(key.slice(sep + 1))) {
      const k = `${layerPart}\0${a}`;
      const set = this.below.get(k);
      if (!set) continue;
      set.delete(key);
      if (set.size === 0) this.below.delete(k);
    }
  }

  /**
   * O_PATH fd of directory `path` inside `layer` (the root fd for ''). Throws FsError
   * ENOENT/ENOTDIR when it is not there, ELOOP/EXDEV when a component is a symlink.
   * The fd belongs to the cache: use it at once, never close it, never keep it across
   * an await.
   */
  get(layer: Layer, path: string): number {
    if (path === '') return layer.rootFd;
    const key = layerKey(layer, path);
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      hit.tick = this.tick;
      return hit.fd;
    }
    let fd: number;
    try {
      fd = openBeneath(layer.rootFd, path);
    } catch (e) {
      // a path longer than PATH_MAX: one step from its parent's fd (cached on its own)
      if (toErrno(e) !== E.ENAMETOOLONG || !path.includes('/')) fail(toErrno(e));
      try {
        fd = openBeneath(this.get(layer, dirnameOf(path)), basenameOf(path));
      } catch (e2) {
        fail(toErrno(e2));
      }
    }
    this.cache.set(key, { fd, tick: this.tick });
    this.index(layer, path, key);
    if (this.timer === undefined && this.sweepMs > 0) {
      this.timer = setInterval(() => this.sweepSafely(), this.sweepMs);
      this.timer.unref();
    }
    return fd;
  }

  /** Like get, but null when the directory is not there (or not a plain directory). */
  tryGet(layer: Layer, path: string): number | null {
    try {
      return this.get(layer, path);
    } catch (e) {
      const errno = toErrno(e);
      if (errno === E.ENOENT || errno === E.ENOTDIR || errno === E.ELOOP || errno === E.EXDEV) return null;
      throw e;
    }
  }

  /** Forgets `path` and everything below it in `layer` (after a rename or removal). */
  invalidate(layer: Layer, path: string): void {
    if (path === '') {
      for (const key of [...this.cache.keys()]) if (key.startsWith(`${layer.index}\0`)) this.cache.delete(key);
      return;
    }
    const set = this.below.get(`${layer.index}\0${path}`);
    if (!set) return;
    for (const key of [...set]) this.cache.delete(key);
  }

  /** the timer's callback: an error must not escape a timer (it would end the daemon) */
  private sweepSafely(): void {
    try {
      this.sweep();
    } catch (e) {
      log('directory-fd sweep failed: %s', (e as Error).message);
    }
  }

  /**
   * One step of the expiry (the timer calls it; tests may too): advances the tick and
   * closes the entries last used more than SWEEP_TICKS ticks ago. Returns how many it
   * closed. The timer stops once the cache is empty; the next miss starts it again.
   */
  sweep(): number {
    this.tick++;
    const stale: string[] = [];
    for (const entry of this.cache.rentries()) {
      const [key, value] = entry as [string, DirFd];
      if (this.tick - value.tick <= SWEEP_TICKS) break;
      stale.push(key);
    }
    for (const key of stale) this.cache.delete(key);
    if (this.cache.size === 0) this.stopTimer();
    return stale.length;
  }

  /** Closes the least recently used half of the cached fds (the fd table is full). */
  shed(): number {
    const n = Math.ceil(this.cache.size / 2);
    const victims: string[] = [];
    for (const key of this.cache.rkeys()) {
      if (victims.length >= n) break;
      victims.push(key);
    }
    for (const key of victims) this.cache.delete(key);
    if (this.cache.size === 0) this.stopTimer();
    return victims.length;
  }

  /** Number of cached fds (the layer root fds are not counted). */
  get size(): number {
    return this.cache.size;
  }

  clear(): void {
    this.cache.clear();
    this.below.clear();
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** statx of `name` in dirfd without following a final symlink; '' = the dir itself. */
export function statAt(dirfd: number, name: string): Stat {
  return native.statx(dirfd, name, C.AT_SYMLINK_NOFOLLOW | (name === '' ? C.AT_EMPTY_PATH : 0));
}

/** statAt, or null when the name does not exist. */
export function tryStatAt(dirfd: number, name: string): Stat | null {
  const s = native.statxOrErrno(dirfd, name, C.AT_SYMLINK_NOFOLLOW | (name === '' ? C.AT_EMPTY_PATH : 0));
  if (typeof s !== 'number') return s;
  if (s === E.ENOENT || s === E.ENOTDIR) return null;
  return fail(s);
}

/**
 * `/proc/self/fd/<fd>` (or `name` inside it): reaches what an fd we hold stands for, for
 * the syscalls that take a path only (xattrs) or need one for an O_PATH fd (utimensat,
 * fchmodat). The magic link of the fd itself must be followed; a final name never.
 */
export function procFdPath(fd: number, name = ''): string {
  return name === '' ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * Path for the xattr syscalls of `name` inside the directory fd (see procFdPath), with
 * the follow flag to pass with it.
 */
export function xattrPath(dirfd: number, name: string): { path: string; follow: boolean } {
  return { path: procFdPath(dirfd, name), follow: name === '' };
}

/** Layers where O_NOATIME was refused once (openNoatime). */
const noatimeRefused = new WeakSet<Layer>();

/**
 * Opens with `how | O_NOATIME`, as kernel overlayfs opens the real files and
 * directories it reads: reading a lower must not move its atime (a lower is shared,
 * read-only) nor dirty its inode. O_NOATIME needs the file's owner or CAP_FOWNER
 * (EPERM otherwise, e.g. an unprivileged daemon and a file of someone else): then it
 * is opened as it is. The refusal is remembered for `layer` (as copy-up remembers a
 * refused FICLONE), so its later opens make one openat, not a refused one first: a
 * daemon refused once is refused for most of a layer (a layer's files mostly have one
 * owner). A file of that layer the daemon does own is then opened without O_NOATIME
 * too, which moves no atime where the layer is read through its noatime clone (lowers,
 * mount.ts) or on a noatime mount.
 */
export function openNoatime(open: (flags: number) => number, how: number, layer?: Layer): number {
  if (layer !== undefined && noatimeRefused.has(layer)) return open(how & ~C.O_NOATIME);
  try {
    return open(how | C.O_NOATIME);
  } catch (e) {
    if (toErrno(e) !== E.EPERM) throw e;
    const fd = open(how & ~C.O_NOATIME);
    if (layer !== undefined) noatimeRefused.add(layer);
    return fd;
  }
}

/**
 * Opens directory `name` in dirfd ('' = dirfd itself) for reading its entries or
 * syncing it, never following a final symlink, O_NOATIME where allowed (openNoatime;
 * `layer`: the layer it is in, where known).
 * The caller closes the fd.
 */
export function openDirAt(dirfd: number, name: string, layer?: Layer): number {
  const at = name === '' ? '.' : name;
  return openNoatime((f) => native.openat(dirfd, at, f, 0), fsc.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, layer);
}

/** getxattr or null when absent / unsupported. */
export function tryGetXattr(dirfd: number, name: string, attr: string): Buffer | null {
  const { path, follow } = xattrPath(dirfd, name);
  const v = native.getxattrOrErrno(path, attr, follow);
  if (typeof v !== 'number') return v;
  if (v === E.ENODATA || v === E.EOPNOTSUPP || v === E.ENOENT || v === E.EPERM) return null;
  return fail(v);
}
