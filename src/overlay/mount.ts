/**
 * Turning an OverlayConfig into a ready State: validation with one-line StratafsErrors,
 * layer root fds, the staging dir `${workdir}/work` (created when missing and emptied of
 * leftovers, as kernel overlayfs does with its work dir), the xattr probe and the root
 * node.
 *
 * The layer paths given in the configuration are trusted (they may be symlinks, e.g.
 * podman's `l/ID -> ../ID/diff`); everything *inside* a layer is not (src/layers/access.ts).
 */
import { constants as fsc, realpathSync } from 'node:fs';
import { E, StratafsError, toErrno, errnoName } from '../errors';
import { C, native } from '../native';
import type { OverlayConfig } from './config';
import { onIdmappedMount } from './idmap';
import { mountOf } from '../mountinfo';
import { removeTree } from './copyup';
import { Node, type LowerRef } from './inodes';
import { DirFds, procFdPath, statAt, type Layer } from '../layers/access';
import { openLayerTree } from '../layers/tree';
import { dropAllKept, releaseFd } from './handle-fds';
import { State } from './state';

const WORK = 'work';

/** The real path of layer dir `p`: the one the mount's start resolved, else resolved now. */
function realOf(config: OverlayConfig, p: string): string {
  return config.startReads?.realPaths?.get(p) ?? realpathSync(p);
}

function layerError(path: string, why: string): StratafsError {
  return new StratafsError('STRATAFS_ERR_LAYER', `${path}: ${why}`);
}

function explain(e: unknown): string {
  const errno = toErrno(e);
  if (errno === E.ENOENT) return 'does not exist';
  if (errno === E.ENOTDIR) return 'is not a directory';
  if (errno === E.EACCES || errno === E.EPERM) return 'is not readable';
  return errnoName(errno);
}

/**
 * A lower layer's root: the tree at `path` without the mounts below it where this
 * process may clone it (src/layers/tree.ts), so that a mount inside the layer, this
 * process's own included, is never crossed; else the plain root fd.
 */
function openLowerRoot(path: string): number {
  const fd = openRoot(path, 'lowerdir');
  let tree: number | null;
  try {
    tree = openLayerTree(path);
  } catch (e) {
    native.close(fd);
    throw layerError(path, `lowerdir ${explain(e)}`);
  }
  if (tree === null) return fd;
  native.close(fd);
  quietLower(tree);
  return tree;
}

/**
 * Makes a lower's private clone noatime (kernel overlayfs clones its lowers noatime too):
 * nothing read through it moves the lower's atimes or dirties a lower inode, FUSE
 * passthrough reads included (the kernel opens their backing files on the path of our
 * fd, without our O_NOATIME). Where it is refused the clone stays as it is (lower files
 * and directories are still opened O_NOATIME where the kernel allows).
 */
function quietLower(tree: number): void {
  try {
    native.mountSetattr(tree, '', C.AT_EMPTY_PATH, C.MOUNT_ATTR_NOATIME, C.MOUNT_ATTR__ATIME);
  } catch {
    // best effort, as above
  }
}

/** Opens a layer root (O_PATH) after checking it is a readable directory. */
function openRoot(path: string, what: string): number {
  if (!path.startsWith('/')) throw layerError(path, `${what} must be an absolute path`);
  let fd: number;
  try {
    fd = native.openat(C.AT_FDCWD, path, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  } catch (e) {
    throw layerError(path, `${what} ${explain(e)}`);
  }
  try {
    native.close(native.openat(C.AT_FDCWD, path, fsc.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0));
  } catch (e) {
    native.close(fd);
    throw layerError(path, `${what} ${explain(e)}`);
  }
  return fd;
}

function makeLayer(index: number, path: string, rootFd: number, upper: boolean, idShifted = false): Layer {
  const s = statAt(rootFd, '');
  return { index, path, rootFd, devMajor: s.devMajor, devMinor: s.devMinor, upper, idShifted };
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);
}

