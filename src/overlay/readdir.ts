/**
 * Directory listings of the merged view.
 *
 * Merge: the rules of src/layers/listing.ts (shared with LayerStack.names): the upper
 * directory first, then each lower directory of the node's stack (the stack already
 * ends at an opaque directory, see lookup.ts); each name once, from the topmost layer.
 *
 * d_ino equals the st_ino a lookup would report (the origin's, inodes.ts).
 *
 * Offsets belong to names, not to opens (dir-cookies.ts), so a listing read with or
 * without a directory handle (FUSE_NO_OPENDIR_SUPPORT: fh 0) neither repeats nor skips
 * an entry that stayed, whatever happens meanwhile. A listing is made at offset 0
 * (opendir or rewinddir: it sees every change) and kept while it is read in pieces.
 * '.' and '..' come first, with cookies 1 and 2.
 */
import { constants as fsc } from 'node:fs';
import { native, type DirEntry } from '../native';
import type { DirEntryOut } from '../fuse/api';
import type { Node } from './inodes';
import { basenameOf, dirnameOf, openDirAt, type Layer } from '../layers/access';
import { mergeListing, type ListedDir, type ListingReader } from '../layers/listing';
import type { State } from './state';
import { assignCookies, firstAfter } from './dir-cookies';
import { resolve } from './lookup';

/** The raw entries of one layer directory (without '.' and '..'), through the cache (cache.ts). */
export function listLayerDir(st: State, layer: Layer, path: string): DirEntry[] {
  return st.caches.listing(layer, path, () => readLayerDir(st, layer, path));
}

function readLayerDir(st: State, layer: Layer, path: string): DirEntry[] {
  const fd = openDirAt(st.dirs.get(layer, dirnameOf(path)), basenameOf(path), layer);
  try {
    return native.getdents(fd).filter((e) => e.name !== '.' && e.name !== '..');
  } finally {
    native.close(fd);
  }
}

/** The merged entries of directory node `node`, '.' and '..' excluded, offsets unset. */
export function mergedEntries(st: State, node: Node): DirEntryOut[] {
  // a removed directory (rmdir, or renamed over) still open lists nothing, as on kernel
  // overlayfs, whatever its lowers still hold
  if (node.removed) return [];
  const dirs: ListedDir[] = [];
  if (node.upper && st.upper) dirs.push({ layer: st.upper, path: node.path(), xwhiteouts: node.upperXwhiteouts });
  for (const r of node.lowers) dirs.push(r);
  const out: DirEntryOut[] = [];
  const upperDirs: DirEntryOut[] = [];
  const reader: ListingReader = {
    entries: (layer, path) => listLayerDir(st, layer, path),
    dirFd: (layer, path) => st.dirs.get(layer, path),
  };
  mergeListing(dirs, reader, (dir, e, type) => {
    const known = node.child(e.name);
    const entry = { name: e.name, ino: known ? known.ino : st.foldIno(dir.layer, e.ino), type, nextOffset: 0 };
    if (!known && dir.layer.upper && type === fsc.S_IFDIR) upperDirs.push(entry);
    out.push(entry);
  });
  // an upper directory that merges a lower one reports the lower's ino (inodes.ts):
  // resolve it so d_ino matches st_ino (redirects and opaque marks included)
  for (const entry of upperDirs) {
    const origin = resolve(st, node, entry.name)?.lowers[0];
    if (origin) entry.ino = st.foldIno(origin.layer, origin.stat.ino);
  }
  return out;
}

/** The whole listing of directory `node` in cookie order, '.' and '..' first. */
export function listing(st: State, node: Node): DirEntryOut[] {
  const parent = node.parent ?? node;
  const names = mergedEntries(st, node);
  assignCookies(names, node, st.cookieCollisions);
  return [
    { name: '.', ino: node.ino, type: fsc.S_IFDIR, nextOffset: 1 },
    { name: '..', ino: parent.ino, type: fsc.S_IFDIR, nextOffset: 2 },
    ...names,
  ];
}

/**
 * Most entries handed out per call: a READDIR reply holds a few hundred at most (the
 * bridge asks again from the next cookie), and slicing the whole rest of a big
 * listing on every call would cost O(n²) over a listing.
 */
export const READDIR_BATCH = 512;

/**
 * Entries of directory `node` from cookie `offset` on (at most READDIR_BATCH; none at
 * the end, which drops the listing kept for the next piece).
 */
export function readdirAt(st: State, node: Node, offset: number): DirEntryOut[] {
  let list = offset === 0 ? undefined : st.listings.get(node);
  if (list === undefined) {
    list = listing(st, node);
    st.listings.set(node, list);
  }
  const from = firstAfter(list, offset);
  if (from >= list.length) st.listings.drop(node);
  return list.slice(from, from + READDIR_BATCH);
}

/** Is the merged directory empty (for rmdir and rename over a directory)? */
export function isMergedEmpty(st: State, node: Node): boolean {
  return mergedEntries(st, node).length === 0;
}
