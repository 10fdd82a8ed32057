/**
 * rename(2) in the merged view, with RENAME_NOREPLACE and RENAME_EXCHANGE.
 *
 * - The source is copied up first (a file with its data, a directory as metadata
 *   only), and so are both parents.
 * - A directory that exists in a lower (it merges a lower directory) gets
 *   `<prefix>redirect` before it moves, like kernel overlayfs with redirect_dir=on: a
 *   plain name when it stays in the same parent and its lower directory is in the
 *   parent's lower directory, else the absolute path of its lower directory from the
 *   layer root ("/a/b"). Lookup then keeps merging that lower directory at the new name.
 * - A directory only in the upper moving into a directory that has lowers becomes
 *   opaque, so a lower directory of the new name cannot show through.
 * - When a lower still has the old name, a whiteout is left there (RENAME_WHITEOUT when
 *   the upper filesystem supports it, else a whiteout made right after).
 * - Over a target: files replace files; a directory replaces only an empty (merged
 *   view) directory, whose upper part (whiteouts only) is removed first. As in the
 *   kernel, a target directory that merges lowers is checked before anything is
 *   copied up, one only in the upper after the copy-ups and marks: a rename refused
 *   with ENOTEMPTY there leaves the source copied up and marked (harmless: the mark
 *   describes the directory at its old place as well).
 * RENAME_WHITEOUT from a caller is refused (EINVAL), as kernel overlayfs does.
 */
import { constants as fsc } from 'node:fs';
import { E, fail, toErrno } from '../errors';
import { C, native } from '../native';
import type { RenameFlags } from '../fuse/api';
import { copyUp, removeTree, settleCopyUp } from './copyup';
import type { Node } from './inodes';
import { basenameOf, dirnameOf, tryStatAt, xattrPath } from '../layers/access';
import { lookupNode, lowerHasName, tryLookupNode } from './lookup';
import { isMergedEmpty } from './readdir';
import type { State } from './state';
import { isAufsName, isWhiteout } from '../layers/whiteout';
import { fault } from './faults';

/** The redirect value for directory `node` once it is `newName` in `newParent`. */
export function redirectFor(node: Node, oldParent: Node, newParent: Node): string | null {
  const src = node.lowers[0];
  if (!src) return null;
  if (oldParent === newParent) {
    const pref = newParent.lowers.find((r) => r.layer === src.layer);
    if (pref && dirnameOf(src.path) === pref.path) return basenameOf(src.path);
  }
  return `/${src.path}`;
}

/** false for a directory with lower parts when redirects may not be written */
function canMove(st: State, node: Node): boolean {
  return st.config.redirectDir !== false || node.type !== fsc.S_IFDIR || node.lowers.length === 0;
}

/** Marks the upper directory name in dirfd so it keeps its merge at the new place. */
function markDir(st: State, node: Node, oldParent: Node, newParent: Node, dirfd: number, name: string): void {
  if (node.type !== fsc.S_IFDIR) return;
  const { path, follow } = xattrPath(dirfd, name);
  const redirect = redirectFor(node, oldParent, newParent);
  if (redirect !== null) {
    native.setxattr(path, `${st.prefix}redirect`, Buffer.from(redirect, 'latin1'), 0, follow);
  } else if (newParent.lowers.length > 0) {
    native.setxattr(path, `${st.prefix}opaque`, Buffer.from('y'), 0, follow);
  }
}

export async function rename(st: State, parent: Node, name: string, newParent: Node, newName: string, flags: RenameFlags): Promise<void> {
  st.requireUpper();
  if (flags.whiteout || (flags.exchange && flags.noReplace)) fail(E.EINVAL);
  if (isAufsName(newName)) fail(E.EINVAL);
  // the nodes found may be new to the table (never looked up by the kernel): held while
  // in use, they leave it again at the end unless something else refers to them
  const node = st.inodes.hold(lookupNode(st, parent, name));
  let target: Node | null = null;
  try {
    target = tryLookupNode(st, newParent, newName);
    if (target) st.inodes.hold(target);
    if (target === node) return;
    // redirect_dir=off: a directory from a lower cannot move (kernel: EXDEV, checked first)
    if (!canMove(st, node) || (flags.exchange && target !== null && !canMove(st, target))) fail(E.EXDEV);
    if (target && flags.noReplace) fail(E.EEXIST);
    if (flags.exchange) {
      if (!target) fail(E.ENOENT);
      return await exchange(st, node, parent, name, target, newParent, newName);
    }
    return await move(st, node, parent, name, target, newParent, newName);
  } finally {
    st.inodes.release(node);
    if (target) st.inodes.release(target);
  }
}

