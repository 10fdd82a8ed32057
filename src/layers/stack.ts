/**
 * A stack of layers opened for reading outside a mount: the graph driver's Diff, Changes
 * and DiffSize, and any other reader that walks a merged view offline.
 *
 * It reads exactly as the mount does: every access starts at a layer root fd and goes
 * through the dir-fd cache (access.ts: openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, a
 * final name never followed), and every name is resolved by the merge rules of
 * merge.ts, the mount's own. Listings go through the mount's own listing code
 * (listing.ts).
 *
 * Nothing is cached across layers' changes: a stack is opened for one walk and closed.
 * Fds from `dirs` are the cache's: use at once, never across an await (access.ts).
 */
import { constants as fsc } from 'node:fs';
import { C, native, type DirEntry, type Stat } from '../native';
import { DirFds, basenameOf, dirnameOf, joinPath, openDirAt, statAt, tryGetXattr, tryStatAt, xattrPath, type Layer } from './access';
import { AufsIndex } from './aufs';
import { mergeListing, type ListedDir, type ListingReader } from './listing';
import { isDirStat, resolveName, type LowerRef, type LowerStats, type MergeSource, type Resolved, type UpperDir } from './merge';
import { AUFS_PREFIX, dirMarks, isWhiteout } from './whiteout';
import { visibleXattrName } from './xattr-names';

/** Where a directory of the merged view is: its upper part (if any) and its lower parts. */
export interface MergedDir {
  upper: UpperDir | null;
  lowers: LowerRef[];
}

/** One entry of an upper directory, as the upper itself holds it. */
export interface UpperEntry {
  name: string;
  stat: Stat;
  /** a whiteout (any form): the name is gone from the layers below */
  whiteout: boolean;
  /** a directory with the opaque mark */
  opaque: boolean;
  /** a directory with a redirect (renamed from a lower) */
  redirect: boolean;
}

/** Open directory fds kept by one stack's walk (a walk goes depth first: a few per level). */
const STACK_DIR_FDS = 1024;
/** lower directories whose AUFS marks one walk remembers */
const STACK_AUFS_DIRS = 4096;

const NO_CACHE: LowerStats = {
  lowerLacks: () => false,
  lowerStat: (_l, _p, stat) => stat(),
  lowerStatAt: (_l, _p, dirfd, name) => tryStatAt(dirfd, name),
};

/** A host path given as a JS string (UTF-8) in the byte form the addon takes. */
const hostBytes = (p: string): string => Buffer.from(p, 'utf8').toString('latin1');

