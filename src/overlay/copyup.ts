/**
 * Copy-up: bringing a lower object into the upper before it is changed.
 *
 * Triggered by the first write or open for write, chmod, chown, utimens, truncate,
 * setxattr/removexattr, link, rename, and by creating or removing a name inside a
 * directory that is only in the lowers. Parents are copied up first.
 *
 * How: the copy is built under a fresh name in `${workdir}/work` — file data (worker
 * thread, reflink when possible, holes kept), then owner, mode, xattrs (not the private
 * overlay ones), nanosecond times — and then renamed into the upper with
 * RENAME_NOREPLACE. A regular file whose data is its own does all of that up to the
 * rename, and its one fsync, in a single native call (copyFileWhole: copyUpFileNow on
 * the JS thread for a small file in a process serving one mount or a `volatile` one,
 * else copyUpFile on the thread pool), in an unnamed O_TMPFILE that is then linked into
 * the upper, as kernel overlayfs does (openCopy); the
 * other objects (and metacopy files) take the steps one by one. The upper never holds
 * a half-copied file; a crash leaves
 * at most a stray entry in the work dir, emptied at the next mount. The parent's times
 * are restored after the rename (a copy-up is not a change the user made). Directories
 * are copied as metadata only: their lower children stay where they are and merge.
 * Opening with O_TRUNC (or truncating to 0) copies no data. A directory copied up
 * starts to merge and so changes its nlink (attr.ts), a lower hard link its st_ino and
 * nlink: the kernel is told to drop the attributes it cached for them
 * (State.invalidate).
 *
 * Metacopy files (metadata only, data in a lower, see lookup.ts and src/layers/metacopy.ts) are
 * written for a metadata-only change (CopyUpOptions.metaOnly) of a regular file when
 * the `metacopy` option is on, as kernel overlayfs with metacopy=on does; any other
 * copy-up of one (write, truncate, rename, link) gives it its data, in place as the
 * kernel does, and drops the metacopy mark. With the option off (the default) stratafs
 * writes none, so its upper mounts with or without metacopy=on.
 *
 * Lock: `node.copyUp` holds the promise of the copy-up running for that node. It guards
 * the transition of `node.upper` from false to true: a second caller finds the promise
 * and awaits it instead of copying again, so concurrent opens copy up once. A small
 * file's copy made whole on the JS thread (copyUpNow) takes no lock: nothing runs
 * between its first step and its link. A copy-up
 * awaits the parent's copy-up, the file data copy and its fsync (for a plain regular
 * file also its metadata, all in the same job on private fds; a small one's copy runs
 * on the JS thread and does not wait); other operations may
 * run meanwhile (an unlink or a rename over the node waits for `node.copyUp` before it
 * takes the name away). From the metadata steps on, everything runs synchronously on
 * the JS thread, so nothing interleaves with them and the final rename. Locks are
 * taken parent first (copyUp(parent) completes before the child's starts), so there is
 * no cycle.
 *
 * Once the rename into the upper succeeded the object is there: `node.upper` is set
 * at once, and putting back times afterwards is best effort (a failure, e.g. EPERM on
 * an append-only parent, is only logged), so a later copy-up never meets the object
 * with EEXIST.
 */
import { constants as fsc } from 'node:fs';
import createDebug from 'debug';
import { E, fail, toErrno } from '../errors';
import { C, native, type CopyUpFileOptions, type CopyUpFileResult, type Stat } from '../native';
import { PERM_MASK } from './attr';
import { copiedId } from './idmap';
import { statKey, type Node } from './inodes';
import { basenameOf, dirnameOf, joinPath, openDirAt, openNoatime, procFdPath, statAt, xattrPath, type Layer } from '../layers/access';
import { openStates, type State } from './state';
import { PRIVATE_PREFIXES } from '../layers/whiteout';
import { isPrivateXattr, XATTR_ESCAPE } from '../layers/xattr-names';
import { syncFd } from './durable';
import { dropKeptOf } from './handle-fds';
import { fault } from './faults';
import { markMetacopy, sizeOnly } from '../layers/metacopy';
import type { Int64 } from '../int64';
import type { Awaitable } from '../fuse/api';

