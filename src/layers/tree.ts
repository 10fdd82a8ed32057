/**
 * A layer's tree without the mounts below it.
 *
 * A process that serves FUSE mounts must never look a name up inside one of them (it
 * would wait for a reply only it can send). A mountpoint can lie inside a layer, though:
 * the daemon's own mount B on `L/sub` while mount A reads lower `L`, or a mount on a
 * directory of its own lower. Kernel overlayfs serves both because it reads each layer
 * through a private clone of the layer's mount, where nothing is mounted below. This
 * does the same: `open_tree(path, OPEN_TREE_CLONE)` without AT_RECURSIVE gives an fd on
 * a detached copy of the tree at `path` holding no submount (ours included, and any
 * mounted later); every lookup relative to that fd stays on the layer's filesystem.
 *
 * Cloning needs CAP_SYS_ADMIN over the mount namespace. Without it `openLayerTree`
 * answers null and the caller keeps the plain fd; the mount server then refuses the
 * layouts that would cross one of its mounts (src/server/own-mounts.ts).
 */
import { toErrno, E } from '../errors';
import { C, native } from '../native';

let allowed: boolean | undefined;

/** errnos that mean "no clone here" rather than "no such layer" */
function refused(errno: number): boolean {
  return errno === E.EPERM || errno === E.EACCES || errno === E.ENOSYS || errno === E.EINVAL;
}

/** Can this process clone trees (asked once, by cloning the root directory's mount)? */
export function treeClonesAllowed(): boolean {
  if (allowed === undefined) {
    try {
      native.close(native.openTree(C.AT_FDCWD, '/', C.OPEN_TREE_CLONE | C.OPEN_TREE_CLOEXEC));
      allowed = true;
    } catch (e) {
      if (!refused(toErrno(e))) throw e;
      allowed = false;
    }
  }
  return allowed;
}

/**
 * An O_PATH fd on a detached, non-recursive clone of the tree at `path` (absolute,
 * trusted: symlinks in it are followed), or null where this process may not clone.
 */
export function openLayerTree(path: string): number | null {
  if (!treeClonesAllowed()) return null;
  try {
    return native.openTree(C.AT_FDCWD, path, C.OPEN_TREE_CLONE | C.OPEN_TREE_CLOEXEC);
  } catch (e) {
    if (refused(toErrno(e))) return null;
    throw e;
  }
}