function openLayer(index: number, path: string, upper: boolean): Layer {
  const rootFd = native.openat(C.AT_FDCWD, hostBytes(path), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  try {
    const s = statAt(rootFd, '');
    return { index, path, rootFd, devMajor: s.devMajor, devMinor: s.devMinor, upper };
  } catch (e) {
    native.close(rootFd);
    throw e;
  }
}

const byBytes = (a: { name: string }, b: { name: string }): number =>
  Buffer.compare(Buffer.from(a.name, 'latin1'), Buffer.from(b.name, 'latin1'));

export class LayerStack implements MergeSource {
  readonly dirs = new DirFds(STACK_DIR_FDS, { idleMs: 0 });
  readonly aufs = new AufsIndex(STACK_AUFS_DIRS, { listing: (_l, _p, read) => read() });
  readonly caches = NO_CACHE;

  private constructor(readonly upper: Layer | null, readonly lowers: Layer[], readonly prefix: string) {}

  /**
   * Opens `upper` (may be null) over `lowers` (top first), host paths as JS strings.
   * `prefix`: the xattr prefix the layers were written with (both are read).
   */
  static open(upper: string | null, lowers: readonly string[], prefix: string): LayerStack {
    const opened: Layer[] = [];
    try {
      const base = upper === null ? 0 : 1;
      const up = upper === null ? null : openLayer(0, upper, true);
      if (up) opened.push(up);
      for (const [i, p] of lowers.entries()) opened.push(openLayer(base + i, p, false));
      return new LayerStack(up, opened.filter((l) => !l.upper), prefix);
    } catch (e) {
      for (const l of opened) native.close(l.rootFd);
      throw e;
    }
  }

  close(): void {
    this.dirs.clear();
    this.aufs.clear();
    if (this.upper) native.close(this.upper.rootFd);
    for (const l of this.lowers) native.close(l.rootFd);
  }

  /** The root of the merged view (`withUpper` false: the view of the lowers alone). */
  root(withUpper = true): MergedDir {
    return {
      upper: withUpper && this.upper ? { layer: this.upper, path: '', xwhiteouts: false } : null,
      lowers: this.lowers.map((layer) => ({ layer, path: '', xwhiteouts: false })),
    };
  }

  /** What directory `dir` of the merged view shows at `name` (merge.ts), null when nothing. */
  lookup(dir: MergedDir, name: string): Resolved | null {
    return resolveName(this, dir.upper, dir.lowers, name);
  }

  /** The merged directory `name` of `dir`, resolved as `r` (a directory). */
  child(dir: MergedDir, name: string, r: Resolved): MergedDir {
    const upper = r.upper && dir.upper
      ? { layer: dir.upper.layer, path: joinPath(dir.upper.path, name), xwhiteouts: r.upperXwhiteouts }
      : null;
    return { upper, lowers: r.lowers.map(({ layer, path, xwhiteouts }) => ({ layer, path, xwhiteouts })) };
  }

  /** The raw entries of directory `path` of `layer`, '.' and '..' excluded. */
  list(layer: Layer, path: string): DirEntry[] {
    const fd = openDirAt(this.dirs.get(layer, dirnameOf(path)), basenameOf(path), layer);
    try {
      return native.getdents(fd).filter((e) => e.name !== '.' && e.name !== '..');
    } finally {
      native.close(fd);
    }
  }

  /** The names the merged directory shows, in byte order (the mount's readdir rules, listing.ts). */
  names(dir: MergedDir): string[] {
    const dirs: ListedDir[] = dir.upper ? [dir.upper, ...dir.lowers] : [...dir.lowers];
    const out: { name: string }[] = [];
    const reader: ListingReader = { entries: (layer, path) => this.list(layer, path), dirFd: (layer, path) => this.dirs.get(layer, path) };
    mergeListing(dirs, reader, (_dir, e) => {
      out.push({ name: e.name });
    });
    return out.sort(byBytes).map((e) => e.name);
  }

  /** The entries the upper directory `dir` itself holds, whiteouts included, in byte order. */
  upperEntries(dir: UpperDir): UpperEntry[] {
    const out: UpperEntry[] = [];
    for (const e of this.list(dir.layer, dir.path)) {
      // `.wh.*` names in an upper are hidden, never interpreted (whiteout.ts)
      if (e.name.startsWith(AUFS_PREFIX)) continue;
      const fd = this.dirs.get(dir.layer, dir.path);
      const stat = statAt(fd, e.name);
      const whiteout = isWhiteout(fd, e.name, stat, dir.xwhiteouts);
      const marks = !whiteout && isDirStat(stat) ? dirMarks(fd, e.name, null) : null;
      out.push({ name: e.name, stat, whiteout, opaque: marks?.opaque ?? false, redirect: (marks?.redirect ?? null) !== null });
    }
    return out.sort(byBytes);
  }

  /** statx of the object at `path` of `layer`, never following it. */
  stat(layer: Layer, path: string): Stat {
    return statAt(this.dirs.get(layer, dirnameOf(path)), basenameOf(path));
  }

  /** An fd to read the regular file at `path` of `layer` (the caller closes it). */
  openRead(layer: Layer, path: string): number {
    return native.openat(this.dirs.get(layer, dirnameOf(path)), basenameOf(path), fsc.O_RDONLY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  }

  /** The target of the symlink at `path` of `layer`, as bytes. */
  readlink(layer: Layer, path: string): string {
    return native.readlinkat(this.dirs.get(layer, dirnameOf(path)), basenameOf(path));
  }

  /**
   * The xattrs the mount shows for the object at `path` of `layer` (names in byte
   * order): the private overlay ones left out, escaped ones under their user name.
   */
  xattrs(layer: Layer, path: string): Map<string, Buffer> {
    const dirfd = this.dirs.get(layer, dirnameOf(path));
    const name = basenameOf(path);
    const { path: at, follow } = xattrPath(dirfd, name);
    let names: string[];
    try {
      names = native.listxattr(at, follow);
    } catch {
      return new Map();
    }
    const out = new Map<string, Buffer>();
    for (const n of names.sort((a, b) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1')))) {
      const shown = visibleXattrName(this.prefix, n);
      if (shown === null) continue;
      const v = tryGetXattr(dirfd, name, n);
      if (v !== null) out.set(shown, v);
    }
    return out;
  }

  /** `security.capability` of the object (compared by Changes, as Docker does), or null. */
  capability(layer: Layer, path: string): Buffer | null {
    return tryGetXattr(this.dirs.get(layer, dirnameOf(path)), basenameOf(path), 'security.capability');
  }
}