const log = createDebug('stratafs:overlay');

const ACCMODE = fsc.O_RDONLY | fsc.O_WRONLY | fsc.O_RDWR;

export interface CopyUpOptions {
  /** copy file data (false for O_TRUNC / truncate to 0) */
  data: boolean;
  /**
   * only metadata will change (chmod, chown, utimens, xattrs): with the `metacopy`
   * option a regular file is copied up as a metacopy file (src/layers/metacopy.ts)
   */
  metaOnly?: boolean;
  /**
   * the open(2) flags (files.ts openFlagsFor) of a write handle that the OPEN starting
   * this copy-up will make: the copy is then built in an fd opened with this access
   * mode (and O_NOATIME), which copyUp returns instead of closing (see openForWrite)
   */
  handleFlags?: number;
}

/** Flags of the copy's fd that the handle's open would give it too (set when it is opened). */
const COPY_FD_FLAGS = C.O_NOATIME;

/**
 * Makes sure `node` exists in the upper. With `opts.handleFlags`, and when this call
 * made a whole-file copy, returns the copy's fd (the upper file, opened with those
 * flags' access mode), which the caller then owns; otherwise null. A value, not a
 * promise, when nothing was to be done or the copy ran whole on the JS thread
 * (copyUpNow): no other request can interleave with it, so it needs no lock.
 */
export function copyUp(st: State, node: Node, opts: CopyUpOptions = { data: true }): Awaitable<number | null> {
  if (isDone(node, opts)) return null;
  st.requireUpper();
  if (node.copyUp === null) {
    const now = copyUpNow(st, node, opts);
    if (now !== undefined) return now;
  }
  return copyUpLocked(st, node, opts);
}

/** Nothing to copy: `node` is in the upper (a metacopy file is enough for a metadata change). */
function isDone(node: Node, opts: CopyUpOptions): boolean {
  return node.upper && (!node.metacopy || opts.metaOnly === true);
}

/** A copy-up that may wait (for the parent's, the thread pool or another caller's): under `node.copyUp`. */
async function copyUpLocked(st: State, node: Node, opts: CopyUpOptions): Promise<number | null> {
  while (node.copyUp) {
    await node.copyUp;
    if (isDone(node, opts)) return null;
  }
  const meta = opts.metaOnly === true && st.config.metacopy === true;
  const p = run(st, node, opts.data, meta, opts.handleFlags).finally(() => {
    node.copyUp = null;
    afterCopyUp(st, node);
  });
  node.copyUp = p;
  return p;
}

/** its data is the upper file's now: a lower fd kept for its opens has no use */
function afterCopyUp(st: State, node: Node): void {
  if (node.upper && !node.metacopy) dropKeptOf(st, node.id);
}

/**
 * The copy-up of a small regular file whose parent is in the upper already, whole on
 * the JS thread where copiesOnThread allows it (a process serving one mount, or a
 * `volatile` one): copyFileWhole's steps without a promise. Undefined when the copy
 * is not of that kind (copyUpLocked makes it).
 */
