/**
 * The merge rules of a name lookup, one implementation for the mount (src/overlay,
 * through its caches) and for every offline reader of layers (the graph driver's Diff
 * and Changes, through a LayerStack): what a directory of the merged view shows at a
 * name, given where the directory is in the upper and in the lowers.
 *
 * Rules (those of kernel overlayfs):
 * - The upper shadows the lowers; a lower shadows the lowers below it.
 * - A whiteout (any form, see whiteout.ts) hides the name in every layer below.
 * - A non-directory ends the search. Below a directory, a non-directory of the same
 *   name is not part of the result (a file under a dir is not merged): the merge stops.
 * - Directories found in several layers merge; an opaque directory stops the descent.
 * - `<prefix>redirect` on a directory says where to continue in the layers below: an
 *   absolute path from the layer roots ("/a/b"), or a plain name in the same parent.
 *   An absolute redirect is walked in each lower, one component after the other, fd-
 *   relatively (access.ts): a component that is missing skips that layer; one that is
 *   not a directory (a symlink, a file, a whiteout) or that is hidden by an AUFS
 *   whiteout ends the search, as does an opaque component (after its layer): the
 *   kernel's walk of a redirect (ovl_lookup_layer) does the same. A symlink is never
 *   followed, whatever it points at.
 * - `.wh.*` names are never visible.
 * - A metacopy file (an upper regular file with `<prefix>metacopy`) takes its data from
 *   the lower file at its path, or at its `<prefix>redirect`.
 *
 * Names and paths are byte strings (index.ts).
 */
import { constants as fsc } from 'node:fs';
import { E, toErrno } from '../errors';
import { native, type Stat } from '../native';
import { basenameOf, dirnameOf, joinPath, tryGetXattr, tryStatAt, xattrPath, type DirFds, type Layer } from './access';
import type { AufsIndex } from './aufs';
import { dirMarks, isAufsName, type DirMarks, isWhiteout, PRIVATE_PREFIXES, readPrivateXattr } from './whiteout';

/** Where a directory (or the object itself) is in one lower layer. */
export interface LowerRef {
  layer: Layer;
  /** layer path of the object ('' = root) */
  path: string;
  /** for directories: holds xattr whiteouts */
  xwhiteouts: boolean;
  /**
   * for a regular file that is a metacopy file in this lower (an upper of kernel
   * overlayfs with metacopy=on, used as a lower): the lower file holding its data
   */
  data?: LowerRef;
}

export interface FoundLower extends LowerRef {
  stat: Stat;
}

/** Attributes of lower objects, possibly cached (lowers never change under a reader). */
export interface LowerStats {
  /** true when `name` is known to be absent from the lower directory `dir` */
  lowerLacks(layer: Layer, dir: string, name: string): boolean;
  lowerStat(layer: Layer, path: string, stat: () => Stat | null): Stat | null;
  /** lowerStat of `name` in the directory `dirfd`, at layer path `path` (no closure per call) */
  lowerStatAt(layer: Layer, path: string, dirfd: number, name: string): Stat | null;
  /** the xattr names of lower directory `path` when known (read ahead), else null: then listed */
  lowerXattrNames?(layer: Layer, path: string): readonly string[] | null;
}

/** What a merge reads through: the overlay's State, or a LayerStack (stack.ts). */
export interface MergeSource {
  readonly lowers: readonly Layer[];
  readonly dirs: DirFds;
  readonly aufs: AufsIndex;
  readonly caches: LowerStats;
  /** the xattr prefix a metacopy file is marked with */
  readonly prefix: string;
  /**
   * look for kernel metacopy files in the lowers at every small file (the mount's
   * metacopy=on, as the kernel follows them only then); else only sparse files
   */
  readonly followMetacopy?: boolean;
}

/** The upper directory a lookup looks into, when there is one. */
export interface UpperDir {
  layer: Layer;
  path: string;
  xwhiteouts: boolean;
  /**
   * what the reader already knows of the upper regular file `s` at `name`: false when
   * it knows that file is not a metacopy file (then its mark is not read), undefined
   * when it does not know
   */
  metacopyOf?: (name: string, s: Stat) => boolean | undefined;
}

export interface Resolved {
  /** S_IFMT bits */
  type: number;
  upper: Stat | null;
  upperXwhiteouts: boolean;
  lowers: FoundLower[];
  /** upper is a metacopy file whose data is lowers[0] */
  metacopy: boolean;
}

export function isDirStat(s: Stat): boolean {
  return (s.mode & fsc.S_IFMT) === fsc.S_IFDIR;
}

/**
 * What the merged directory (`upper` over `lowers`) shows at `name`; null when nothing.
 * The caller has checked that the directory itself exists in the merged view.
 */
