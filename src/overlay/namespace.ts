/**
 * Creating and removing names: create, mkdir, mknod, symlink, link, unlink, rmdir.
 *
 * New objects are built under a fresh name in the work dir, given their owner (the
 * caller, or the parent's group when the merged parent is setgid; new directories then
 * inherit S_ISGID) and mode, and renamed into the upper: RENAME_NOREPLACE on an empty
 * name, a plain rename over a whiteout for a non-directory, RENAME_EXCHANGE with the
 * whiteout (then dropped) for a directory. A new directory is opaque when it replaces a
 * whiteout (the lower directory of that name stays hidden) and, as kernel overlayfs does
 * with redirect_dir=on (the mode stratafs always writes), when its parent merges lower
 * directories: there the mark saves the lookups below and keeps a lower directory of the
 * same name added offline from showing through.
 *
 * Removal: an upper object whose name a lower also has is replaced by a whiteout in one
 * step (a whiteout is made in the work dir and exchanged with it); a name only in the
 * lowers gets a whiteout in the (copied-up) parent. rmdir judges emptiness on the merged
 * view; an upper directory that holds only whiteouts is moved to the work dir and
 * removed there with them.
 *
 * Names starting with `.wh.` cannot be created (EINVAL): lookup hides them, so such a
 * file would be invisible. Kernel overlayfs allows them; it has no AUFS reading.
 */
import { constants as fsc } from 'node:fs';
import { E, fail, toErrno } from '../errors';
import { C, native } from '../native';
import type { Ctx, Entry, OpenResult } from '../fuse/api';
import { entryOf, PERM_MASK, S_ISGID } from './attr';
import { copyUp, removeTmp, removeTree, settleCopyUp } from './copyup';
import { creatorToHost } from './idmap';
import type { Node } from './inodes';
import { procFdPath, tryStatAt } from '../layers/access';
import { lookupNode, lowerHasName, nodeFor, resolve } from './lookup';
import { isMergedEmpty } from './readdir';
import type { State } from './state';
import { isAufsName, isWhiteout } from '../layers/whiteout';
import { backingKey, fileOpenResult, openFlagsFor } from './files';
import { acquireFd, releaseFd } from './handle-fds';
import { fault } from './faults';
import { ACL_ACCESS, ACL_DEFAULT, aclForCreate, type CreateAcl } from './acl';

interface Owner {
  uid: number;
  gid: number;
  /** the parent is setgid */
  sgid: boolean;
}

/**
 * Mode and ACLs of a new object. When the kernel left the umask to us (ctx.umask), the
 * parent's default ACL decides (acl.ts); otherwise the mode arrives final.
 */
function creation(st: State, ctx: Ctx, parent: Node, mode: number, isDir: boolean): CreateAcl {
  if (ctx.umask === undefined) return { mode: mode & PERM_MASK };
  // none (ENODATA, an errno value: no exception per create), or ACLs not supported
  const v = native.getxattrOrErrno(procFdPath(st.upperDirFd(parent)), ACL_DEFAULT, true);
  const parentDefault = typeof v === 'number' ? undefined : v;
  return aclForCreate(mode & PERM_MASK, ctx.umask, isDir, parentDefault);
}

/** Sets the ACLs of a new object at `path` (no-follow), built in the work dir. */
function applyAcls(path: string, acl: CreateAcl): void {
  if (acl.access) native.setxattr(path, ACL_ACCESS, acl.access, 0, false);
  if (acl.default) native.setxattr(path, ACL_DEFAULT, acl.default, 0, false);
}

/** Checks the name is free and the parent is in the upper; returns the owner for the new object. */
async function prepare(st: State, ctx: Ctx, parent: Node, name: string): Promise<Owner> {
  st.requireUpper();
  if (isAufsName(name)) fail(E.EINVAL);
  if (resolve(st, parent, name) !== null) fail(E.EEXIST);
  await copyUp(st, parent);
  const ps = st.stat(parent);
  const sgid = (ps.mode & S_ISGID) !== 0;
  return {
    uid: creatorToHost(st.config, 'uid', ctx.uid),
    gid: sgid ? ps.gid : creatorToHost(st.config, 'gid', ctx.gid),
    sgid,
  };
}

/**
 * Moves work/tmp to parent/name in the upper (see header). Returns true when it
 * replaced a whiteout. The free name, the common case, costs the rename alone: only
 * when RENAME_NOREPLACE finds the name taken is it looked at (a whiteout is replaced,
 * anything else is EEXIST).
 */