function copyUpNow(st: State, node: Node, opts: CopyUpOptions): number | null | undefined {
  const parent = node.parent;
  if (node.upper || parent === null || !isDone(parent, { data: true })) return undefined;
  const src = node.lowers[0];
  const metaOnly = opts.metaOnly === true && st.config.metacopy === true;
  if (src === undefined || node.type !== fsc.S_IFREG || metaOnly || src.data !== undefined) return undefined;
  const s = st.lowerStat(node);
  if (!copiesOnThread(st, opts.data ? s.size : 0)) return undefined;
  try {
    const copy = startCopy(st, node, opts.data, opts.handleFlags);
    let result: CopyUpFileResult;
    try {
      copyUpPaths.onThread += 1;
      result = native.copyUpFileNow(copy.sfd, copy.dst.fd, copy.opts);
    } catch (e) {
      dropCopy(st, copy.dst);
      throw e;
    } finally {
      native.close(copy.sfd);
    }
    return linkCopy(st, node, parent, copy, result, opts.handleFlags);
  } finally {
    afterCopyUp(st, node);
  }
}
/**
 * Waits until no copy-up of `node` is in flight (whether it succeeds or not). An
 * operation that takes the node's name away calls it first: the copy-up renames into
 * that name, and would fail (and so would the open that started it) or put the object
 * back.
 */
export async function settleCopyUp(node: Node): Promise<void> {
  while (node.copyUp) await node.copyUp.catch(() => undefined);
}

async function run(st: State, node: Node, data: boolean, metaOnly: boolean, handleFlags: number | undefined): Promise<number | null> {
  if (node.upper && node.metacopy) {
    await completeMetacopy(st, node, data);
    return null;
  }
  const parent = node.parent ?? fail(E.ENOENT);
  await copyUp(st, parent);
  if (node.upper) return null;
  st.requireUpper();
  const src = node.lowers[0] ?? fail(E.ENOENT);
  // a regular file with its data in place: one job does all of it (copyFileWhole)
  if (node.type === fsc.S_IFREG && !metaOnly && src.data === undefined) return copyFileWhole(st, node, parent, data, handleFlags);
  const srcName = basenameOf(src.path);
  const s = statAt(st.dirs.get(src.layer, dirnameOf(src.path)), srcName);
  const type = s.mode & fsc.S_IFMT;
  const tmp = st.tmpName();
  const work = st.workFd;
  const meta = metaOnly && type === fsc.S_IFREG;
  if (type === fsc.S_IFREG) {
    await copyFile(st, node, s, tmp, data && !meta);
    if (meta) sizeOnly(work, tmp, s.size);
  } else if (type === fsc.S_IFDIR) {
    native.mkdirat(work, tmp, 0o700);
  } else if (type === fsc.S_IFLNK) {
    const target = native.readlinkat(st.dirs.get(src.layer, dirnameOf(src.path)), srcName);
    native.symlinkat(target, work, tmp);
  } else {
    native.mknodat(work, tmp, s.mode, s.rdevMajor, s.rdevMinor);
  }
  let pfd: number;
  let pst: Stat;
  try {
    const shifted = src.layer.idShifted === true;
    native.fchownat(work, tmp, copiedId(st.config, 'uid', s.uid, shifted), copiedId(st.config, 'gid', s.gid, shifted), C.AT_SYMLINK_NOFOLLOW);
    if (type !== fsc.S_IFLNK) native.fchmodat(work, tmp, s.mode & PERM_MASK);
    copyXattrs(xattrPath(st.dirs.get(src.layer, dirnameOf(src.path)), srcName), xattrPath(work, tmp));
    if (type === fsc.S_IFDIR || meta) setRedirectIfMoved(st, node, parent, tmp);
    if (meta) markMetacopy(st, tmp);
    if (type !== fsc.S_IFDIR) setTimes(work, tmp, s);
    pfd = st.upperDirFd(parent);
    pst = statAt(pfd, '');
    fault('copyup.before-rename');
    native.renameat2(work, tmp, pfd, node.name, C.RENAME_NOREPLACE);
  } catch (e) {
    removeTmp(work, tmp, type === fsc.S_IFDIR);
    throw e;
  }
  // in the upper from here on, whatever fails below (see header)
  node.upper = true;
  fault('copyup.after-rename');
  node.metacopy = meta;
  node.upperXwhiteouts = false;
  st.setNoXattrs(node, false);
  node.xattrsListed = false;
  node.lowerXattrs = null;
  bestEffort('times of copied-up directory', () => {
    if (type === fsc.S_IFDIR) setTimes(pfd, node.name, s);
  });
  bestEffort('times of parent after copy-up', () => restoreDirTimes(pfd, pst));
  settle(st, node, type, s.nlink, statAt(pfd, node.name).ino);
  return null;
}

