/**
 * Attributes as the mount reports them, and the entries handed to the kernel.
 *
 * - st_ino: the node's origin ino (inodes.ts).
 * - st_nlink: a merged directory (more than one layer contributes) reports 1, as kernel
 *   overlayfs does (its real link count would be a guess); a directory of one layer and
 *   every other file report the real count of their topmost object.
 * - st_dev is the mount's, chosen by the kernel.
 * - uid/gid pass through the id mapping (idmap.ts).
 * - st_blocks of a metacopy file are those of its lower data file.
 */
import { constants as fsc } from 'node:fs';
import type { Stat } from '../native';
import type { Attr, Entry } from '../fuse/api';
import type { Node } from './inodes';
import type { State } from './state';
import { shownId } from './idmap';

/** Mode bits node:fs does not name. */
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const PERM_MASK = 0o7777;

export function toAttr(st: State, node: Node, s: Stat): Attr {
  const dir = (s.mode & fsc.S_IFMT) === fsc.S_IFDIR;
  const shifted = !node.upper && node.lowers[0]?.layer.idShifted === true;
  return {
    ino: node.ino,
    size: s.size,
    blocks: s.blocks,
    atimeSec: s.atimeSec,
    atimeNsec: s.atimeNsec,
    mtimeSec: s.mtimeSec,
    mtimeNsec: s.mtimeNsec,
    ctimeSec: s.ctimeSec,
    ctimeNsec: s.ctimeNsec,
    mode: s.mode,
    nlink: dir && node.merged ? 1 : s.nlink,
    uid: shownId(st.config, 'uid', s.uid, shifted),
    gid: shownId(st.config, 'gid', s.gid, shifted),
    rdevMajor: s.rdevMajor,
    rdevMinor: s.rdevMinor,
    blksize: s.blksize,
  };
}

/** `s`: the node's statx when the caller just made it */
export function getAttr(st: State, node: Node, s?: Stat): Attr {
  const attr = toAttr(st, node, s ?? st.stat(node));
  if (node.metacopy) {
    // the data, and so the blocks it takes, are in the lower file
    attr.blocks = st.lowerStat(node).blocks;
  }
  if (node.type === fsc.S_IFDIR) node.lastAttr = attr;
  return attr;
}

/** An Entry for `node`, counting one more lookup. */
export function entryOf(st: State, node: Node, s?: Stat): Entry {
  const attr = getAttr(st, node, s);
  node.lookups += 1;
  return {
    nodeId: node.id,
    generation: 0,
    attr,
  };
}
