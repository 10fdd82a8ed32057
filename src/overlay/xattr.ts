/**
 * Extended attributes through the mount.
 *
 * Reached through /proc/self/fd/<parent dir fd>/<name> without following the final
 * name (the root through its own fd), so a symlink in a layer is never followed.
 *
 * Private names, as kernel overlayfs (6.7+) treats them: names under the configured
 * prefix (`trusted.overlay.` as root) are *escaped*: a user's `trusted.overlay.foo` is
 * stored as `trusted.overlay.overlay.foo` and listed back as `trusted.overlay.foo`; the
 * overlay's own attributes (opaque, redirect, whiteout, origin ...) are never listed and
 * read as ENODATA. Differences: the other prefix (`user.overlay.` when the prefix is
 * `trusted.overlay.`, and the reverse) is also hidden and refused (EOPNOTSUPP) because
 * stratafs reads both when merging; the kernel passes it through. POSIX ACLs
 * (system.posix_acl_*) and every other name pass through. The names, both directions, are
 * src/layers/xattr-names.ts's (shared with the graph driver's Diff and exports). Changes
 * copy up first.
 * Reading and writing trusted.* by an unprivileged caller the kernel refuses before we
 * are asked (xattr_permission); listing is ours to filter.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import { native } from '../native';
import type { LowerXattrs, Node } from './inodes';
import { copyUp } from './copyup';
import { xattrPath } from '../layers/access';
import type { State } from './state';
import { storedXattrName, visibleXattrName } from '../layers/xattr-names';

const TRUSTED = 'trusted.';

/** The name stored on disk for a name the user gave (xattr-names.ts); EOPNOTSUPP when private. */
function toDisk(st: State, name: string): string {
  return storedXattrName(st.prefix, name) ?? fail(E.EOPNOTSUPP);
}

function where(st: State, node: Node): { path: string; follow: boolean } {
  const loc = st.locate(node);
  return xattrPath(loc.dirfd, loc.name);
}

/**
 * The value, or null when absent (ENODATA). Most files have no xattrs a user can see,
 * yet `ls -l` asks for security.selinux on each one every time (the kernel caches no
 * xattr but POSIX ACLs, system.posix_acl_access asked once per inode): the first read
 * on a node lists its xattrs (one listxattr, where a getxattr then a listxattr on a
 * miss took two); without any the node remembers it (setNoXattrs), later reads cost no
 * syscall and are answered by the bridge's reader without reaching here, and a name
 * not listed is a miss. A node still only in the lowers answers from its lower index
 * (lowerIndex): names and values read once.
 */
export function getxattr(st: State, node: Node, name: string): Buffer | null {
  if (node.noXattrs) return null;
  const disk = storedXattrName(st.prefix, name);
  if (disk === null) return null;
  if (!node.upper) return lowerValue(st, node, disk);
  const { path, follow } = where(st, node);
  if (!node.xattrsListed) {
    node.xattrsListed = true;
    const names = native.listxattr(path, follow);
    if (visible(st, names).length === 0) {
      st.setNoXattrs(node, true);
      return null;
    }
    if (!names.includes(disk)) return null;
  }
  return readValue(path, disk, follow);
}

function readValue(path: string, disk: string, follow: boolean): Buffer | null {
  const v = native.getxattrOrErrno(path, disk, follow);
  if (typeof v !== 'number') return v;
  if (v !== E.ENODATA) return fail(v);
  return null;
}

/** values up to this size are kept in a node's lower index; larger ones are read each time */
const LOWER_VALUE_MAX = 4096;

/**
 * The xattrs of a node's lower object, listed once (the lowers never change under a
 * mount). Valid only while the node is not in the upper: a copy-up drops it
 * (copyup.ts) and every caller asks `node.upper` first, so a copied-up or upper
 * file's xattrs never come from here.
 */
function lowerIndex(st: State, node: Node): LowerXattrs {
  // the caller asks xattrs: what a read-ahead listed is used (prefetch.ts)
  st.readAhead.namesUnasked = false;
  if (node.lowerXattrs !== null) return node.lowerXattrs;
  let disk = readAheadNames(st, node);
  if (disk === null) {
    disk = listLower(st, node);
    // the caller asks the xattrs of what it walks (the naive diff of containers-storage
    // lists and reads one of each entry): a walk's read-ahead lists them while it asks
    st.readAhead.xattrs = true;
  }
  const shown = visible(st, disk);
  const index: LowerXattrs = { disk, shown, values: new Map() };
  node.lowerXattrs = index;
  st.setNoXattrs(node, shown.length === 0);
  return index;
}

