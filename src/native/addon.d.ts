/**
 * The whole surface of the native addon (native-bindings/), typed in one place.
 * Only src/native/index.ts imports this file; everything else imports that module.
 *
 * Conventions
 * - Every path or name argument is a *byte string*: a JS string whose code units are
 *   the raw bytes of the name (latin1). Linux names are bytes, not UTF-8; this keeps
 *   them exact end to end (wire decodes with 'latin1', the addon converts with
 *   napi_get_value_string_latin1). Names returned by the addon are byte strings too.
 * - Functions are synchronous unless they return a Promise; on failure they throw a
 *   NativeError carrying `errno` (positive Linux errno), `code` ('ENOENT') and `syscall`.
 * - 64-bit file quantities (sizes, offsets, lengths, counts) are `Int64`s both ways: a
 *   number when it is a safe integer, a bigint beyond (src/int64.ts). The addon refuses
 *   a number that is not a safe integer instead of rounding it.
 * - Numbers that name kernel flags come from `constants` (taken from the C headers at
 *   build time), never written as literals in TypeScript.
 */

import type { Int64 } from '../int64';

export interface NativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

/**
 * Result of statx(2). 64-bit identities are bigint; sizes and block counts are exact
 * Int64s (a number when safe, a bigint beyond: src/int64.ts).
 */
export interface CopyUpFileOptions {
  uid: number;
  gid: number;
  mode: number;
  /** false: copy no data (O_TRUNC) */
  data: boolean;
  sync: boolean;
  /** try FICLONE first */
  reflink: boolean;
  /** false: src is known to have no xattrs, do not list them */
  xattrs: boolean;
  privatePrefixes: readonly string[];
  escape: string;
}

export interface CopyUpFileResult {
  /** inode number of the copy */
  ino: bigint;
  /** how many xattrs were copied */
  xattrs: number;
  /** the copy has any xattr at all (one copied, or one the system set, e.g. a security label) */
  hasXattrs: boolean;
  /** FICLONE was refused with EOPNOTSUPP or EXDEV: these filesystems cannot share extents */
  reflinkUnsupported: boolean;
}

export interface Stat {
  devMajor: number;
  devMinor: number;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: Int64;
  blocks: Int64;
  blksize: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: Int64;
  bfree: Int64;
  bavail: Int64;
  files: Int64;
  ffree: Int64;
  namemax: number;
}

export interface DirEntry {
  /** byte string */
  name: string;
  ino: bigint;
  /** DT_* value from dirent.h (constants.DT_*) */
  type: number;
}

export interface KnownSetHandle {
  readonly _brand: 'KnownSetHandle';
}

export interface PollerHandle {
  readonly _brand: 'PollerHandle';
}

export interface UringHandle {
  readonly _brand: 'UringHandle';
}

/** Flag and special values from the system headers, as compiled into the addon. */
export interface NativeConstants {
  O_PATH: number;
  O_NOFOLLOW: number;
  O_DIRECTORY: number;
  O_CLOEXEC: number;
  O_TMPFILE: number;
  AT_FDCWD: number;
  AT_SYMLINK_NOFOLLOW: number;
  AT_SYMLINK_FOLLOW: number;
  AT_EMPTY_PATH: number;
  AT_REMOVEDIR: number;
  RESOLVE_BENEATH: number;
  RESOLVE_NO_SYMLINKS: number;
  RESOLVE_NO_MAGICLINKS: number;
  RESOLVE_NO_XDEV: number;
  RESOLVE_IN_ROOT: number;
  RENAME_NOREPLACE: number;
  RENAME_EXCHANGE: number;
  RENAME_WHITEOUT: number;
  XATTR_CREATE: number;
  XATTR_REPLACE: number;
  UTIME_NOW: number;
  UTIME_OMIT: number;
  FALLOC_FL_KEEP_SIZE: number;
  FALLOC_FL_PUNCH_HOLE: number;
  FALLOC_FL_ZERO_RANGE: number;
  SEEK_DATA: number;
  SEEK_HOLE: number;
  DT_UNKNOWN: number;
  DT_FIFO: number;
  DT_CHR: number;
  DT_DIR: number;
  DT_BLK: number;
  DT_REG: number;
  DT_LNK: number;
  DT_SOCK: number;
  /** readAhead: the statx of a name */
  RA_STAT: number;
  /** readAhead: the entries and xattr names of a name that is a directory */
  RA_LIST: number;
  /** readAhead: the xattr names of a name that is not a directory */
  RA_XATTRS: number;
  MS_NODEV: number;
  MS_NOSUID: number;
  MS_RDONLY: number;
  MS_NOATIME: number;
  MS_NOEXEC: number;
  MS_NODIRATIME: number;
  MS_RELATIME: number;
  MS_STRICTATIME: number;
  MS_REMOUNT: number;
  O_NOATIME: number;
  OPEN_TREE_CLONE: number;
  OPEN_TREE_CLOEXEC: number;
  MOUNT_ATTR_NOATIME: number;
  MOUNT_ATTR__ATIME: number;
  MNT_DETACH: number;
  MNT_FORCE: number;
  XATTR_SIZE_MAX: number;
  PATH_MAX: number;
  /** system.posix_acl_* xattr format (linux/posix_acl_xattr.h, linux/posix_acl.h) */
  POSIX_ACL_XATTR_VERSION: number;
  ACL_USER_OBJ: number;
  ACL_USER: number;
  ACL_GROUP_OBJ: number;
  ACL_GROUP: number;
  ACL_MASK: number;
  ACL_OTHER: number;
}