/** rename without RENAME_EXCHANGE (see header) */
async function move(st: State, node: Node, parent: Node, name: string, target: Node | null, newParent: Node, newName: string): Promise<void> {
  const upper = st.requireUpper();
  const isDir = node.type === fsc.S_IFDIR;
  const targetDir = target !== null && target.type === fsc.S_IFDIR;
  // a directory only in the upper is checked after the marks, as the kernel does
  const pureUpperTarget = targetDir && target.upper && target.lowers.length === 0;
  if (target) {
    if (isDir && !targetDir) fail(E.ENOTDIR);
    if (!isDir && targetDir) fail(E.EISDIR);
    if (targetDir && !pureUpperTarget && !isMergedEmpty(st, target)) fail(E.ENOTEMPTY);
  }
  await copyUp(st, node);
  await copyUp(st, newParent);
  // a copy-up of the target in flight renames into newName: let it finish first (after
  // it the target is in the upper and is replaced below like any upper object)
  if (target) await settleCopyUp(target);
  const oldPath = node.path();
  const targetPath = target?.path() ?? '';
  const oldWhiteout = lowerHasName(st, parent, name);
  markDir(st, node, parent, newParent, st.upperDirFd(parent), name);
  fault('rename.after-mark');
  // a target only in the upper is judged by the upper filesystem's rename itself, as
  // the kernel does (a refused RENAME_WHITEOUT still updates the old parent's times there)
  // after the walks above: they open dirs and so may evict cached fds (src/layers/access.ts)
  const pfd = st.upperDirFd(parent);
  const npfd = st.upperDirFd(newParent);
  const work = st.workFd;

  const existing = tryStatAt(npfd, newName);
  const overWhiteout = existing !== null && isWhiteout(npfd, newName, existing, newParent.upperXwhiteouts);
  if (existing !== null && !overWhiteout && !pureUpperTarget && (existing.mode & fsc.S_IFMT) === fsc.S_IFDIR) {
    // an empty merged target directory: take its upper part (whiteouts) out of the way
    const w = st.tmpName();
    native.renameat2(npfd, newName, work, w, C.RENAME_NOREPLACE);
    removeTree(work, w);
    if (target) st.dirs.invalidate(upper, target.path());
  }

  if (overWhiteout && isDir) {
    // a directory cannot replace a device node: swap, then keep or drop the whiteout
    native.renameat2(pfd, name, npfd, newName, C.RENAME_EXCHANGE);
    if (!oldWhiteout) native.unlinkat(pfd, name, 0);
  } else if (oldWhiteout) {
    try {
      native.renameat2(pfd, name, npfd, newName, C.RENAME_WHITEOUT);
    } catch (e) {
      if (toErrno(e) !== E.EINVAL && toErrno(e) !== E.EOPNOTSUPP) throw e;
      native.renameat2(pfd, name, npfd, newName, 0);
      st.whiteouts.make(pfd, name);
    }
  } else {
    native.renameat2(pfd, name, npfd, newName, 0);
  }
  fault('rename.after-rename');
  if (isDir) st.dirs.invalidate(upper, oldPath);
  // the replaced directory is gone: no cached fd may stand for its path any more
  if (pureUpperTarget) st.dirs.invalidate(upper, targetPath);
  st.inodes.moveName(node, parent, name, newParent, newName);
}

async function exchange(st: State, a: Node, aParent: Node, aName: string, b: Node, bParent: Node, bName: string): Promise<void> {
  const upper = st.requireUpper();
  await copyUp(st, a);
  await copyUp(st, b);
  const aPath = a.path();
  const bPath = b.path();
  const afd = st.upperDirFd(aParent);
  const bfd = st.upperDirFd(bParent);
  markDir(st, a, aParent, bParent, afd, aName);
  markDir(st, b, bParent, aParent, bfd, bName);
  native.renameat2(afd, aName, bfd, bName, C.RENAME_EXCHANGE);
  if (a.type === fsc.S_IFDIR) st.dirs.invalidate(upper, aPath);
  if (b.type === fsc.S_IFDIR) st.dirs.invalidate(upper, bPath);
  st.inodes.unlinkName(aParent, aName);
  st.inodes.unlinkName(bParent, bName);
  // unlinkName dropped the aliases; put them back at their new places
  st.inodes.putName(a, bParent, bName);
  st.inodes.putName(b, aParent, aName);
}