/**
 * A new node's lower xattrs from what a walk's read-ahead kept (the walk asks the xattrs
 * of what it walks: State.readAhead.xattrs), before anything is asked of it: a node
 * without any is then the bridge's to answer from its first GETXATTR or LISTXATTR on
 * (setNoXattrs), which the naive diff asks of every entry once. Nothing when not kept.
 */
export function learnReadAhead(st: State, node: Node): void {
  if (node.upper || node.lowerXattrs !== null) return;
  const disk = readAheadNames(st, node);
  if (disk === null) return;
  const shown = visible(st, disk);
  node.lowerXattrs = { disk, shown, values: new Map() };
  if (shown.length === 0) st.setNoXattrs(node, true);
}

/**
 * The names of the node's top lower object as the read-ahead of a listing kept them
 * (prefetch.ts; a directory's with its listing, another object's with its statx), so
 * that a fresh mount's `ls -l` makes no listxattr per file; null when not kept.
 */
function readAheadNames(st: State, node: Node): readonly string[] | null {
  const ref = node.lowers[0];
  if (ref === undefined) return null;
  return node.type === fsc.S_IFDIR ? st.caches.lowerXattrNames(ref.layer, ref.path) : st.caches.lowerFileXattrs(ref.layer, ref.path);
}

function listLower(st: State, node: Node): string[] {
  const { path, follow } = where(st, node);
  return native.listxattr(path, follow);
}

function lowerValue(st: State, node: Node, disk: string): Buffer | null {
  const index = lowerIndex(st, node);
  if (!index.disk.includes(disk)) return null;
  const known = index.values.get(disk);
  if (known !== undefined) return known;
  const { path, follow } = where(st, node);
  const v = readValue(path, disk, follow);
  if (v !== null && v.length <= LOWER_VALUE_MAX) index.values.set(disk, v);
  return v;
}

function visible(st: State, names: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    const shown = visibleXattrName(st.prefix, n);
    if (shown !== null) out.push(shown);
  }
  return out;
}

/**
 * The names a caller may see. `trusted.*` names are listed only to callers holding
 * CAP_SYS_ADMIN over the host, as the kernel's filesystems list them (the daemon reads
 * them with its own privilege); `mayListTrusted` is asked only when there are some.
 */
export function listxattr(st: State, node: Node, mayListTrusted: () => boolean = () => true): string[] {
  let out: string[];
  if (!node.upper) {
    // the caller lists xattr names (a diff, a copy with its xattrs): it will likely ask
    // those of every entry it walks, which a walk's read-ahead then lists too (while it asks)
    st.readAhead.xattrs = true;
    out = lowerIndex(st, node).shown;
  } else if (node.noXattrs) {
    // as getxattr: none since the last listing or copy-up, and stratafs is the only
    // writer of the upper while mounted (the bridge's reader answers these itself)
    out = [];
  } else {
    const { path, follow } = where(st, node);
    out = visible(st, native.listxattr(path, follow));
    st.setNoXattrs(node, out.length === 0);
    node.xattrsListed = true;
  }
  if (out.some(isTrusted) && !mayListTrusted()) return out.filter((n) => !isTrusted(n));
  return out;
}

function isTrusted(name: string): boolean {
  return name.startsWith(TRUSTED);
}

export async function setxattr(st: State, node: Node, name: string, value: Buffer, flags: number): Promise<void> {
  st.requireUpper();
  const disk = toDisk(st, name);
  await copyUp(st, node, { data: true, metaOnly: true });
  const { path, follow } = where(st, node);
  st.setNoXattrs(node, false);
  native.setxattr(path, disk, value, flags, follow);
}

export async function removexattr(st: State, node: Node, name: string): Promise<void> {
  st.requireUpper();
  const disk = toDisk(st, name);
  if (!node.upper) {
    // as kernel overlayfs: removing an attribute the lower object does not have fails
    // (ENODATA) without copying anything up
    const lower = where(st, node);
    native.getxattr(lower.path, disk, lower.follow);
  }
  await copyUp(st, node, { data: true, metaOnly: true });
  const { path, follow } = where(st, node);
  native.removexattr(path, disk, follow);
}
