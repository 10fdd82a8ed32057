/**
 * The listing rules of a merged directory, one implementation for the mount's readdir
 * (src/overlay/readdir.ts, through its listing cache) and for LayerStack.names (the
 * graph driver's Diff, Changes and exports):
 *
 * - the upper directory first, then each lower directory of the stack (the stack
 *   already ends at an opaque directory, see merge.ts);
 * - each name appears once, from the topmost layer that has it;
 * - a whiteout (any form, whiteout.ts) hides the name and, being a name itself, is
 *   never shown;
 * - AUFS `.wh.<name>` in a lower hides <name> in the layers below; `.wh.*` names are
 *   never shown (and in an upper never interpreted).
 *
 * Cost: no syscall per entry beyond the listing itself, except one statx (and for an
 * xattr-whiteout candidate one getxattr) for an entry that may be a whiteout: a
 * character device, an unknown d_type, or a regular file in a directory that holds
 * xattr whiteouts. A layer's dir fd is taken once per directory, only when needed.
 *
 * Names are byte strings (index.ts).
 */
import { constants as fsc } from 'node:fs';
import { C, type DirEntry } from '../native';
import { statAt, type Layer } from './access';
import { AUFS_PREFIX, isWhiteout } from './whiteout';

/** One layer directory that takes part in a merged listing. */
export interface ListedDir {
  layer: Layer;
  /** layer path of the directory ('' = root) */
  path: string;
  /** the directory holds xattr whiteouts */
  xwhiteouts: boolean;
}

/** How a listing reads layers: raw entries ('.' and '..' excluded) and dir fds (use at once). */
export interface ListingReader {
  /** throws when the directory is not there (it then contributes nothing) */
  entries(layer: Layer, path: string): DirEntry[];
  dirFd(layer: Layer, path: string): number;
}

/**
 * Called once per visible name, topmost layer first: `type` is the S_IFMT bits when
 * known (from d_type or a statx that was needed anyway), else 0.
 */
export type ListingVisitor = (dir: ListedDir, entry: DirEntry, type: number) => void;

const DT_TO_IF = new Map<number, number>([
  [C.DT_FIFO, fsc.S_IFIFO],
  [C.DT_CHR, fsc.S_IFCHR],
  [C.DT_DIR, fsc.S_IFDIR],
  [C.DT_BLK, fsc.S_IFBLK],
  [C.DT_REG, fsc.S_IFREG],
  [C.DT_LNK, fsc.S_IFLNK],
  [C.DT_SOCK, fsc.S_IFSOCK],
]);

/** Visits the names the merged directory made of `dirs` (upper first, if any) shows. */
export function mergeListing(dirs: readonly ListedDir[], reader: ListingReader, visit: ListingVisitor): void {
  const decided = new Set<string>();
  for (const dir of dirs) {
    let entries: DirEntry[];
    try {
      entries = reader.entries(dir.layer, dir.path);
    } catch {
      continue; // a layer dir that vanished (or is not there) contributes nothing
    }
    const hiddenBelow: string[] = [];
    let dirfd = -1;
    for (const e of entries) {
      if (e.name.startsWith(AUFS_PREFIX)) {
        if (!dir.layer.upper && !e.name.startsWith(`${AUFS_PREFIX}${AUFS_PREFIX}`)) {
          hiddenBelow.push(e.name.slice(AUFS_PREFIX.length));
        }
        continue;
      }
      if (decided.has(e.name)) continue;
      decided.add(e.name);
      let type = DT_TO_IF.get(e.type);
      if (type === undefined || type === fsc.S_IFCHR || (dir.xwhiteouts && type === fsc.S_IFREG)) {
        if (dirfd < 0) dirfd = reader.dirFd(dir.layer, dir.path);
        const s = statAt(dirfd, e.name);
        if (isWhiteout(dirfd, e.name, s, dir.xwhiteouts)) continue;
        type = s.mode & fsc.S_IFMT;
      }
      visit(dir, e, type);
    }
    for (const h of hiddenBelow) decided.add(h);
  }
}