function install(st: State, parent: Node, name: string, tmp: string, isDir: boolean): boolean {
  const pfd = st.upperDirFd(parent);
  const work = st.workFd;
  try {
    native.renameat2(work, tmp, pfd, name, C.RENAME_NOREPLACE);
    return false;
  } catch (e) {
    if (toErrno(e) !== E.EEXIST) throw e;
  }
  const existing = tryStatAt(pfd, name);
  if (existing === null || !isWhiteout(pfd, name, existing, parent.upperXwhiteouts)) fail(E.EEXIST);
  if (!isDir) {
    native.renameat2(work, tmp, pfd, name, 0);
  } else {
    native.renameat2(work, tmp, pfd, name, C.RENAME_EXCHANGE);
    native.unlinkat(work, tmp, 0);
  }
  return true;
}

/** Is there a whiteout at name in the upper parent (the new object will replace it)? */
function overWhiteout(st: State, parent: Node, name: string): boolean {
  const pfd = st.upperDirFd(parent);
  const s = tryStatAt(pfd, name);
  return s !== null && isWhiteout(pfd, name, s, parent.upperXwhiteouts);
}

function finish(st: State, parent: Node, name: string, tmp: string, isDir: boolean): Entry {
  try {
    fault('create.before-install');
    install(st, parent, name, tmp, isDir);
  } catch (e) {
    removeTmp(st.workFd, tmp, isDir);
    throw e;
  }
  // the statx the lookup made of the new object is its attributes: no second one
  const r = resolve(st, parent, name) ?? fail(E.ENOENT);
  return entryOf(st, nodeFor(st, parent, name, r), r.upper ?? undefined);
}

export async function mkdir(st: State, ctx: Ctx, parent: Node, name: string, mode: number): Promise<Entry> {
  const o = await prepare(st, ctx, parent, name);
  const tmp = st.tmpName();
  const work = st.workFd;
  const acl = creation(st, ctx, parent, mode, true);
  native.mkdirat(work, tmp, 0o700);
  try {
    native.fchownat(work, tmp, o.uid, o.gid, C.AT_SYMLINK_NOFOLLOW);
    native.fchmodat(work, tmp, acl.mode | (o.sgid ? S_ISGID : 0));
    applyAcls(procFdPath(work, tmp), acl);
    if (parent.lowers.length > 0 || overWhiteout(st, parent, name)) {
      native.setxattr(procFdPath(work, tmp), `${st.prefix}opaque`, Buffer.from('y'), 0, false);
    }
  } catch (e) {
    removeTmp(work, tmp, true);
    throw e;
  }
  return finish(st, parent, name, tmp, true);
}

export async function mknod(st: State, ctx: Ctx, parent: Node, name: string, mode: number, major: number, minor: number): Promise<Entry> {
  // a 0/0 character device would read as a whiteout (kernel overlayfs refuses it too)
  if ((mode & fsc.S_IFMT) === fsc.S_IFCHR && major === 0 && minor === 0) fail(E.EPERM);
  const o = await prepare(st, ctx, parent, name);
  const tmp = st.tmpName();
  const work = st.workFd;
  const acl = creation(st, ctx, parent, mode, false);
  native.mknodat(work, tmp, (mode & fsc.S_IFMT) | 0o600, major, minor);
  try {
    native.fchownat(work, tmp, o.uid, o.gid, C.AT_SYMLINK_NOFOLLOW);
    native.fchmodat(work, tmp, acl.mode);
    applyAcls(procFdPath(work, tmp), acl);
  } catch (e) {
    removeTmp(work, tmp, false);
    throw e;
  }
  return finish(st, parent, name, tmp, false);
}

export async function symlink(st: State, ctx: Ctx, parent: Node, name: string, target: string): Promise<Entry> {
  const o = await prepare(st, ctx, parent, name);
  const tmp = st.tmpName();
  const work = st.workFd;
  native.symlinkat(target, work, tmp);
  try {
    native.fchownat(work, tmp, o.uid, o.gid, C.AT_SYMLINK_NOFOLLOW);
  } catch (e) {
    removeTmp(work, tmp, false);
    throw e;
  }
  return finish(st, parent, name, tmp, false);
}