/** What a finished copy-up changes in the node: its upper identity, and the kernel's cached attributes. */
function settle(st: State, node: Node, type: number, lowerNlink: number, ino: bigint): void {
  const upper = st.requireUpper();
  st.inodes.setKey(node, statKey(upper, { ino }));
  // a copied-up lower hard link is a file of its own: its own st_ino (inodes.ts)
  const brokenLink = type !== fsc.S_IFDIR && lowerNlink > 1;
  if (brokenLink) node.ino = st.foldIno(upper, ino);
  // The attributes the kernel cached are stale when they change here: a directory now
  // merges (nlink 1, attr.ts), often copied up for an operation on something inside
  // it; a lower hard link has its own st_ino and nlink now, and open() (which copies
  // up) returns no attributes.
  if ((type === fsc.S_IFDIR || brokenLink) && node.lookups > 0) st.invalidate(node.id);
}

/**
 * Regular files up to this size (and copies without data) are copied up on the JS
 * thread (native copyUpFileNow) where that holds up no other mount (copiesOnThread),
 * larger ones on the thread pool (copyUpFile): the same steps and fsync either way. The bound is the addon's "small file" (copyup.c
 * SMALL_FILE: copied in one copy_file_range).
 */
export const INLINE_COPY_MAX = 64 * 1024;

/** How many copyFileWhole copies ran on the JS thread and on the thread pool (statistics). */
export const copyUpPaths = { onThread: 0, onPool: 0 };

/**
 * Whether a copy of `size` bytes runs on the JS thread: a small copy costs less than
 * the hop to the thread pool and back (README "What each lever gave"), as the kernel
 * copies in the caller's context; but its fsync blocks the thread, so only where no
 * other mount is served by it (a daemon per mount) or nothing is flushed (`volatile`).
 * In a process serving several mounts an fsync there would hold up all their requests.
 */
function copiesOnThread(st: State, size: Int64): boolean {
  return size <= INLINE_COPY_MAX && (st.config.volatile === true || openStates() <= 1);
}

/** Lower layers whose files cannot be reflinked into the upper (FICLONE refused once). */
const noReflink = new WeakSet<Layer>();

/**
 * The copy-up of a regular file whose data is its own (not a metacopy file), as kernel
 * overlayfs makes it: in the work dir, data, owner, mode, xattrs, times and one fsync
 * (unless `volatile`), all in one native call (copyUpFileNow on the JS thread up to
 * INLINE_COPY_MAX bytes where copiesOnThread allows, else copyUpFile on the thread
 * pool); then, on the JS thread,
 * the rename into the upper and the parent's times put back. Owner and
 * mode come from the lower's cached stat (lowers do not change), size and times from
 * the file opened for the copy. With `handleFlags` the copy's fd, which is the upper
 * file once linked, is returned open for the handle (copyUp); else it is closed.
 */
async function copyFileWhole(st: State, node: Node, parent: Node, data: boolean, handleFlags: number | undefined): Promise<number | null> {
  const copy = startCopy(st, node, data, handleFlags);
  let result: CopyUpFileResult;
  try {
    const now = copiesOnThread(st, data ? copy.size : 0);
    copyUpPaths[now ? 'onThread' : 'onPool'] += 1;
    result = now ? native.copyUpFileNow(copy.sfd, copy.dst.fd, copy.opts) : await native.copyUpFile(copy.sfd, copy.dst.fd, copy.opts);
  } catch (e) {
    dropCopy(st, copy.dst);
    throw e;
  } finally {
    native.close(copy.sfd);
  }
  return linkCopy(st, node, parent, copy, result, handleFlags);
}

