/**
 * Writing metacopy files: an upper regular file that holds the metadata of a lower
 * file (owner, mode, times, xattrs) and its size, but no data; reads take the data from
 * the lower file (src/overlay: lookup.ts finds it, files.ts opens it) until the first write copies
 * it in (copyup.ts, completeMetacopy).
 *
 * The format is kernel overlayfs' (metacopy=on): the `<prefix>metacopy` xattr with an
 * empty value (the kernel writes a value only with fs-verity digests), a sparse file of
 * the lower file's size, and `<prefix>redirect` (an absolute layer path) when the data
 * is not at the lower path the file's own parent gives. A chmod of a 1 GiB lower file
 * so costs a few metadata syscalls instead of copying a gigabyte, and an upper written
 * this way mounts with kernel overlayfs when that is mounted with metacopy=on.
 */
import { constants as fsc } from 'node:fs';
import { C, native } from '../native';
import { xattrPath } from './access';
import type { Int64 } from '../int64';

/** Gives the (empty) copy `name` in the work dir the lower file's size, without data blocks. */
export function sizeOnly(workFd: number, name: string, size: Int64): void {
  if (size === 0) return;
  const fd = native.openat(workFd, name, fsc.O_WRONLY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  try {
    native.ftruncate(fd, size);
  } finally {
    native.close(fd);
  }
}

/** Marks the copy `name` in the work dir as a metacopy file. */
export function markMetacopy(st: { readonly workFd: number; readonly prefix: string }, name: string): void {
  const { path, follow } = xattrPath(st.workFd, name);
  native.setxattr(path, `${st.prefix}metacopy`, Buffer.alloc(0), 0, follow);
}
