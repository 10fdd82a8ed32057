/**
 * Open files and directories.
 *
 * - Opening a lower file read-only copies nothing: the handle reads the lower file
 *   (keepCache, it cannot change). Opening for write, or with O_TRUNC, copies up first
 *   (without data for O_TRUNC) and the handle is on the upper file: where that open
 *   made the copy-up, the copy's own fd (openForWrite).
 * - Every handle has one fd, also offered as OpenResult.backingFd: the bridge decides
 *   whether to register it for passthrough. Read-only handles of a node share one fd
 *   (handle-fds.ts: an fd storm must not fill the daemon's table); release gives it back.
 * - read/write go through the addon's worker-thread pread/pwrite.
 * - A handle opened on a lower file before someone else copied the file up keeps
 *   reading the lower version (as kernel overlayfs did before 4.19).
 * - Directory handles only count the open: listings and their offsets are the node's
 *   (readdir.ts), so a directory also lists without a handle (fh 0: the kernel opens
 *   directories itself under FUSE_NO_OPENDIR_SUPPORT) and fsyncs by its node.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import { C, native } from '../native';
import type { Awaitable, Ctx, DirEntryOut, OpenResult } from '../fuse/api';
import { copyUp } from './copyup';
import { acquireFd, releaseFd } from './handle-fds';
import type { Node } from './inodes';
import { readdirAt } from './readdir';
import { syncFd } from './durable';
import { openDirAt, openNoatime, procFdPath } from '../layers/access';
import type { FileHandle, State } from './state';
import { toSafeNumber, type Int64 } from '../int64';

const ACCMODE = fsc.O_RDONLY | fsc.O_WRONLY | fsc.O_RDWR;
/**
 * Flags that only make sense to the kernel's own open, not to ours. O_DIRECT too: the
 * kernel already keeps the caller's O_DIRECT I/O out of the mount's page cache and sends
 * it to us as READ/WRITE requests, which we serve from Node buffers that are not
 * aligned as O_DIRECT demands (EINVAL); what reaches the layer file goes through its
 * page cache, as any buffered I/O of the daemon does (README "Decisions").
 */
const STRIPPED = fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOCTTY | fsc.O_DIRECT;

/** The flags to open the real file with, for the open(2) flags the caller used. */
export function openFlagsFor(st: State, flags: number): number {
  let f = (flags & ~STRIPPED) | C.O_NOFOLLOW | C.O_CLOEXEC;
  // a noatime mount: reads through our fd (or its passthrough) leave the upper's atime
  if (st.config.noatime) f |= C.O_NOATIME;
  if (st.writebackCache) {
    // the kernel may read back pages of a write-only file and positions writes itself
    if ((f & ACCMODE) === fsc.O_WRONLY) f = (f & ~ACCMODE) | fsc.O_RDWR;
    f &= ~fsc.O_APPEND;
  }
  return f;
}

export function isWriteOpen(flags: number): boolean {
  return (flags & ACCMODE) !== fsc.O_RDONLY || (flags & fsc.O_TRUNC) !== 0;
}

/**
 * Flags of a write handle's open that a copy-up's fd cannot take on afterwards (fcntl
 * F_SETFL ignores them): such a handle is opened anew. The copy's fd gets the others:
 * the access mode and O_NOATIME when it is opened, O_APPEND and O_NONBLOCK by fcntl;
 * O_TRUNC is what a copy without data already is.
 */
const REOPEN = fsc.O_SYNC | fsc.O_DSYNC;

/**
 * An open for writing (or truncating): copies up first. Where this open makes the
 * copy-up of a whole file, its handle is the copy's fd (the upper file, opened with the
 * handle's access mode), as the kernel's overlayfs opens the file it has just copied
 * up: no openat and close of the upper file again.
 */
export function openForWrite(st: State, _ctx: Ctx, node: Node, flags: number): Awaitable<OpenResult> {
  if (node.type === fsc.S_IFDIR) fail(E.EISDIR);
  st.requireUpper();
  const how = openFlagsFor(st, flags);
  const adopt = (how & ACCMODE) !== fsc.O_RDONLY && (how & REOPEN) === 0;
  const fd = copyUp(st, node, { data: (flags & fsc.O_TRUNC) === 0, handleFlags: adopt ? how : undefined });
  // a copy-up made on the JS thread (or none needed): answered without a promise
  return fd instanceof Promise ? fd.then((f) => openNow(st, node, flags, f)) : openNow(st, node, flags, fd);
}

