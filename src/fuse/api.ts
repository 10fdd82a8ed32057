/**
 * The API the FUSE bridge calls: a low-level, inode-numbered filesystem interface.
 * It knows nothing of FUSE frames; src/overlay implements it, src/fuse/bridge drives it.
 * The values that go to the kernel as they are (attributes, entries, statfs, directory
 * entries) are the wire's own types (wire/types.ts), re-exported here.
 *
 * Conventions
 * - `NodeId` is the FUSE node id: 1 is the root, others are handed out by the overlay.
 *   Every operation that returns an `Entry` (lookup, mknod, mkdir, symlink, link, create)
 *   adds one to that node's lookup count; `forget` takes it away again. A node whose
 *   count drops to zero may be dropped from the inode table.
 * - Names and symlink targets are byte strings (latin1; see src/native/addon.d.ts).
 * - Errors are thrown as FsError(errno) (src/errors.ts); any other throw becomes EIO.
 * - Results may be returned directly or as a Promise; the bridge awaits either.
 * - Sizes, offsets, lengths and block/inode counts are exact `Int64`s (src/int64.ts):
 *   a number when it is a safe integer, a bigint beyond; never a rounded double.
 * - How long the kernel may cache an entry or attributes is the bridge's decision (its
 *   session options), not the filesystem's: an `Entry` carries no timeouts.
 * - `Ctx` is the calling process as the kernel reports it: new files belong to
 *   ctx.uid/ctx.gid (or the parent's group when the parent is setgid).
 */

import type { Int64 } from '../int64';
import type { Attr, DirEntryOut, Entry, FsStat, NodeId } from './wire/types';

export type { Attr, DirEntryOut, Entry, FsStat, NodeId } from './wire/types';
export type Awaitable<T> = T | Promise<T>;

export interface Ctx {
  uid: number;
  gid: number;
  pid: number;
  /**
   * The caller's umask, on mknod/mkdir/create only, when the kernel left applying it to
   * us (DONT_MASK): the filesystem applies it unless the parent has a default ACL.
   * Absent when the mode arrives with the umask already applied.
   */
  umask?: number;
}

export interface OpenResult {
  /** file handle chosen by the filesystem, passed back on read/write/release */
  fh: number;
  /**
   * When set, an fd of the real file the kernel may use directly (FUSE passthrough).
   * The bridge registers it with the device if passthrough was negotiated, and tells
   * the overlay through `releaseBacking` when it no longer needs it.
   */
  backingFd?: number;
  /**
   * Names the real file behind `backingFd` (equal keys: the same file), so the bridge
   * can tell whether a node's registered backing id still fits without a stat of the
   * fd. Without it the bridge stats the fd.
   */
  backingKey?: string;
  /**
   * The real file behind `backingKey` cannot change while the node lives (a lower
   * file): the bridge may keep its backing id registered after the last release, for
   * the node's next open (passthrough.ts), until the kernel forgets the node.
   */
  keepBacking?: boolean;
  keepCache?: boolean;
  directIo?: boolean;
  /** directories: the kernel may cache the listing (FOPEN_CACHE_DIR) */
  cacheDir?: boolean;
}

export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: Int64;
  /** 'now' = UTIME_NOW */
  atime?: { sec: number; nsec: number } | 'now';
  mtime?: { sec: number; nsec: number } | 'now';
  /** open file handle the change came through (ftruncate, fchmod ...) */
  fh?: number;
}

export interface RenameFlags {
  noReplace: boolean;
  exchange: boolean;
  whiteout: boolean;
}

/** what the bridge answers of a node's xattrs itself (FileSystemApi.setXattrAnswers) */
export interface XattrAnswers {
  /** `none`: the node has no xattrs (every GETXATTR answers ENODATA, every LISTXATTR no names) */
  set(node: NodeId, none: boolean): void;
  /** the xattr requests the bridge answered itself so far (they never reach the filesystem) */
  answered(): number;
}

/**
 * What the bridge may call. Every method listed is implemented by the overlay; an
 * operation the kernel sends that is not listed here is answered ENOSYS by the bridge.
 */
export interface FileSystemApi {
  /** called once after INIT; `passthrough` tells whether backingFd results will be used */
  init(opts: { passthrough: boolean; writebackCache: boolean }): Awaitable<void>;
  /**
   * Optional: the bridge hands over, before INIT, a function that drops the kernel's
   * cached attributes of a node. The filesystem calls it when a node's attributes change
   * as a side effect of an operation on another node (e.g. a directory copied up because
   * a file in it was written: it now merges, so its nlink changes).
   */
  setInvalidator?(invalidate: (node: NodeId) => void): void;
  /**
   * Optional: the bridge hands over, before INIT, a way to have a node's xattr requests
   * answered without asking the filesystem (the device reader answers them as it reads
   * them: no JS per request). `set(node, true)`: every GETXATTR of the node answers
   * ENODATA, every LISTXATTR an empty list; `set(node, false)`: ask the filesystem again.
   * The filesystem says false the moment it stops being true, and when the node leaves
   * its table.
   */
  setXattrAnswers?(answer: XattrAnswers): void;
  destroy(): Awaitable<void>;

