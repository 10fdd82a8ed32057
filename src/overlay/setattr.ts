/**
 * setattr: chown, chmod, truncate, utimens — each copies the node up first (truncate to
 * 0 without its data), as does a setattr with nothing to change (see emptySetattr). Order: owner (which may clear set-id bits), mode, size, times
 * (last, since truncating moves mtime). Times keep nanoseconds; 'now' is UTIME_NOW and
 * an absent time is UTIME_OMIT.
 */
import { constants as fsc } from 'node:fs';
import { killedMode } from '../creds';
import { E, fail } from '../errors';
import { C, native } from '../native';
import type { Attr, Ctx, SetattrChanges } from '../fuse/api';
import { getAttr, PERM_MASK } from './attr';
import { copyUp } from './copyup';
import { idToHost } from './idmap';
import type { Node } from './inodes';
import { procFdPath } from '../layers/access';
import type { State } from './state';

type TimeChange = SetattrChanges['atime'];

/** (uid_t)-1 / (gid_t)-1: fchownat leaves that id as it is */
const SAME_ID = 0xffffffff;

function timeArgs(t: TimeChange): [number, number] {
  if (t === undefined) return [0, C.UTIME_OMIT];
  if (t === 'now') return [0, C.UTIME_NOW];
  return [t.sec, t.nsec];
}

export async function setattr(st: State, ctx: Ctx, node: Node, ch: SetattrChanges): Promise<Attr> {
  const changes = ch.mode !== undefined || ch.uid !== undefined || ch.gid !== undefined
    || ch.size !== undefined || ch.atime !== undefined || ch.mtime !== undefined;
  st.requireUpper();
  if (!changes) return emptySetattr(st, ctx, node);
  if (ch.size !== undefined && node.type === fsc.S_IFDIR) fail(E.EISDIR);
  // an id outside the mapping fails (EINVAL) before anything is copied up
  const newUid = ch.uid === undefined ? undefined : idToHost(st.config, 'uid', ch.uid);
  const newGid = ch.gid === undefined ? undefined : idToHost(st.config, 'gid', ch.gid);
  await copyUp(st, node, { data: ch.size !== 0, metaOnly: ch.size === undefined });
  const loc = st.locate(node);
  const { dirfd, name } = loc;
  if (newUid !== undefined || newGid !== undefined) {
    // an id not given stays as it is: (uid_t)-1 to fchownat, no statx to read it first
    native.fchownat(dirfd, name, newUid ?? SAME_ID, newGid ?? SAME_ID, C.AT_SYMLINK_NOFOLLOW | (name === '' ? C.AT_EMPTY_PATH : 0));
  }
  if (ch.mode !== undefined) {
    // fchmodat follows a final symlink; a symlink's mode cannot change on Linux
    if (node.type === fsc.S_IFLNK) fail(E.EOPNOTSUPP);
    if (name === '') native.fchmodat(C.AT_FDCWD, procFdPath(dirfd), ch.mode & PERM_MASK);
    else native.fchmodat(dirfd, name, ch.mode & PERM_MASK);
  }
  if (ch.size !== undefined) {
    const h = ch.fh === undefined ? undefined : st.handles.get(ch.fh);
    if (h && h.kind === 'file' && h.upper) {
      native.ftruncate(h.fd, ch.size);
    } else {
      if (node.type !== fsc.S_IFREG) fail(E.EINVAL);
      const fd = native.openat(dirfd, name, fsc.O_WRONLY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
      try {
        native.ftruncate(fd, ch.size);
      } finally {
        native.close(fd);
      }
    }
  }
  if (ch.atime !== undefined || ch.mtime !== undefined) {
    const [as, an] = timeArgs(ch.atime);
    const [ms, mn] = timeArgs(ch.mtime);
    if (name === '') native.utimensat(C.AT_FDCWD, procFdPath(dirfd), as, an, ms, mn, 0);
    else native.utimensat(dirfd, name, as, an, ms, mn, C.AT_SYMLINK_NOFOLLOW);
  }
  return getAttr(st, node);
}

/**
 * A setattr that changes nothing the kernel names: chown(path, -1, -1) arrives so (the
 * VFS's request to drop the set-id bits and file capabilities is left to us under
 * HANDLE_KILLPRIV_V2). Kernel overlayfs copies up on every setattr and lets the upper
 * filesystem drop those bits; so does this, with a chown to the same ids, which makes
 * the upper filesystem apply exactly the VFS rules (S_ISUID always, S_ISGID when the
 * group may execute, security.capability). That chown runs with our privileges, so
 * S_ISGID without group-exec, which the VFS drops when the caller is outside the file's
 * group, is dropped here (src/creds.ts). Directories keep their bits.
 */
async function emptySetattr(st: State, ctx: Ctx, node: Node): Promise<Attr> {
  await copyUp(st, node, { data: true, metaOnly: true });
  if (node.type !== fsc.S_IFDIR) {
    const { dirfd, name } = st.locate(node);
    native.fchownat(dirfd, name, SAME_ID, SAME_ID, C.AT_SYMLINK_NOFOLLOW | (name === '' ? C.AT_EMPTY_PATH : 0));
    const attr = getAttr(st, node);
    const m = killedMode(attr.mode, ctx, attr.gid);
    if (m !== attr.mode && node.type !== fsc.S_IFLNK) {
      if (name === '') native.fchmodat(C.AT_FDCWD, procFdPath(dirfd), m & PERM_MASK);
      else native.fchmodat(dirfd, name, m & PERM_MASK);
    }
  }
  return getAttr(st, node);
}
