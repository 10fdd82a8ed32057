/**
 * The values replies carry to the kernel as they are: attributes (fuse_attr), entries
 * (fuse_entry_out without its timeouts), statfs (fuse_kstatfs) and directory entries
 * (fuse_dirent). The filesystem API (src/fuse/api.ts) re-exports them: the filesystem
 * returns these, the encoders write them.
 */
import type { Int64 } from '../../int64';

/** The FUSE node id: 1 is the root, others are handed out by the filesystem. */
export type NodeId = number;

/** Attributes as reported to the kernel. */
export interface Attr {
  /** st_ino reported to users (stable across copy-up) */
  ino: bigint;
  size: Int64;
  blocks: Int64;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
  /** type and permission bits (S_IFMT | 07777) */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  blksize: number;
}

export interface Entry {
  nodeId: NodeId;
  generation: number;
  attr: Attr;
}

/** Seconds the kernel may cache a name -> node mapping (entry) and attributes (attr). */
export interface CacheTimeouts {
  entry: number;
  attr: number;
}

export interface DirEntryOut {
  /** byte string */
  name: string;
  /** st_ino as readdir reports it */
  ino: bigint;
  /** file type bits (S_IFMT part of the mode) */
  type: number;
  /** cookie that continues the listing *after* this entry */
  nextOffset: number;
}

export interface FsStat {
  blocks: Int64;
  bfree: Int64;
  bavail: Int64;
  files: Int64;
  ffree: Int64;
  bsize: number;
  namelen: number;
  frsize: number;
}
