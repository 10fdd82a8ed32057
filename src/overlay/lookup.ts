/**
 * Name lookup in the merged view.
 *
 * Rules (those of kernel overlayfs):
 * - The upper shadows the lowers; a lower shadows the lowers below it.
 * - A whiteout (any form, see src/layers/whiteout.ts) hides the name in every layer below.
 * - A non-directory ends the search. Below a directory, a non-directory of the same
 *   name is not part of the result (a file under a dir is not merged): the merge stops.
 * - Directories found in several layers merge; an opaque directory stops the descent.
 * - `<prefix>redirect` on a directory (written when a directory that exists in a lower
 *   is renamed) says where to continue in the layers below: an absolute path from the
 *   layer root ("/a/b"), or a plain name in the same parent directory.
 * - `.wh.*` names are never visible.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import type { Stat } from '../native';
import { Node, statKey, type LowerRef } from './inodes';
import { basenameOf, dirnameOf, joinPath, tryGetXattr, tryStatAt, type Layer } from '../layers/access';
import type { State } from './state';
import { dirMarks, isAufsName, isWhiteout, readPrivateXattr } from '../layers/whiteout';

export interface FoundLower extends LowerRef {
  stat: Stat;
}

export interface Resolved {
  /** S_IFMT bits */
  type: number;
  upper: Stat | null;
  upperXwhiteouts: boolean;
  lowers: FoundLower[];
  /** upper is a metacopy file whose data is lowers[0] */
  metacopy: boolean;
}

export function isDirStat(s: Stat): boolean {
  return (s.mode & fsc.S_IFMT) === fsc.S_IFDIR;
}

/** Resolves `name` in directory node `parent`; null when it is not in the merged view. */
export function resolve(st: State, parent: Node, name: string): Resolved | null {
  if (parent.type !== fsc.S_IFDIR) fail(E.ENOTDIR);
  // a removed directory holds nothing, whatever its lowers still have
  if (parent.removed) fail(E.ENOENT);
  if (isAufsName(name) || name === '.' || name === '..') return null;
  let upper: Stat | null = null;
  let upperXwhiteouts = false;
  let redirect: string | null = null;
  if (parent.upper && st.upper) {
    const fd = st.dirs.get(st.upper, parent.path());
    const s = tryStatAt(fd, name);
    if (s) {
      if (isWhiteout(fd, name, s, parent.upperXwhiteouts)) return null;
      if (!isDirStat(s)) return nonDir(st, parent, fd, name, s);
      const marks = dirMarks(fd, name, null);
      upper = s;
      upperXwhiteouts = marks.xwhiteouts;
      if (marks.opaque) return { type: fsc.S_IFDIR, upper, upperXwhiteouts, lowers: [], metacopy: false };
      redirect = marks.redirect;
    }
  }
  const lowers = walkLowers(st, parent, name, redirect, upper !== null);
  if (upper === null && lowers.length === 0) return null;
  const top = upper ?? (lowers[0] as FoundLower).stat;
  return { type: top.mode & fsc.S_IFMT, upper, upperXwhiteouts, lowers, metacopy: false };
}

/**
 * An upper non-directory. A metacopy file (written by kernel overlayfs with
 * metacopy=on: metadata only, no data blocks, `<prefix>metacopy` set) takes its data
 * from the lower file of the same name, or at its `<prefix>redirect` (absolute).
 */
function nonDir(st: State, parent: Node, fd: number, name: string, s: Stat): Resolved {
  const type = s.mode & fsc.S_IFMT;
  const plain: Resolved = { type, upper: s, upperXwhiteouts: false, lowers: [], metacopy: false };
  if (type !== fsc.S_IFREG || s.size === 0) return plain;
  // (a metacopy file has no data blocks, but an xattr block may count in st_blocks)
  if (tryGetXattr(fd, name, `${st.prefix}metacopy`) === null) return plain;
  const r = readPrivateXattr(fd, name, 'redirect');
  const data = walkLowers(st, parent, name, r === null ? null : r.toString('latin1'), false)[0];
  if (!data || (data.stat.mode & fsc.S_IFMT) !== fsc.S_IFREG) return plain;
  return { type, upper: s, upperXwhiteouts: false, lowers: [data], metacopy: true };
}

/**
 * The lower part of a lookup: where `name` of `parent` exists in the lowers, top
 * first, after `redirect` (from the upper) and whiteouts. `haveDir`: a directory was
 * already found above, so only directories continue the merge.
 */