export async function create(st: State, ctx: Ctx, parent: Node, name: string, mode: number, flags: number): Promise<{ entry: Entry; open: OpenResult }> {
  const o = await prepare(st, ctx, parent, name);
  const tmp = st.tmpName();
  const work = st.workFd;
  const acl = creation(st, ctx, parent, mode, false);
  const fd = acquireFd(st, null, () => native.openat(work, tmp, openFlagsFor(st, flags) | fsc.O_CREAT | fsc.O_EXCL, 0o600));
  let entry: Entry;
  try {
    native.fchown(fd, o.uid, o.gid);
    native.fchmod(fd, acl.mode);
    if (acl.access) native.fsetxattr(fd, ACL_ACCESS, acl.access, 0);
  } catch (e) {
    releaseFd(st, fd, undefined);
    removeTmp(work, tmp, false);
    throw e;
  }
  try {
    entry = finish(st, parent, name, tmp, false); // removes tmp itself when it fails
  } catch (e) {
    releaseFd(st, fd, undefined);
    throw e;
  }
  const node = st.node(entry.nodeId);
  const fh = st.addHandle({ kind: 'file', fd, node, upper: true });
  return { entry, open: fileOpenResult(st, fh, fd, flags, false, backingKey(node, false)) };
}

export async function link(st: State, node: Node, newParent: Node, newName: string): Promise<Entry> {
  st.requireUpper();
  if (node.type === fsc.S_IFDIR) fail(E.EPERM);
  if (isAufsName(newName)) fail(E.EINVAL);
  if (resolve(st, newParent, newName) !== null) fail(E.EEXIST);
  await copyUp(st, node);
  await copyUp(st, newParent);
  const src = st.locate(node);
  const pfd = st.upperDirFd(newParent);
  if (overWhiteout(st, newParent, newName)) {
    const tmp = st.tmpName();
    native.linkat(src.dirfd, src.name, st.workFd, tmp, 0);
    try {
      fault('link.before-rename');
      native.renameat2(st.workFd, tmp, pfd, newName, 0);
    } catch (e) {
      removeTmp(st.workFd, tmp, false);
      throw e;
    }
  } else {
    native.linkat(src.dirfd, src.name, pfd, newName, 0);
  }
  st.inodes.addName(node, newParent, newName);
  return entryOf(st, node);
}

/**
 * Takes parent/name (node) out of the merged view: whiteout when a lower has the name,
 * plain removal otherwise. The parent must be copied up already.
 */
export function removeName(st: State, parent: Node, name: string, node: Node): void {
  const upper = st.requireUpper();
  const isDir = node.type === fsc.S_IFDIR;
  // before taking pfd: the walk opens dirs and so may evict cached fds (src/layers/access.ts)
  const whiteout = lowerHasName(st, parent, name);
  const pfd = st.upperDirFd(parent);
  const work = st.workFd;
  if (node.upper) {
    const path = node.path();
    if (whiteout) {
      const w = st.tmpName();
      st.whiteouts.make(work, w);
      fault('unlink.before-exchange');
      native.renameat2(work, w, pfd, name, C.RENAME_EXCHANGE);
      fault('unlink.after-exchange');
      removeTmp(work, w, isDir);
    } else if (isDir) {
      const w = st.tmpName();
      native.renameat2(pfd, name, work, w, C.RENAME_NOREPLACE);
      removeTree(work, w);
    } else {
      native.unlinkat(pfd, name, 0);
    }
    if (isDir) st.dirs.invalidate(upper, path);
  } else {
    st.whiteouts.make(pfd, name);
  }
  st.inodes.unlinkName(parent, name);
}

/**
 * Removes name from parent. The node found for it may be new to the table (the kernel
 * never looked it up): held while in use, it leaves the table again whatever happens
 * unless the kernel or a handle still refers to it (inodes.ts).
 */
async function remove(st: State, parent: Node, name: string, wantDir: boolean): Promise<void> {
  st.requireUpper();
  const node = st.inodes.hold(lookupNode(st, parent, name));
  try {
    const isDir = node.type === fsc.S_IFDIR;
    if (isDir && !wantDir) fail(E.EISDIR);
    if (!isDir && wantDir) fail(E.ENOTDIR);
    if (isDir && !isMergedEmpty(st, node)) fail(E.ENOTEMPTY);
    await copyUp(st, parent);
    await settleCopyUp(node);
    removeName(st, parent, name, node);
  } finally {
    st.inodes.release(node);
  }
}

export function unlink(st: State, parent: Node, name: string): Promise<void> {
  return remove(st, parent, name, false);
}

export function rmdir(st: State, parent: Node, name: string): Promise<void> {
  return remove(st, parent, name, true);
}