/** A read-only open copies nothing: answered at once, without a promise. */
export function openReadOnly(st: State, _ctx: Ctx, node: Node, flags: number): OpenResult {
  return openNow(st, node, flags);
}

/**
 * Makes the handle's fd of `node`; `copyFd`, when not null, is the fd of the upper file
 * that this open's copy-up built (opened with its access mode and O_NOATIME), which
 * becomes the handle's fd (closed if the open fails).
 */
function openNow(st: State, node: Node, flags: number, copyFd: number | null = null): OpenResult {
  // a metacopy file is read from its lower data file
  const lowerData = !node.upper || node.metacopy;
  // a lower file is read O_NOATIME on any mount, as kernel overlayfs reads its lowers
  const how = openFlagsFor(st, flags) | (lowerData ? C.O_NOATIME : 0);
  const key = backingKey(node, lowerData);
  const shareKey = isWriteOpen(flags) ? undefined : `${key}:${how}`;
  let given = copyFd;
  let fd: number;
  try {
    fd = acquireFd(st, shareKey ?? null, () => {
      if (given !== null) {
        const f = given;
        given = null;
        return adoptCopyFd(f, how);
      }
      return openReal(st, node, lowerData, how);
    }, node.id);
  } finally {
    if (given !== null) native.close(given);
  }
  const fh = st.addHandle({ kind: 'file', fd, node, upper: !lowerData, shareKey });
  return fileOpenResult(st, fh, fd, flags, lowerData, key);
}

/**
 * Makes a copy-up's fd what an open of the upper file with `how` would have given: its
 * O_APPEND set (the copy could not be appended to), and an O_TRUNC open's new mtime and
 * ctime (the copy has no data and the lower's times). Closed when that fails.
 */
function adoptCopyFd(fd: number, how: number): number {
  try {
    if ((how & (fsc.O_APPEND | fsc.O_NONBLOCK)) !== 0) native.setfl(fd, how);
    if ((how & fsc.O_TRUNC) !== 0) native.ftruncate(fd, 0);
  } catch (e) {
    native.close(fd);
    throw e;
  }
  return fd;
}

/** Opens the real file of a handle of `node`: its lower data file or its upper file. */
function openReal(st: State, node: Node, lowerData: boolean, how: number): number {
  const loc = lowerData ? st.locateData(node) : st.locate(node);
  const openIt = (f: number): number =>
    loc.name !== '' ? native.openat(loc.dirfd, loc.name, f, 0)
    : node.isRoot ? native.openat(loc.dirfd, '.', f, 0)
    // a file with no name left, reopened (/proc/PID/fd/N): through its open fd
    : native.openat(C.AT_FDCWD, procFdPath(loc.dirfd), f & ~C.O_NOFOLLOW, 0);
  return (how & C.O_NOATIME) !== 0 ? openNoatime(openIt, how, loc.layer) : openIt(how);
}

/**
 * The real file a node's handle reads: its lower data file or its upper file. Neither
 * changes while the node lives (lowers are immutable; an upper file keeps its inode
 * through renames and truncation; a copy-up moves the node from one to the other).
 */
export function backingKey(node: Node, lowerData: boolean): string {
  return `${node.id}:${lowerData ? 'lower' : 'upper'}`;
}

/**
 * What an OPEN or CREATE of a file answers. With passthrough the kernel would do the I/O
 * on our fd, which is opened without O_DIRECT (and shared with the node's other
 * passthrough opens): an O_DIRECT open is served by the daemon instead, with DIRECT_IO so
 * that it keeps out of the page cache and does not count as a cached open (which would
 * end passthrough for the node).
 */