  /**
   * null when the name is not in the merged view (ENOENT), a value rather than an
   * exception: the bridge answers with a negative entry the kernel caches, since only
   * operations through the mount create names
   */
  lookup(ctx: Ctx, parent: NodeId, name: string): Awaitable<Entry | null>;
  forget(node: NodeId, nlookup: number): void;
  getattr(ctx: Ctx, node: NodeId, fh?: number): Awaitable<Attr>;
  setattr(ctx: Ctx, node: NodeId, changes: SetattrChanges): Awaitable<Attr>;
  readlink(ctx: Ctx, node: NodeId): Awaitable<string>;

  mknod(ctx: Ctx, parent: NodeId, name: string, mode: number, rdevMajor: number, rdevMinor: number): Awaitable<Entry>;
  mkdir(ctx: Ctx, parent: NodeId, name: string, mode: number): Awaitable<Entry>;
  symlink(ctx: Ctx, parent: NodeId, name: string, target: string): Awaitable<Entry>;
  link(ctx: Ctx, node: NodeId, newParent: NodeId, newName: string): Awaitable<Entry>;
  unlink(ctx: Ctx, parent: NodeId, name: string): Awaitable<void>;
  rmdir(ctx: Ctx, parent: NodeId, name: string): Awaitable<void>;
  rename(ctx: Ctx, parent: NodeId, name: string, newParent: NodeId, newName: string, flags: RenameFlags): Awaitable<void>;

  /** `flags` are the open(2) flags (O_ACCMODE, O_TRUNC, O_APPEND ...) */
  open(ctx: Ctx, node: NodeId, flags: number): Awaitable<OpenResult>;
  create(ctx: Ctx, parent: NodeId, name: string, mode: number, flags: number): Awaitable<{ entry: Entry; open: OpenResult }>;
  read(fh: number, offset: Int64, size: number): Awaitable<Buffer>;
  write(fh: number, offset: Int64, data: Buffer): Awaitable<number>;
  flush(fh: number): Awaitable<void>;
  fsync(fh: number, datasync: boolean): Awaitable<void>;
  /** the last close of `fh`; the overlay closes its fds (backingFd included) */
  release(fh: number): Awaitable<void>;
  fallocate(fh: number, mode: number, offset: Int64, length: Int64): Awaitable<void>;
  lseek(fh: number, offset: Int64, whence: number): Awaitable<Int64>;
  /** bytes copied (one copy_file_range(2) call, so at most what the kernel allows per call) */
  copyFileRange(fhIn: number, offIn: Int64, fhOut: number, offOut: Int64, length: Int64): Awaitable<number>;

  opendir(ctx: Ctx, node: NodeId): Awaitable<OpenResult>;
  /**
   * true: readdir and fsyncdir also work without a handle (fh 0, by `dir`), so the
   * bridge lets a kernel that offers FUSE_NO_OPENDIR_SUPPORT open directories itself
   * (no OPENDIR or RELEASEDIR; it then assumes keepCache and cacheDir).
   */
  readonly listsWithoutOpen?: boolean;
  /**
   * Entries of directory `dir` (open as `fh`, or 0 for no handle) from cookie `offset`
   * on ('.' and '..' included). Offsets are stable: a listing continued with a cookie
   * after the directory changed neither repeats nor skips entries that stayed. The
   * bridge takes as many as fit and continues later.
   */
  readdir(fh: number, offset: number, dir?: NodeId): Awaitable<DirEntryOut[]>;
  /**
   * Optional: called with a READDIRPLUS batch of directory `dir` before each of its names
   * is looked up, to read ahead what those lookups need (the bridge waits for a promise,
   * then looks up as usual). Without it, or when it returns undefined, the lookups run
   * at once. Must not reject. `fits`: most entries of the batch the reply can hold (its
   * first ones; the rest come again in the next READDIRPLUS's batch).
   */
  prefetchLookups?(dir: NodeId, entries: readonly DirEntryOut[], fits?: number): Promise<void> | undefined;
  releasedir(fh: number): Awaitable<void>;
  /** `fh` 0: directory `dir`, opened without OPENDIR (see listsWithoutOpen) */
  fsyncdir(fh: number, datasync: boolean, dir?: NodeId): Awaitable<void>;

  statfs(ctx: Ctx, node: NodeId): Awaitable<FsStat>;
  setxattr(ctx: Ctx, node: NodeId, name: string, value: Buffer, flags: number): Awaitable<void>;
  /**
   * null when the attribute is absent (answered ENODATA): the common answer (`ls -l`
   * asks for security.selinux on every file), so it is a value, not an exception
   */
  getxattr(ctx: Ctx, node: NodeId, name: string): Awaitable<Buffer | null>;
  listxattr(ctx: Ctx, node: NodeId): Awaitable<string[]>;
  removexattr(ctx: Ctx, node: NodeId, name: string): Awaitable<void>;
  /** F_OK/R_OK/W_OK/X_OK check (permission bits are enforced by the kernel; EROFS on a read-only mount) */
  access(ctx: Ctx, node: NodeId, mask: number): Awaitable<void>;
}