export interface Addon {
  constants: NativeConstants;

  // ---- files and directories, all relative to a directory fd ----
  openat(dirfd: number, path: string, flags: number, mode: number): number;
  /** openat2(2) with `resolve` = RESOLVE_* flags */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number;
  close(fd: number): void;
  /** statx(2); `flags` = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH ... */
  statx(dirfd: number, path: string, flags: number): Stat;
  /** as statx, but a failure returns its errno (a number) instead of throwing */
  statxOrErrno(dirfd: number, path: string, flags: number): Stat | number;
  mkdirat(dirfd: number, name: string, mode: number): void;
  mknodat(dirfd: number, name: string, mode: number, major: number, minor: number): void;
  symlinkat(target: string, dirfd: number, name: string): void;
  /** returns the link target as a byte string */
  readlinkat(dirfd: number, name: string): string;
  linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): void;
  unlinkat(dirfd: number, name: string, flags: number): void;
  renameat2(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): void;
  fchownat(dirfd: number, name: string, uid: number, gid: number, flags: number): void;
  /** fchmodat(2): follows a final symlink (Linux has no lchmod); check the type first */
  fchmodat(dirfd: number, name: string, mode: number): void;
  fchmod(fd: number, mode: number): void;
  fchown(fd: number, uid: number, gid: number): void;
  /** utimensat(2); pass constants.UTIME_NOW / UTIME_OMIT in the nsec fields */
  utimensat(dirfd: number, name: string, atimeSec: number, atimeNsec: number,
    mtimeSec: number, mtimeNsec: number, flags: number): void;
  futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** all entries of an open directory fd (O_RDONLY|O_DIRECTORY), '.' and '..' included, from offset 0 */
  getdents(fd: number): DirEntry[];
  fstatfs(fd: number): StatFs;
  /**
   * The read-ahead of one READDIRPLUS batch in one call on the thread pool (every fd is
   * duplicated first: the caller may close its own meanwhile). Directory `dirfds[g]` is
   * asked for the next `counts[g]` names of `names` (one byte string, all names joined
   * by '/'); `wants[i]` (constants RA_STAT | RA_LIST | RA_XATTRS) says what of name i: its
   * statx (a final symlink not followed), when it is a directory its entries and xattr
   * names, and when it is not its xattr names.
   * One Buffer of results, name by name (layout: native-bindings/src/batch.c; decoded
   * by src/overlay/readahead-result.ts).
   */
  readAhead(dirfds: Int32Array, counts: Uint32Array, names: string, wants: Uint8Array): Promise<Buffer>;
  ftruncate(fd: number, size: Int64): void;
  /** fcntl(F_SETFL, flags): sets the status flags the kernel lets change (O_APPEND, O_NOATIME, O_NONBLOCK), ignores the others */
  setfl(fd: number, flags: number): void;
  fsync(fd: number, datasync: boolean): void;
  syncfs(fd: number): void;
  pread(fd: number, buf: Buffer, offset: Int64): number;
  pwrite(fd: number, buf: Buffer, offset: Int64): number;
  /** async pread/pwrite on a worker thread (never blocks the JS thread) */
  preadAsync(fd: number, length: number, offset: Int64): Promise<Buffer>;
  pwriteAsync(fd: number, buf: Buffer, offset: Int64): Promise<number>;
  fallocate(fd: number, mode: number, offset: Int64, length: Int64): void;
  lseek(fd: number, offset: Int64, whence: number): Int64;
  copyFileRange(fdIn: number, offIn: Int64, fdOut: number, offOut: Int64, length: Int64): Int64;
  /** copyFileRange on the thread pool */
  copyFileRangeAsync(fdIn: number, offIn: Int64, fdOut: number, offOut: Int64, length: Int64): Promise<Int64>;
  /** ioctl FICLONE: make dst share src's extents (throws EOPNOTSUPP/EXDEV/EINVAL where not supported) */
  ficlone(dstFd: number, srcFd: number): void;
  /**
   * Copies `size` bytes from src to dst on a worker thread: FICLONE when possible,
   * else SEEK_DATA/SEEK_HOLE extents with copy_file_range (read/write fallback), so
   * holes stay holes; finally ftruncate(dst, size).
   */
  copyData(srcFd: number, dstFd: number, size: Int64, sync?: boolean): Promise<void>;
  /**
   * The whole copy-up of a regular file into the new, empty file dstFd, on a worker
   * thread (native-bindings/src/copyup.c): src's data (size and times from fstat of
   * src), owner, mode, user-visible xattrs (names under one of privatePrefixes are
   * skipped unless escaped with `escape`), times, then one fsync (`sync`).
   */
  copyUpFile(srcFd: number, dstFd: number, opts: CopyUpFileOptions): Promise<CopyUpFileResult>;
  /** copyUpFile on the calling thread: the same steps, the same result, errors thrown */
  copyUpFileNow(srcFd: number, dstFd: number, opts: CopyUpFileOptions): CopyUpFileResult;

  // ---- extended attributes; `path` may be "/proc/self/fd/N" for an O_PATH fd ----
  /** throws ENODATA when absent */
  getxattr(path: string, name: string, follow: boolean): Buffer;
  /** as getxattr, but a failure returns its errno (a number) instead of throwing */
  getxattrOrErrno(path: string, name: string, follow: boolean): Buffer | number;
  setxattr(path: string, name: string, value: Buffer, flags: number, follow: boolean): void;
  /** names as byte strings */
  listxattr(path: string, follow: boolean): string[];
  removexattr(path: string, name: string, follow: boolean): void;
  fgetxattr(fd: number, name: string): Buffer;
  fsetxattr(fd: number, name: string, value: Buffer, flags: number): void;
  flistxattr(fd: number): string[];
  fremovexattr(fd: number, name: string): void;

  // ---- process ----
  /** raise RLIMIT_NOFILE soft limit to the hard limit; returns the new soft limit */
  raiseNofileLimit(): number;
  /** detach from the controlling terminal: setsid(2) */
  setsid(): number;
  /** give the free pages of malloc's arenas back to the system: malloc_trim(0) (glibc; false elsewhere) */
  mallocTrim(): boolean;
  /** the CPUs the calling thread may run on, ascending: sched_getaffinity(0) */
  threadAffinity(): number[];
  /** let the calling thread (only) run on `cpus`: sched_setaffinity(0); EINVAL for a CPU it may not use */
  setThreadAffinity(cpus: number[]): void;
  /** the CPU thread `tid` last ran on (field 39 of /proc/TID/task/TID/stat); -1 when it cannot be read */
  taskCpu(tid: number): number;

  // ---- sockets ----
  /** the credentials of the peer of a connected unix socket: getsockopt(SO_PEERCRED) */
  peerCred(fd: number): { pid: number; uid: number; gid: number };

  // ---- mounts ----
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  /** open_tree(2): with OPEN_TREE_CLONE a detached copy of the mount at path (never attached anywhere) */
  openTree(dirfd: number, path: string, flags: number): number;
  /** mount_setattr(2) with struct mount_attr { attr_set, attr_clr } */
  mountSetattr(dirfd: number, path: string, flags: number, attrSet: number, attrClr: number): void;

  // ---- the FUSE device ----
  /** open("/dev/fuse", O_RDWR | O_CLOEXEC) */
  fuseOpen(): number;
  /**
   * Unprivileged mount via `fusermount3 -o OPTS -- TARGET` (the _FUSE_COMMFD socketpair
   * handshake); returns the device fd passed back with SCM_RIGHTS.
   */
  fusermount(target: string, options: string): number;
  /** a new /dev/fuse fd attached to the same connection (FUSE_DEV_IOC_CLONE) */
  fuseClone(devFd: number): number;
  /** FUSE_DEV_IOC_BACKING_OPEN: register `fd` as a passthrough backing file; returns the backing id */
  fuseBackingOpen(devFd: number, fd: number): number;
  /** FUSE_DEV_IOC_BACKING_CLOSE */
  fuseBackingClose(devFd: number, backingId: number): void;
  /**
   * Reads the fds on the JS thread: each fd is made non-blocking and polled by the event
   * loop; when requests are queued they are read (each with `readSize` bytes of room)
   * one after the other into `area` (no copy, no object per request) and `onBatch(count)`
   * is called once: request i came from fd index[3i] and is area[index[3i + 1]] up to
   * index[3i + 1] + index[3i + 2]. Both are overwritten by the next callback. At most
   * index.length / 3 (and 256) requests per call; area must hold at least readSize bytes.
   * When a reader ends (ENODEV: the connection was aborted or unmounted) `onEnd` is
   * called once per fd with that fd and the errno (0 = clean). EINTR/ENOENT are retried.
   * Requests that `known` answers (fuseKnownSet) are answered as they are read, and are
   * not handed to onBatch.
   */
  fuseStartPoller(fds: number[], readSize: number, area: Buffer, index: Int32Array,
    onBatch: (count: number) => void,
    onEnd: (fd: number, errno: number) => void, known?: KnownSetHandle): PollerHandle;
  /** stops polling (no callback after it) and lets the loop exit; safe to call twice */
  fuseStopPoller(handle: PollerHandle): void;
  /**
   * A set of answers a connection's readers give themselves, without calling onBatch
   * (fuseStartPoller's and fuseUringStart's last argument), empty.
   */
  fuseKnownSet(): KnownSetHandle;
  /**
   * `noXattrs`: the readers answer the node's requests themselves, every GETXATTR with
   * ENODATA and every LISTXATTR with an empty list; false, JS does. Node ids are positive.
   */
  fuseKnown(set: KnownSetHandle, nodeId: number, noXattrs: boolean): void;
  /** requests answered from the set, and the nodes in it: [GETXATTR, LISTXATTR, nodes] */
  fuseKnownAnswered(set: KnownSetHandle): [number, number, number];
  /**
   * Turns off the event loop's idle-time metrics (which Node.js turns on), so that libuv
   * no longer polls with a zero timeout before each sleep; true when they were on. The
   * loop's idle time (performance.eventLoopUtilization) stops growing after it.
   */
  loopIdleMetricsOff(): boolean;
  /**
   * FUSE over io_uring for a connection whose INIT negotiates FUSE_OVER_IO_URING: one
   * queue per possible CPU, `perQueue` entries each with a payload buffer of the size the
   * kernel checks (max_write and max_pages pages of the INIT reply). Made before the INIT
   * reply asks for the ring; fuseUringRegister (after the reply) hands the entries to the
   * kernel and throws its errno when it refuses. Requests come as the poller's do: copied
   * into `area`, described by `index` (fd, offset, length; the fd is the entry's token,
   * negative), `onBatch(count)`; the reply goes back with fuseUringCommit(handle, token,
   * buffers). `onEnd(errno)`: the ring stopped serving while not stopped.
   */
  fuseUringStart(devFd: number, perQueue: number, maxWrite: number, maxPages: number,
    area: Buffer, index: Int32Array, onBatch: (count: number) => void,
    onEnd: (errno: number) => void, known?: KnownSetHandle): { handle: UringHandle; queues: number };
  fuseUringRegister(handle: UringHandle): void;
  /** the reply to the request of `token` (throws ENOENT when the entry holds none) */
  fuseUringCommit(handle: UringHandle, token: number, bufs: Buffer[]): number;
  /** no callback after it; the ring's memory goes once the kernel hands back every entry */
  fuseUringStop(handle: UringHandle): void;
  /**
   * writev(2) of the buffers to a device fd; returns bytes written. A reply to an
   * interrupted request fails with ENOENT: the caller ignores that.
   */
  fuseWritev(fd: number, buffers: Buffer[]): number;
}