/** A whole-file copy opened (startCopy) and not yet made: its source fd, its copy and the native call's options. */
interface StartedCopy {
  sfd: number;
  dst: CopyDst;
  layer: Layer;
  /** the lower's size (cached stat) */
  size: Int64;
  nlink: number;
  opts: CopyUpFileOptions;
}

/**
 * Opens the source and the copy of a whole-file copy-up and fills in the native
 * call's options: owner and mode from the lower's cached stat (lowers do not change).
 */
function startCopy(st: State, node: Node, data: boolean, handleFlags: number | undefined): StartedCopy {
  const src = node.lowers[0] ?? fail(E.ENOENT);
  const s = st.lowerStat(node);
  const loc = st.locateData(node);
  const shifted = src.layer.idShifted === true;
  const sfd = openSource(loc.dirfd, loc.name, loc.layer);
  let dst: CopyDst;
  try {
    dst = openCopy(st, handleFlags);
  } catch (e) {
    native.close(sfd);
    throw e;
  }
  const opts: CopyUpFileOptions = {
    data,
    uid: copiedId(st.config, 'uid', s.uid, shifted),
    gid: copiedId(st.config, 'gid', s.gid, shifted),
    mode: s.mode & PERM_MASK,
    sync: !st.config.volatile,
    reflink: !noReflink.has(loc.layer),
    // the lower's xattrs may be known already (xattr.ts): none, nothing to list
    xattrs: node.lowerXattrs === null || node.lowerXattrs.disk.length > 0,
    privatePrefixes: PRIVATE_PREFIXES,
    escape: XATTR_ESCAPE,
  };
  return { sfd, dst, layer: loc.layer, size: s.size, nlink: s.nlink, opts };
}

/**
 * Links a made copy (flushed unless `volatile`) into the upper, on the JS thread: the
 * parent's times put back, the node settled. With `handleFlags` returns the copy's fd.
 */
function linkCopy(st: State, node: Node, parent: Node, copy: StartedCopy, result: CopyUpFileResult, handleFlags: number | undefined): number | null {
  const { dst } = copy;
  if (result.reflinkUnsupported) noReflink.add(copy.layer);
  let pfd: number;
  let pst: Stat;
  try {
    fault('copyup.after-data');
    pfd = st.upperDirFd(parent);
    pst = statAt(pfd, '');
    fault('copyup.before-rename');
    if (dst.tmp === null) native.linkat(C.AT_FDCWD, procFdPath(dst.fd), pfd, node.name, C.AT_SYMLINK_FOLLOW);
    else native.renameat2(st.workFd, dst.tmp, pfd, node.name, C.RENAME_NOREPLACE);
  } catch (e) {
    dropCopy(st, dst);
    throw e;
  }
  node.upper = true;
  try {
    fault('copyup.after-rename');
    node.metacopy = false;
    node.upperXwhiteouts = false;
    // a copy without any xattr: later reads need no syscall (xattr.ts)
    st.setNoXattrs(node, !result.hasXattrs);
    node.xattrsListed = !result.hasXattrs;
    node.lowerXattrs = null;
    bestEffort('times of parent after copy-up', () => restoreDirTimes(pfd, pst));
    settle(st, node, fsc.S_IFREG, copy.nlink, result.ino);
  } catch (e) {
    native.close(dst.fd);
    throw e;
  }
  if (handleFlags !== undefined) return dst.fd;
  native.close(dst.fd);
  return null;
}

/** The file a copy is built in: unnamed (O_TMPFILE, tmp null) or named `tmp` in the work dir. */
interface CopyDst {
  fd: number;
  tmp: string | null;
}

/**
 * Mounts whose work dir refused O_TMPFILE: their copies are built under a name. (The
 * link is not refused where the copy was made: fs.protected_hardlinks lets the owner
 * or CAP_FOWNER link, and the fchmod of the copy needed the same.)
 */
