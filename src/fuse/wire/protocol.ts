/**
 * FUSE protocol numbers: opcodes, INIT flags, open/setattr/write flags, notify codes and
 * the fixed sizes of the structures we read and write. The only module of stratafs that
 * spells these numbers; taken from include/uapi/linux/fuse.h (protocol 7.45). The
 * installed Debian header is 7.38, so the newer values (flags2 bits such as PASSTHROUGH,
 * the 7.45 fuse_init_out tail, FOPEN_PASSTHROUGH, backing_id) are written down here.
 */

export const KERNEL_VERSION = 7;
/** the newest minor version this implementation speaks */
export const KERNEL_MINOR_VERSION = 45;
/** the oldest minor version accepted (INIT_EXT, SETXATTR_EXT and flags2 arrive with 7.36) */
export const MIN_MINOR_VERSION = 31;

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
} as const;
export type OpcodeName = keyof typeof Opcode;

const opcodeNames = new Map<number, string>(Object.entries(Opcode).map(([k, v]) => [v, k]));
export function opcodeName(op: number): string {
  return opcodeNames.get(op) ?? `OP_${op}`;
}

/**
 * INIT flags as one 64-bit set: bits 0-31 travel in `flags`, bits 32-63 in `flags2`
 * (only when FUSE_INIT_EXT is set on both sides).
 */
export const InitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  OVER_IO_URING: 1n << 41n,
  REQUEST_TIMEOUT: 1n << 42n,
} as const;
export type InitFlagName = keyof typeof InitFlag;

/** names of the bits set in a 64-bit INIT flag set (for logs and tests) */
export function initFlagNames(flags: bigint): InitFlagName[] {
  return (Object.keys(InitFlag) as InitFlagName[]).filter((k) => (flags & InitFlag[k]) !== 0n);
}

/** fuse_open_out.open_flags */
export const FOPEN = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  PARALLEL_DIRECT_WRITES: 1 << 6,
  PASSTHROUGH: 1 << 7,
} as const;

/** fuse_setattr_in.valid */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const GETATTR_FH = 1 << 0;
export const RELEASE_FLUSH = 1 << 0;
export const WRITE_CACHE = 1 << 0;
export const WRITE_LOCKOWNER = 1 << 1;
export const WRITE_KILL_SUIDGID = 1 << 2;
export const READ_LOCKOWNER = 1 << 1;
export const FSYNC_FDATASYNC = 1 << 0;
/** fuse_open_in.open_flags / fuse_create_in.open_flags */
export const OPEN_KILL_SUIDGID = 1 << 0;
export const SETXATTR_ACL_KILL_SGID = 1 << 0;
export const EXPIRE_ONLY = 1 << 0;
/** bit 0 of an INTERRUPT's own unique */
export const INT_REQ_BIT = 1n;

/** RENAME2 flags as the kernel forwards them (renameat2(2) values) */
export const RENAME_FLAG = {
  NOREPLACE: 1 << 0,
  EXCHANGE: 1 << 1,
  WHITEOUT: 1 << 2,
} as const;

export const NotifyCode = {
  POLL: 1,
  INVAL_INODE: 2,
  INVAL_ENTRY: 3,
  STORE: 4,
  RETRIEVE: 5,
  DELETE: 6,
  RESEND: 7,
  INC_EPOCH: 8,
} as const;

/** Structure sizes in bytes. */
export const Size = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  INIT_IN_MIN: 16,
  INIT_IN: 64,
  INIT_OUT: 64,
  OPEN_OUT: 16,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  GETXATTR_OUT: 8,
  LSEEK_OUT: 8,
  DIRENT_BASE: 24,
  FORGET_ONE: 16,
  NOTIFY_INVAL_INODE: 24,
  NOTIFY_INVAL_ENTRY: 16,
  NOTIFY_DELETE: 24,
  SETXATTR_IN: 8,
  SETXATTR_IN_EXT: 16,
} as const;

/** pages of 4 KiB in one request (MAX_PAGES) and the resulting max_write */
export const MAX_PAGES = 256;
export const MAX_WRITE = 1024 * 1024;
/** device read buffer: one max_write payload plus room for the header and request struct */
export const READ_BUFFER_SIZE = MAX_WRITE + 64 * 1024;

/** dirent.h IFTODT: a dirent's d_type is the S_IFMT bits of the mode shifted down by this */
export const IFTODT_SHIFT = 12;
