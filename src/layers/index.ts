/**
 * The layer library: the one place that knows how layers sit on disk. The overlay
 * (the mount), the graph driver (Diff, Changes, DiffSize, ApplyDiff) and the containerd
 * snapshotter read and write layers through it and nothing else.
 *
 * A layer is a directory tree: the upper (writable) over the lowers (read-only, top
 * first). The merged view is the union, with these marks (kernel overlayfs' format):
 *
 * - Whiteouts say "this name is gone from the layers below". Two styles:
 *   - overlay style (what we write): a character device 0/0 with the name itself; or,
 *     kernel 6.7+ ("xwhiteout"), a zero-size regular file with the `<prefix>whiteout`
 *     xattr, honoured only in a directory marked `<prefix>opaque` = "x" (read only).
 *   - AUFS / OCI-tar style, lowers only: an entry `.wh.<name>` hides <name> below;
 *     `.wh..wh..opq` makes its directory opaque; other `.wh..wh.*` names are
 *     bookkeeping. `.wh.*` names are never shown in a merged view. A layer tar (Docker,
 *     OCI) carries whiteouts in this style: import turns them into overlay ones, export
 *     turns overlay ones back.
 * - An opaque directory (`<prefix>opaque` = "y", or AUFS `.wh..wh..opq`) stops the merge
 *   there: the layers below contribute nothing to it.
 * - A redirect (`<prefix>redirect` on an upper directory) is written when a directory
 *   that exists in a lower is renamed: the lower part of the directory is still at its
 *   old place. An absolute value ("/a/b") names that place from the layer roots; a
 *   relative one (a plain name) names a sibling in the parent's lower directory. The
 *   redirect is followed through the lowers fd-relatively, like any lookup.
 * - A metacopy file (`<prefix>metacopy`, empty value) is an upper regular file that
 *   holds metadata only; its data is the lower file at the same path (or at its
 *   `<prefix>redirect`), until the first write copies it in.
 *
 * `<prefix>` is `trusted.overlay.` (as root) or `user.overlay.`; both are read, the
 * configured one is written.
 *
 * Safety: nothing here builds a joined host path. Every access starts at a layer's root
 * fd and walks with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a symlink inside a
 * layer, at any depth, is never followed, so a hostile layer (`a -> /etc`) cannot lead a
 * reader out of it. A final name is statted or opened without following it.
 *
 * Names are byte strings: each JS char is one byte (latin1), what the native addon takes
 * and gives; `Buffer.from(name, 'latin1')` is the exact on-disk name. No name is ever
 * decoded as UTF-8, so a name that is not UTF-8 survives every walk.
 *
 * Modules: access.ts (layer roots, the dir-fd cache, *at helpers), whiteout.ts (whiteout
 * and opaque forms, private xattrs), aufs.ts (AUFS marks, indexed per lower directory),
 * merge.ts (the lookup rules: whiteouts, opaque dirs, redirects, metacopy; the mount's
 * and everyone's), listing.ts (the listing rules: the mount's readdir and LayerStack's),
 * stack.ts (LayerStack: a merged view read outside a mount, for Diff,
 * Changes and exports), writer.ts (LayerWriter: writing into a layer, for imports),
 * metacopy.ts (writing metacopy files), xattr-names.ts (xattr names on disk and as
 * shown: escaping, private names; both directions).
 *
 * Reading a merged view offline:
 *
 *   const stack = LayerStack.open(upperDir, [lower1, lower2], 'trusted.overlay.');
 *   const root = stack.root();                      // upper over the lowers
 *   for (const name of stack.names(root)) {         // byte order, whiteouts applied
 *     const r = stack.lookup(root, name);           // the mount's lookup of it
 *     if (r && isDirStat(r.upper ?? r.lowers[0].stat)) stack.child(root, name, r);
 *   }
 *   stack.close();
 */
export {
  type Layer, type DirFdsOptions, DirFds, DIR_FD_IDLE_MS,
  joinPath, dirnameOf, basenameOf, statAt, tryStatAt, procFdPath, xattrPath, openDirAt, tryGetXattr,
} from './access';
export {
  AUFS_PREFIX, AUFS_OPAQUE, PRIVATE_PREFIXES, type DirMarks,
  isAufsName, isCharWhiteout, readPrivateXattr, isWhiteout, dirMarks, makeWhiteout, Whiteouts,
} from './whiteout';
export { XATTR_ESCAPE, isPrivateXattr, visibleXattrName, storedXattrName, isOverlayNamespace } from './xattr-names';
export { AufsIndex, type ListingSource } from './aufs';
export { mergeListing, type ListedDir, type ListingReader, type ListingVisitor } from './listing';
export { sizeOnly, markMetacopy } from './metacopy';
export {
  type LowerRef, type FoundLower, type LowerStats, type MergeSource, type UpperDir, type Resolved,
  isDirStat, resolveName, walkLowers,
} from './merge';
export { LayerStack, type MergedDir, type UpperEntry } from './stack';
export { LayerWriter, type LayerWriterOptions, removeAt, whiteoutAt, setOpaque } from './writer';