const noTmpfile = new WeakSet<State>();

/**
 * Opens the file a copy-up builds its copy in: as kernel overlayfs, an O_TMPFILE in
 * the work dir, linked into the upper once complete and flushed. It has no name until
 * then, so its fsync does not also write the work dir's new entry (ext4 without a
 * journal writes a new name's directory at the file's fsync: one write more per
 * copy-up), and a crash leaves nothing in the work dir. Where the filesystem cannot,
 * a fresh name in the work dir, renamed into the upper. Write-only, or with
 * `handleFlags` that handle's access mode and O_NOATIME (set here, while the file is
 * still ours: after the fchown only its owner or CAP_FOWNER may).
 */
function openCopy(st: State, handleFlags: number | undefined): CopyDst {
  const how = handleFlags === undefined ? fsc.O_WRONLY : handleFlags & (ACCMODE | COPY_FD_FLAGS);
  if (!noTmpfile.has(st)) {
    try {
      return { fd: native.openat(st.workFd, '.', C.O_TMPFILE | how | C.O_CLOEXEC, 0o600), tmp: null };
    } catch (e) {
      const errno = toErrno(e);
      if (errno !== E.EOPNOTSUPP && errno !== E.EISDIR && errno !== E.EINVAL) throw e;
      noTmpfile.add(st);
    }
  }
  const tmp = st.tmpName();
  return { fd: native.openat(st.workFd, tmp, how | fsc.O_CREAT | fsc.O_EXCL | C.O_CLOEXEC, 0o600), tmp };
}

/** Closes an unfinished copy and removes its name, if it has one. */
function dropCopy(st: State, dst: CopyDst): void {
  native.close(dst.fd);
  if (dst.tmp !== null) removeTmp(st.workFd, dst.tmp, false);
}

/** Opens the file whose data a copy-up copies: reading it must not move the lower's atime. */
function openSource(dirfd: number, name: string, layer: Layer): number {
  return openNoatime((f) => native.openat(dirfd, name, f, 0), fsc.O_RDONLY | C.O_NOFOLLOW | C.O_CLOEXEC, layer);
}

/** Runs a step that may fail without undoing the copy-up; the failure is logged. */
function bestEffort(what: string, f: () => void): void {
  try {
    f();
  } catch (e) {
    log('%s: %s', what, (e as Error).message);
  }
}

async function copyFile(st: State, node: Node, s: Stat, tmp: string, data: boolean): Promise<void> {
  // the data: a lower metacopy file's is in the file below it
  const src = st.locateData(node);
  const sfd = openSource(src.dirfd, src.name, src.layer);
  let dfd = -1;
  try {
    dfd = native.openat(st.workFd, tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | C.O_CLOEXEC, 0o600);
    // the data and its fsync in one trip through the thread pool
    if (data && s.size > 0) await native.copyData(sfd, dfd, s.size, !st.config.volatile);
    else await syncFd(st, dfd, false);
    fault('copyup.after-data');
  } catch (e) {
    if (dfd >= 0) {
      native.close(dfd);
      dfd = -1;
      removeTmp(st.workFd, tmp, false);
    }
    throw e;
  } finally {
    native.close(sfd);
    if (dfd >= 0) native.close(dfd);
  }
}

function setIgnoringUnsupported(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (toErrno(e) !== E.EOPNOTSUPP) throw e;
  }
}

/**
 * Gives a metacopy upper file its data, in place as kernel overlayfs does, then drops
 * the metacopy and redirect marks.
 */