export function walkLowers(st: State, parent: Node, name: string, redirect: string | null, haveDir: boolean): FoundLower[] {
  const out: FoundLower[] = [];
  let abs: string | null = null;
  let rel = name;
  const apply = (r: string): void => {
    if (r.startsWith('/')) abs = r.replace(/^\/+/, '');
    else if (abs !== null) abs = joinPath(dirnameOf(abs), r);
    else rel = r;
  };
  if (redirect !== null) apply(redirect);
  let dirSeen = haveDir;
  for (const layer of st.lowers) {
    let dirPath: string;
    let base: string;
    let xw = false;
    if (abs !== null) {
      dirPath = dirnameOf(abs);
      base = basenameOf(abs);
      if (base === '') break;
    } else {
      const pref = parent.lowers.find((r) => r.layer === layer);
      if (!pref) continue;
      dirPath = pref.path;
      base = rel;
      xw = pref.xwhiteouts;
    }
    const fd = st.dirs.tryGet(layer, dirPath);
    if (fd === null) continue;
    if (st.aufs.hides(layer, dirPath, fd, base)) break;
    if (st.caches.lowerLacks(layer, dirPath, base)) continue;
    const s = st.caches.lowerStat(layer, joinPath(dirPath, base), () => tryStatAt(fd, base));
    if (!s) continue;
    if (isWhiteout(fd, base, s, xw)) break;
    const path = joinPath(dirPath, base);
    if (!isDirStat(s)) {
      if (!dirSeen) out.push({ layer, path, stat: s, xwhiteouts: false });
      break;
    }
    const marks = dirMarks(fd, base, () => st.aufs.opaque(layer, path, fd, base, () => st.dirs.tryGet(layer, path)));
    out.push({ layer, path, stat: s, xwhiteouts: marks.xwhiteouts });
    dirSeen = true;
    if (marks.opaque) break;
    if (marks.redirect !== null) apply(marks.redirect);
  }
  return out;
}

/** Does any lower show `name` in `parent` (ignoring the upper)? Decides whether a whiteout is needed. */
export function lowerHasName(st: State, parent: Node, name: string): boolean {
  if (parent.lowers.length === 0) return false;
  return walkLowers(st, parent, name, null, false).length > 0;
}

function keyOf(st: State, r: Resolved): string {
  if (r.upper) return statKey(st.upper as Layer, r.upper);
  const l = r.lowers[0] as FoundLower;
  return statKey(l.layer, l.stat);
}

function refsOf(r: Resolved): LowerRef[] {
  return r.lowers.map(({ layer, path, xwhiteouts }) => ({ layer, path, xwhiteouts }));
}

/**
 * The node for `name` in `parent`: the known one when it still names the same object,
 * else a new one. Does not touch lookup counts.
 */
export function lookupNode(st: State, parent: Node, name: string): Node {
  const r = resolve(st, parent, name) ?? fail(E.ENOENT);
  return nodeFor(st, parent, name, r);
}

export function nodeFor(st: State, parent: Node, name: string, r: Resolved): Node {
  const key = keyOf(st, r);
  const known = parent.children.get(name);
  if (known && known.key === key && known.type === r.type) {
    known.upper = r.upper !== null;
    known.upperXwhiteouts = r.upperXwhiteouts;
    known.lowers = refsOf(r);
    known.metacopy = r.metacopy;
    return known;
  }
  if (known) {
    // the name is another object now: the old node leaves the table if nothing holds it
    st.inodes.unlinkName(parent, name);
    st.inodes.maybeDrop(known);
  }
  if (r.upper && r.upper.nlink > 1 && r.type !== fsc.S_IFDIR) {
    // another name of an upper file we know: a hard link, the same node
    const linked = st.inodes.upperNode(key, r.type);
    if (linked) {
      st.inodes.addName(linked, parent, name);
      return linked;
    }
  }
  const origin = r.lowers[0];
  const ino = origin ? st.foldIno(origin.layer, origin.stat.ino) : st.foldIno(st.upper as Layer, (r.upper as Stat).ino);
  const node = st.inodes.add((id) => new Node(id, parent, name, r.type, r.upper !== null, refsOf(r), ino));
  st.inodes.setKey(node, key);
  node.upperXwhiteouts = r.upperXwhiteouts;
  node.metacopy = r.metacopy;
  return node;
}

/** The node for `name` if it exists, else null. */
export function tryLookupNode(st: State, parent: Node, name: string): Node | null {
  const r = resolve(st, parent, name);
  return r === null ? null : nodeFor(st, parent, name, r);
}