type XattrPrefix = OverlayConfig['xattrPrefix'];

function canSetXattr(fd: number, name: string): number {
  try {
    native.setxattr(procFdPath(fd), name, Buffer.from('y'), 0, true);
    native.removexattr(procFdPath(fd), name, true);
    return 0;
  } catch (e) {
    return toErrno(e);
  }
}

/**
 * The namespace of the overlay marks on this upper: the configured one when the work dir
 * takes it; `trusted.*` refused for want of privilege (EPERM: uid 0 of a user namespace,
 * as rootless podman runs us) falls back to `user.overlay.*`, as kernel overlayfs does
 * with `userxattr`. Anything else is an error.
 */
function probeXattrs(config: OverlayConfig, wfd: number): XattrPrefix {
  const first = canSetXattr(wfd, `${config.xattrPrefix}stratafs-probe`);
  if (first === 0) return config.xattrPrefix;
  if (first === E.EPERM && config.xattrPrefix === 'trusted.overlay.' && canSetXattr(wfd, 'user.overlay.stratafs-probe') === 0) {
    return 'user.overlay.';
  }
  throw new StratafsError('STRATAFS_ERR_XATTR',
    `${config.workdir as string}: cannot set ${config.xattrPrefix}* xattrs (${errnoName(first)}); ` +
    'the upper filesystem must support them');
}