export function resolveName(src: MergeSource, upper: UpperDir | null, lowers: readonly LowerRef[], name: string): Resolved | null {
  if (isAufsName(name) || name === '.' || name === '..') return null;
  let up: Stat | null = null;
  let upperXwhiteouts = false;
  let redirect: string | null = null;
  if (upper !== null) {
    const fd = src.dirs.get(upper.layer, upper.path);
    const s = tryStatAt(fd, name);
    if (s) {
      if (isWhiteout(fd, name, s, upper.xwhiteouts)) return null;
      if (!isDirStat(s)) return nonDir(src, lowers, fd, name, s, upper.metacopyOf?.(name, s));
      const marks = dirMarks(fd, name, null);
      up = s;
      upperXwhiteouts = marks.xwhiteouts;
      if (marks.opaque) return { type: fsc.S_IFDIR, upper: up, upperXwhiteouts, lowers: [], metacopy: false };
      redirect = marks.redirect;
    }
  }
  const found = walkLowers(src, lowers, name, redirect, up !== null);
  if (up === null && found.length === 0) return null;
  const top = up ?? (found[0] as FoundLower).stat;
  return { type: top.mode & fsc.S_IFMT, upper: up, upperXwhiteouts, lowers: found, metacopy: false };
}

/** An upper non-directory: itself, or a metacopy file with its data in a lower. */
function nonDir(src: MergeSource, lowers: readonly LowerRef[], fd: number, name: string, s: Stat, known: boolean | undefined): Resolved {
  const type = s.mode & fsc.S_IFMT;
  const plain: Resolved = { type, upper: s, upperXwhiteouts: false, lowers: [], metacopy: false };
  if (type !== fsc.S_IFREG || s.size === 0 || known === false) return plain;
  // (a metacopy file has no data blocks, but an xattr block may count in st_blocks)
  if (tryGetXattr(fd, name, `${src.prefix}metacopy`) === null) return plain;
  const r = readPrivateXattr(fd, name, 'redirect');
  const data = walkLowers(src, lowers, name, r === null ? null : r.toString('latin1'), false)[0];
  if (!data || (data.stat.mode & fsc.S_IFMT) !== fsc.S_IFREG) return plain;
  return { type, upper: s, upperXwhiteouts: false, lowers: [data], metacopy: true };
}

/**
 * The lower part of a lookup: where `name` of the directory whose lower parts are
 * `parentLowers` exists in the lowers, top first, after `redirect` (from the upper) and
 * whiteouts. `haveDir`: a directory was already found above, so only directories
 * continue the merge.
 */
export function walkLowers(
  src: MergeSource, parentLowers: readonly LowerRef[], name: string, redirect: string | null, haveDir: boolean,
): FoundLower[] {
  const out: FoundLower[] = [];
  // where the walk goes: `rel` in each parent lower directory, or the absolute path
  // `abs` after an absolute redirect (no closures or per-layer allocations: this runs
  // for every name a walk looks up)
  let abs: string | null = null;
  let rel = name;
  if (redirect !== null) ({ abs, rel } = redirected(abs, rel, redirect));
  let dirSeen = haveDir;
  for (const layer of src.lowers) {
    let dirPath: string;
    let base: string;
    let xw = false;
    let stopAfter = false;
    let fd: number | null;
    if (abs !== null) {
      dirPath = dirnameOf(abs);
      base = basenameOf(abs);
      if (base === '') break;
      const walked = walkAbsolute(src, layer, dirPath);
      if (walked === 'stop') break;
      if (walked === null) continue;
      ({ fd, stopAfter } = walked);
    } else {
      const pref = refIn(parentLowers, layer);
      if (pref === undefined) continue;
      dirPath = pref.path;
      base = rel;
      xw = pref.xwhiteouts;
      fd = src.dirs.tryGet(layer, dirPath);
      if (fd === null) continue;
    }
    if (src.aufs.hides(layer, dirPath, fd, base)) break;
    if (src.caches.lowerLacks(layer, dirPath, base)) {
      if (stopAfter) break;
      continue;
    }
    const path = joinPath(dirPath, base);
    const s = src.caches.lowerStatAt(layer, path, fd, base);
    if (!s) {
      if (stopAfter) break;
      continue;
    }
    if (isWhiteout(fd, base, s, xw)) break;
    if (!isDirStat(s)) {
      if (!dirSeen) {
        const found: FoundLower = { layer, path, stat: s, xwhiteouts: false };
        const data = metacopyData(src, layer, parentLowers, fd, base, s, abs === null ? rel : `/${abs as string}`);
        if (data) found.data = data;
        out.push(found);
      }
      break;
    }
    const marks = lowerDirMarks(src, layer, path, fd, base);
    out.push({ layer, path, stat: s, xwhiteouts: marks.xwhiteouts });
    dirSeen = true;
    if (marks.opaque || stopAfter) break;
    if (marks.redirect !== null) ({ abs, rel } = redirected(abs, rel, marks.redirect));
  }
  return out;
}