async function completeMetacopy(st: State, node: Node, data: boolean): Promise<void> {
  if (data) {
    const src = st.locateData(node);
    const sfd = openSource(src.dirfd, src.name, src.layer);
    try {
      const dst = st.locate(node);
      const dfd = native.openat(dst.dirfd, dst.name, fsc.O_WRONLY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
      try {
        const size = statAt(dfd, '').size;
        if (size > 0) await native.copyData(sfd, dfd, size, !st.config.volatile);
        else await syncFd(st, dfd, false);
      } finally {
        native.close(dfd);
      }
    } finally {
      native.close(sfd);
    }
  }
  const dst = st.locate(node);
  const { path, follow } = xattrPath(dst.dirfd, dst.name);
  for (const p of PRIVATE_PREFIXES) {
    for (const a of ['metacopy', 'redirect']) {
      try {
        native.removexattr(path, p + a, follow);
      } catch (e) {
        const errno = toErrno(e);
        if (errno !== E.ENODATA && errno !== E.EOPNOTSUPP && errno !== E.EPERM) throw e;
      }
    }
  }
  node.metacopy = false;
}

/** Copies the user-visible xattrs between two xattrPath() locations. */
export function copyXattrs(from: { path: string; follow: boolean }, to: { path: string; follow: boolean }): void {
  let names: string[];
  try {
    names = native.listxattr(from.path, from.follow);
  } catch (e) {
    if (toErrno(e) === E.EOPNOTSUPP) return;
    throw e;
  }
  for (const name of names) {
    if (isPrivateXattr(name)) continue;
    const value = native.getxattr(from.path, name, from.follow);
    setIgnoringUnsupported(() => native.setxattr(to.path, name, value, 0, to.follow));
  }
}

/** atime and mtime of `s` (nanoseconds) on name in dirfd, never following a symlink. */
export function setTimes(dirfd: number, name: string, s: Stat): void {
  native.utimensat(dirfd, name, s.atimeSec, s.atimeNsec, s.mtimeSec, s.mtimeNsec, C.AT_SYMLINK_NOFOLLOW);
}

/** Puts back the times of the directory fd `dirfd` (an O_PATH fd) as `s` had them. */
export function restoreDirTimes(dirfd: number, s: Stat): void {
  native.utimensat(C.AT_FDCWD, procFdPath(dirfd), s.atimeSec, s.atimeNsec, s.mtimeSec, s.mtimeNsec, 0);
}

/**
 * A directory reached through a redirect higher up keeps merging its lower dir only if
 * the upper copy says where that is, when the path differs from what the parent's own
 * stack would give.
 */
function setRedirectIfMoved(st: State, node: Node, parent: Node, tmp: string): void {
  const src = node.lowers[0];
  if (!src) return;
  const pref = parent.lowers.find((r) => r.layer === src.layer);
  if (pref && joinPath(pref.path, node.name) === src.path) return;
  const { path, follow } = xattrPath(st.workFd, tmp);
  native.setxattr(path, `${st.prefix}redirect`, Buffer.from(`/${src.path}`, 'latin1'), 0, follow);
}

/** Best-effort removal of a work dir entry (a directory is removed with what it holds). */
export function removeTmp(work: number, tmp: string, dir: boolean): void {
  try {
    if (dir) removeTree(work, tmp);
    else native.unlinkat(work, tmp, 0);
  } catch {
    // left for the cleanup at the next mount
  }
}

/** Removes directory `name` in dirfd and everything below it, never following symlinks. */
export function removeTree(dirfd: number, name: string): void {
  const fd = openDirAt(dirfd, name);
  try {
    for (const e of native.getdents(fd)) {
      if (e.name === '.' || e.name === '..') continue;
      if (e.type === C.DT_DIR) removeTree(fd, e.name);
      else if (e.type === C.DT_UNKNOWN && (statAt(fd, e.name).mode & fsc.S_IFMT) === fsc.S_IFDIR) removeTree(fd, e.name);
      else native.unlinkat(fd, e.name, 0);
    }
  } finally {
    native.close(fd);
  }
  native.unlinkat(dirfd, name, C.AT_REMOVEDIR);
}