/** Empties the staging dir of what an earlier mount left behind. */
function emptyWorkDir(workFd: number): void {
  const fd = native.openat(workFd, '.', fsc.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  try {
    for (const e of native.getdents(fd)) {
      if (e.name === '.' || e.name === '..') continue;
      const s = statAt(fd, e.name);
      if ((s.mode & fsc.S_IFMT) === fsc.S_IFDIR) removeTree(fd, e.name);
      else native.unlinkat(fd, e.name, 0);
    }
  } finally {
    native.close(fd);
  }
}

/**
 * The upper and the work dir must not be a lower, nor contain or sit inside one (kernel
 * overlayfs refuses overlapping layers too): writes would change a read-only layer.
 */
function checkOverlap(config: OverlayConfig, upper: Layer, lowers: Layer[]): void {
  const ru = realOf(config, upper.path);
  let rw: string | undefined;
  try {
    rw = config.workdir === undefined ? undefined : realOf(config, config.workdir);
  } catch {
    rw = undefined; // missing: openWork says so
  }
  for (const l of lowers) {
    const rl = realOf(config, l.path);
    if (inside(ru, rl) || inside(rl, ru)) {
      throw layerError(upper.path, `upperdir and lowerdir ${l.path} overlap (the same directory or one inside the other)`);
    }
    if (rw !== undefined && (inside(rw, rl) || inside(rl, rw))) {
      throw layerError(config.workdir as string, `workdir and lowerdir ${l.path} overlap (the same directory or one inside the other)`);
    }
  }
}

function openWork(config: OverlayConfig, upper: Layer): { workFd: number; prefix: XattrPrefix } {
  const workdir = config.workdir as string;
  const wfd = openRoot(workdir, 'workdir');
  try {
    const ws = statAt(wfd, '');
    if (ws.devMajor !== upper.devMajor || ws.devMinor !== upper.devMinor) {
      throw layerError(workdir, 'workdir must be on the same filesystem as the upperdir');
    }
    const ru = realOf(config, upper.path);
    const rw = realOf(config, workdir);
    if (inside(rw, ru)) throw layerError(workdir, 'workdir must not be inside the upperdir');
    if (inside(ru, rw)) throw layerError(upper.path, 'upperdir must not be inside the workdir');
    // before anything is created: a refused upper is left as it was
    const prefix = probeXattrs(config, wfd);
    try {
      native.mkdirat(wfd, WORK, 0o700);
    } catch (e) {
      if (toErrno(e) !== E.EEXIST) throw layerError(workdir, `cannot create ${WORK}: ${errnoName(toErrno(e))}`);
    }
    let workFd: number;
    try {
      workFd = native.openat(wfd, WORK, C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    } catch (e) {
      throw layerError(`${workdir}/${WORK}`, explain(e));
    }
    try {
      emptyWorkDir(workFd);
    } catch (e) {
      native.close(workFd);
      throw e;
    }
    return { workFd, prefix };
  } finally {
    native.close(wfd);
  }
}

/** The longest common directory of two absolute paths. */
function commonDir(a: string, b: string): string {
  const pa = a.split('/');
  const pb = b.split('/');
  let i = 0;
  while (i < pa.length && i < pb.length && pa[i] === pb[i]) i++;
  return pa.slice(0, i).join('/') || '/';
}

const relativeTo = (dir: string, p: string): string => (p === dir ? '.' : p.slice(dir === '/' ? 1 : dir.length + 1));

/**
 * On a noatime mount, the upper and the work dir reopened through a private, detached,
 * noatime copy of the mount that holds them (open_tree + mount_setattr, never attached
 * anywhere). FUSE passthrough reads through a backing file opened on the path of our
 * fd, without our O_NOATIME: this keeps those reads (exec, mmap, read) from changing the
 * upper's atimes, as kernel overlayfs' own private mounts do. Needs CAP_SYS_ADMIN; where
 * it is refused, or the copy does not show the same directories (a mount in between),
 * the fds stay as they are (files are opened O_NOATIME anyway, files.ts).
 */
function reopenNoatime(config: OverlayConfig, upperFd: number, workFd: number): [number, number] | undefined {
  let clone = -1;
  const got: number[] = [];
  try {
    const ru = realOf(config, config.upperdir as string);
    // the staging dir is a directory, not a link (openWork opens it O_NOFOLLOW)
    const rw = `${realOf(config, config.workdir as string)}/${WORK}`;
    const top = commonDir(ru, rw);
    clone = native.openTree(C.AT_FDCWD, top, C.OPEN_TREE_CLONE | C.OPEN_TREE_CLOEXEC);
    native.mountSetattr(clone, '', C.AT_EMPTY_PATH, C.MOUNT_ATTR_NOATIME, C.MOUNT_ATTR__ATIME);
    for (const [p, old] of [[ru, upperFd], [rw, workFd]] as const) {
      const fd = native.openat(clone, relativeTo(top, p), C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
      got.push(fd);
      const a = statAt(fd, '');
      const b = statAt(old, '');
      if (a.ino !== b.ino || a.devMajor !== b.devMajor || a.devMinor !== b.devMinor) throw new Error('another directory');
    }
    return [got[0] as number, got[1] as number];
  } catch {
    for (const fd of got) native.close(fd);
    return undefined;
  } finally {
    // the copy lives on in the fds opened through it
    if (clone >= 0) native.close(clone);
  }
}

/** Validates `config` and builds the state of a mount. */
export function openState(config: OverlayConfig): State {
  if (config.lowerdirs.length === 0) {
    throw new StratafsError('STRATAFS_ERR_OPTION', 'at least one lowerdir is required');
  }
  if (config.upperdir !== undefined && config.workdir === undefined) {
    throw new StratafsError('STRATAFS_ERR_OPTION', 'workdir is required with upperdir');
  }
  const opened: number[] = [];
  try {
    // every check before the work dir is created or emptied: a refused mount changes nothing
    const base = config.upperdir !== undefined ? 1 : 0;
    const mapped = config.uidMap !== undefined || config.gidMap !== undefined;
    const known = config.startReads;
    const lowers = config.lowerdirs.map((p, i) => {
      const fd = openLowerRoot(p);
      opened.push(fd);
      return makeLayer(base + i, p, fd, false, mapped && onIdmappedMount(p, known?.mounts, known?.realPaths?.get(p)));
    });
    // as kernel overlayfs ("conflicting lowerdir path"): one directory twice is refused
    const seen = new Map<string, string>();
    for (const l of lowers) {
      const s = statAt(l.rootFd, '');
      const id = `${s.devMajor}:${s.devMinor}:${s.ino}`;
      const first = seen.get(id);
      if (first !== undefined) throw layerError(l.path, `lowerdir is given twice (the same directory as ${first})`);
      seen.set(id, l.path);
    }
    let upper: Layer | null = null;
    let workFd = -1;
    let prefix = config.xattrPrefix;
    if (config.upperdir !== undefined) {
      const fd = openRoot(config.upperdir, 'upperdir');
      opened.push(fd);
      upper = makeLayer(0, config.upperdir, fd, true);
      // as kernel overlayfs: a FUSE filesystem lacks what an upper needs (and may be us)
      const on = mountOf(config.upperdir, known?.mounts, known?.realPaths?.get(config.upperdir));
      if (on !== undefined && (on.fstype === 'fuse' || on.fstype.startsWith('fuse.'))) {
        throw layerError(config.upperdir, `upperdir is on a FUSE filesystem (${on.fstype} at ${on.point}); kernel overlayfs refuses such an upper too`);
      }
      checkOverlap(config, upper, lowers);
      const work = openWork(config, upper);
      workFd = work.workFd;
      prefix = work.prefix;
      opened.push(workFd);
      const quiet = config.noatime === true ? reopenNoatime(config, fd, workFd) : undefined;
      if (quiet) {
        opened.push(...quiet);
        upper = makeLayer(0, config.upperdir, quiet[0], true);
        workFd = quiet[1];
        native.close(fd);
        native.close(work.workFd);
        opened.splice(opened.indexOf(fd), 1);
        opened.splice(opened.indexOf(work.workFd), 1);
      }
    }
    process.umask(0);
    const limit = native.raiseNofileLimit();
    const all = upper ? [upper, ...lowers] : lowers;
    const oneDevice = all.every((l) => l.devMajor === all[0]?.devMajor && l.devMinor === all[0]?.devMinor);
    const xinoBits = oneDevice ? 0 : Math.max(1, Math.ceil(Math.log2(all.length)));
    const dirs = new DirFds(Math.max(64, Math.min(8192, Math.floor(limit / 4))));
    const top = all[0] as Layer;
    const rootStat = statAt(top.rootFd, '');
    const rootLowers: LowerRef[] = lowers.map((layer) => ({ layer, path: '', xwhiteouts: false }));
    let ino = rootStat.ino;
    if (xinoBits > 0) {
      const shift = BigInt(64 - xinoBits);
      ino = (ino & ((1n << shift) - 1n)) | (BigInt(top.index) << shift);
    }
    const st = new State(prefix === config.xattrPrefix ? config : { ...config, xattrPrefix: prefix }, upper, lowers, dirs, workFd, xinoBits,
      (id) => new Node(id, null, '', fsc.S_IFDIR, upper !== null, rootLowers, ino));
    st.inodes.root.key = `${top.index}:${rootStat.ino}`;
    return st;
  } catch (e) {
    for (const fd of opened) native.close(fd);
    throw e;
  }
}

/** Closes every fd the state holds and drops what it remembers (nodes, caches). */
export function closeState(st: State): void {
  // once only: a second close of the layer fds could close what reuses their numbers
  if (!st.markClosed()) return;
  for (const [fh, h] of [...st.handles]) {
    st.handles.delete(fh);
    if (h.kind === 'file') releaseFd(st, h.fd, h.shareKey);
  }
  dropAllKept(st);
  st.dirs.clear();
  st.caches.clear();
  st.aufs.clear();
  st.inodes.forgetAll();
  for (const l of st.layers) native.close(l.rootFd);
  if (st.workFd >= 0) native.close(st.workFd);
}