export function fileOpenResult(st: State, fh: number, fd: number, flags: number, lowerData: boolean, key: string): OpenResult {
  if (st.passthrough && (flags & fsc.O_DIRECT) !== 0) return { fh, directIo: true };
  // a lower file cannot change: its page cache stays valid, and its backing id may
  // outlive the handle (the key names the node's lower data file, never another)
  return { fh, backingFd: fd, backingKey: key, keepCache: lowerData, keepBacking: lowerData };
}

export function fileHandle(st: State, fh: number): FileHandle {
  const h = st.handle(fh);
  return h.kind === 'file' ? h : fail(E.EBADF);
}

export function read(st: State, fh: number, offset: Int64, size: number): Promise<Buffer> {
  return native.preadAsync(fileHandle(st, fh).fd, size, offset);
}

export function write(st: State, fh: number, offset: Int64, data: Buffer): Promise<number> {
  const h = fileHandle(st, fh);
  if (!h.upper) fail(E.EBADF);
  return native.pwriteAsync(h.fd, data, offset);
}

export function fsync(st: State, fh: number, datasync: boolean): Promise<void> {
  return syncFd(st, fileHandle(st, fh).fd, datasync);
}

export function release(st: State, fh: number): void {
  const h = st.dropHandle(fh);
  if (!h || h.kind !== 'file') return;
  // a lower data file's fd stays open for the node's next open while the node lives
  // and still reads that file (handle-fds.ts)
  const n = h.node;
  const keep = !h.upper && (!n.upper || n.metacopy) && st.inodes.get(n.id) === n;
  releaseFd(st, h.fd, h.shareKey, keep);
}

export function fallocate(st: State, fh: number, mode: number, offset: Int64, length: Int64): void {
  const h = fileHandle(st, fh);
  if (!h.upper) fail(E.EBADF);
  native.fallocate(h.fd, mode, offset, length);
}

export function lseek(st: State, fh: number, offset: Int64, whence: number): Int64 {
  return native.lseek(fileHandle(st, fh).fd, offset, whence);
}

/** On the thread pool: a large range would stall every other request on the JS thread. */
export async function copyFileRange(st: State, fhIn: number, offIn: Int64, fhOut: number, offOut: Int64, length: Int64): Promise<number> {
  const out = fileHandle(st, fhOut);
  if (!out.upper) fail(E.EBADF);
  // one call copies at most what fits in an ssize_t and the kernel caps it far lower
  return toSafeNumber(await native.copyFileRangeAsync(fileHandle(st, fhIn).fd, offIn, out.fd, offOut, length), 'bytes copied');
}

export function opendir(st: State, node: Node): OpenResult {
  if (node.type !== fsc.S_IFDIR) fail(E.ENOTDIR);
  // the listing is built on the first READDIR: with a cached listing the kernel may
  // not ask at all. The kernel may keep listings (cacheDir + keepCache): it drops them
  // itself when the directory changes through the mount, and nothing else changes it
  // (layers must not change behind a mount, as with kernel overlayfs). These are also
  // the flags the kernel assumes for a directory it opens itself (no OPENDIR).
  const fh = st.addHandle({ kind: 'dir', node });
  return { fh, cacheDir: true, keepCache: true };
}

/** The directory a READDIR or FSYNCDIR is for: its handle's, or node `node` without one (fh 0). */
function dirOf(st: State, fh: number, node: Node | undefined): Node {
  if (fh === 0 && node) {
    if (node.type !== fsc.S_IFDIR) fail(E.ENOTDIR);
    return node;
  }
  const h = st.handle(fh);
  if (h.kind !== 'dir') fail(E.EBADF);
  return h.node;
}

export function readdir(st: State, fh: number, offset: number, node?: Node): DirEntryOut[] {
  return readdirAt(st, dirOf(st, fh, node), offset);
}

export function releasedir(st: State, fh: number): void {
  st.dropHandle(fh);
}

export async function fsyncdir(st: State, fh: number, datasync: boolean, node?: Node): Promise<void> {
  const dir = dirOf(st, fh, node);
  if (st.config.volatile || !dir.upper) return;
  const loc = st.locate(dir);
  const fd = openDirAt(loc.dirfd, loc.name);
  try {
    await syncFd(st, fd, datasync);
  } finally {
    native.close(fd);
  }
}
