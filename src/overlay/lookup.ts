/**
 * Name lookup in the merged view: the merge rules themselves (those of kernel overlayfs)
 * are src/layers/merge.ts, shared with every other reader of layers; this module binds
 * them to the node table.
 */
import { constants as fsc } from 'node:fs';
import { E, fail } from '../errors';
import type { Stat } from '../native';
import { Node, statKey, type LowerRef } from './inodes';
import type { Layer } from '../layers/access';
import { isDirStat, resolveName, walkLowers as walkMerged, type FoundLower, type Resolved, type UpperDir } from '../layers/merge';
import type { State } from './state';
import { learnReadAhead } from './xattr';

export { isDirStat, type FoundLower, type Resolved };

/** Resolves `name` in directory node `parent`; null when it is not in the merged view. */
export function resolve(st: State, parent: Node, name: string): Resolved | null {
  if (parent.type !== fsc.S_IFDIR) fail(E.ENOTDIR);
  // a removed directory holds nothing, whatever its lowers still have
  if (parent.removed) fail(E.ENOENT);
  const upper: UpperDir | null = parent.upper && st.upper
    ? { layer: st.upper, path: parent.path(), xwhiteouts: parent.upperXwhiteouts, metacopyOf: (n, s) => knownMetacopy(st, parent, n, s) }
    : null;
  return resolveName(st, upper, parent.lowers, name);
}

/**
 * Whether the upper file `s` at `name` in `parent` is a metacopy file, when its node is
 * known (undefined otherwise): the node of that same upper inode (its key) says it.
 * stratafs is the only writer of the upper, and it marks or unmarks a metacopy file
 * only in copy-up, which updates the node in the same synchronous step (copyup.ts); so
 * a lookup of a known upper file reads no `metacopy` xattr.
 */
function knownMetacopy(st: State, parent: Node, name: string, s: Stat): boolean | undefined {
  const known = parent.child(name);
  if (known === undefined || !known.upper || known.type !== (s.mode & fsc.S_IFMT)) return undefined;
  return known.key === statKey(st.upper as Layer, s) ? known.metacopy : undefined;
}

/**
 * The lower part of a lookup of `name` in `parent` (see src/layers/merge.ts walkLowers).
 */
export function walkLowers(st: State, parent: Node, name: string, redirect: string | null, haveDir: boolean): FoundLower[] {
  return walkMerged(st, parent.lowers, name, redirect, haveDir);
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
  return r.lowers.map(({ layer, path, xwhiteouts, data }) => (data ? { layer, path, xwhiteouts, data } : { layer, path, xwhiteouts }));
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
  const known = parent.child(name);
  if (known && known.key === key && known.type === r.type) {
    known.upper = r.upper !== null;
    known.upperXwhiteouts = r.upperXwhiteouts;
    const was = known.lowers[0];
    known.lowers = refsOf(r);
    // the slot kept is that of the top lower object: dropped if that is another one now
    const now = known.lowers[0];
    if (was === undefined || now === undefined || was.layer !== now.layer || was.path !== now.path) known.lowerSlot = null;
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
  if (st.readAhead.xattrs && r.upper === null) learnReadAhead(st, node);
  return node;
}

/**
 * The known node of `name` in `parent` when no lookup could answer otherwise, else
 * null: a lower-only child of a lower-only directory. Lowers do not change under a
 * mount, and nothing appears in the upper at a name of a directory that is not in the
 * upper: every operation that creates, removes or renames a name there (or copies up a
 * child) copies the directory up first, which sets `parent.upper` (copyup.ts); a child
 * copied up has `upper` set. What the merge found for the child when the node was made
 * is therefore still what it would find, and its attributes come from the lower
 * attribute cache: no path, no statx, no walk of the lowers.
 */
export function knownLowerChild(parent: Node, name: string): Node | null {
  if (parent.upper || parent.type !== fsc.S_IFDIR || parent.removed) return null;
  const known = parent.child(name);
  return known === undefined || known.upper ? null : known;
}

/** The node for `name` if it exists, else null. */
export function tryLookupNode(st: State, parent: Node, name: string): Node | null {
  const r = resolve(st, parent, name);
  return r === null ? null : nodeFor(st, parent, name, r);
}