/** Where the walk goes after redirect `r` (absolute, or a name in the same parent). */
function redirected(abs: string | null, rel: string, r: string): { abs: string | null; rel: string } {
  if (r.startsWith('/')) return { abs: r.replace(/^\/+/, ''), rel };
  if (abs !== null) return { abs: joinPath(dirnameOf(abs), r), rel };
  return { abs, rel: r };
}

/** The part of `refs` in `layer`, if any. */
function refIn(refs: readonly LowerRef[], layer: Layer): LowerRef | undefined {
  for (const r of refs) if (r.layer === layer) return r;
  return undefined;
}

/** The overlay marks of lower directory `path` (`base` in `fd`), with its AUFS opaque mark. */
function lowerDirMarks(src: MergeSource, layer: Layer, path: string, fd: number, base: string): DirMarks {
  return dirMarks(fd, base, () => src.aufs.opaque(layer, path, fd, base, () => src.dirs.tryGet(layer, path)),
    src.caches.lowerXattrNames?.(layer, path) ?? null);
}

/** bytes a metacopy file may have allocated: one xattr block (ext4: one 4 KiB block) */
const METACOPY_MAX_ALLOC = 4096;

/**
 * A regular file of a lower that is a kernel metacopy file (`overlay.metacopy` in either
 * namespace: an upper of kernel overlayfs mounted with metacopy=on, used as a lower)
 * has metadata only; its data is the file found below it, at its own `overlay.redirect`
 * when it has one, else where the lookup was going (`at`). Undefined for other files.
 * Looked at: files with fewer bytes allocated than their size (no syscall for the
 * others) and, with `followMetacopy` (metacopy=on, which the kernel needs to follow
 * them at all: EPERM without), files with at most an xattr block allocated (one
 * listxattr each: measured 20k small lower files looked up 1.4x slower, hence not
 * by default).
 */
function metacopyData(
  src: MergeSource, layer: Layer, parentLowers: readonly LowerRef[], fd: number, base: string, s: Stat, at: string,
): LowerRef | undefined {
  if ((s.mode & fsc.S_IFMT) !== fsc.S_IFREG || Number(s.size) === 0) return undefined;
  // a metacopy file holds no data: at most an xattr block is allocated. A file with more
  // has its data and costs no syscall; a small one costs one listxattr.
  const allocated = Number(s.blocks) * 512;
  if (allocated >= Number(s.size) && (src.followMetacopy !== true || allocated > METACOPY_MAX_ALLOC)) return undefined;
  const { path, follow } = xattrPath(fd, base);
  let names: string[];
  try {
    names = native.listxattr(path, follow);
  } catch {
    return undefined;
  }
  if (!PRIVATE_PREFIXES.some((p) => names.includes(`${p}metacopy`))) return undefined;
  const below = src.lowers.slice(src.lowers.indexOf(layer) + 1);
  if (below.length === 0) return undefined;
  const own = readPrivateXattr(fd, base, 'redirect');
  const rest = walkLowers({ ...src, lowers: below }, parentLowers, base, own === null ? at : own.toString('latin1'), false)[0];
  if (!rest || (rest.stat.mode & fsc.S_IFMT) !== fsc.S_IFREG) return undefined;
  return rest.data ?? { layer: rest.layer, path: rest.path, xwhiteouts: false };
}

/**
 * The directory `dirPath` of an absolute redirect in one lower, walked as the kernel
 * does: null when a component is missing (the next layer is tried), 'stop' when one is
 * not a plain directory or is hidden by an AUFS whiteout (the search ends), else its fd
 * and whether a component on the way is opaque (the search ends after this layer).
 */
function walkAbsolute(src: MergeSource, layer: Layer, dirPath: string): { fd: number; stopAfter: boolean } | 'stop' | null {
  let fd: number;
  try {
    fd = src.dirs.get(layer, dirPath);
  } catch (e) {
    const errno = toErrno(e);
    if (errno === E.ENOENT) return null;
    if (errno === E.ENOTDIR || errno === E.ELOOP || errno === E.EXDEV) return 'stop';
    throw e;
  }
  if (dirPath === '') return { fd, stopAfter: false };
  // the components on the way: AUFS whiteouts and opaque marks (rare: redirects only)
  let stopAfter = false;
  let at = '';
  for (const part of dirPath.split('/')) {
    const parentFd = src.dirs.get(layer, at);
    const path = joinPath(at, part);
    if (src.aufs.hides(layer, at, parentFd, part)) return 'stop';
    const marks = dirMarks(parentFd, part, () => src.aufs.opaque(layer, path, parentFd, part, () => src.dirs.tryGet(layer, path)));
    if (marks.opaque) stopAfter = true;
    at = path;
  }
  return { fd: src.dirs.get(layer, dirPath), stopAfter };
}
