/**
 * Changes and DiffSize of a layer, read from its diff dir against its parent chain
 * (the lower diff dirs, top first).
 *
 * - a whiteout is a delete (kind 2);
 * - a name that exists in the chain is a modify (kind 0), except a directory whose
 *   mode, size and mtime are the same as below (it is only there to hold changes);
 * - anything else is an add (kind 1);
 * - an opaque directory deletes every name of the chain's directory it does not hold;
 * - the parent directory of an add or delete is reported modified (once);
 * - a directory renamed from a lower (redirect) is added with everything it holds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, C, isNativeError, type Stat } from '../native';
import { bytes } from './beneath';
import { hasMark, isWhiteout, markValue } from './marks';
import { isDirStat, listMerged, resolveRedirect } from './merged';
import { toSafeNumber } from '../int64';

const fsc = fs.constants;

export enum ChangeKind {
  Modify = 0,
  Add = 1,
  Delete = 2,
}

export interface Change {
  Path: string;
  Kind: ChangeKind;
}

function lstat(file: string): Stat | undefined {
  try {
    return native.statx(C.AT_FDCWD, bytes(file), C.AT_SYMLINK_NOFOLLOW);
  } catch (e) {
    if (isNativeError(e) && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return undefined;
    throw e;
  }
}

/** What the chain shows at `rel`: the first layer holding it, unless a whiteout hides it. */
function inChain(lowers: string[], rel: string): Stat | undefined {
  for (const l of lowers) {
    const st = lstat(path.join(l, rel));
    if (!st) continue;
    return isWhiteout(st) ? undefined : st;
  }
  return undefined;
}

/** names of the chain's directory at `rel` (merged, whiteouts applied) */
function chainNames(lowers: string[], rel: string, prefix: string): Set<string> {
  const seen = new Set<string>();
  const hidden = new Set<string>();
  for (const l of lowers) {
    const dir = path.join(l, rel);
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (seen.has(n) || hidden.has(n)) continue;
      const st = lstat(path.join(dir, n));
      if (st && isWhiteout(st)) hidden.add(n);
      else seen.add(n);
    }
    if (hasMark(dir, prefix, 'opaque')) break;
  }
  return seen;
}

const sameDir = (a: Stat, b: Stat): boolean =>
  a.mode === b.mode && a.size === b.size && a.mtimeSec === b.mtimeSec && a.mtimeNsec === b.mtimeNsec;

export function changes(diffDir: string, lowers: string[], prefix: string): Change[] {
  const out: Change[] = [];
  const changedDirs = new Set<string>();
  const parentChanged = (rel: string): void => {
    const parent = path.posix.dirname(rel);
    if (parent === '/' || changedDirs.has(parent)) return;
    changedDirs.add(parent);
    out.push({ Path: parent, Kind: ChangeKind.Modify });
  };
  const visit = (rel: string): void => {
    const dir = path.join(diffDir, rel);
    const names = fs.readdirSync(dir).sort();
    if (rel !== '/' && hasMark(dir, prefix, 'opaque')) {
      for (const gone of chainNames(lowers, rel, prefix)) {
        if (!names.includes(gone)) out.push({ Path: path.posix.join(rel, gone), Kind: ChangeKind.Delete });
      }
    }
    for (const name of names) {
      const r = path.posix.join(rel, name);
      const st = lstat(path.join(diffDir, r));
      if (!st) continue;
      const below = inChain(lowers, r);
      const isDir = (st.mode & fsc.S_IFMT) === fsc.S_IFDIR;
      if (isWhiteout(st)) {
        if (!below) continue; // hides nothing
        out.push({ Path: r, Kind: ChangeKind.Delete });
        parentChanged(r);
        continue;
      }
      let recorded = true;
      if (!below) {
        out.push({ Path: r, Kind: ChangeKind.Add });
        parentChanged(r);
      } else if (!(isDir && (below.mode & fsc.S_IFMT) === fsc.S_IFDIR && sameDir(st, below))) {
        out.push({ Path: r, Kind: ChangeKind.Modify });
      } else recorded = false;
      if (!isDir) continue;
      if (recorded) changedDirs.add(r);
      const redirect = markValue(path.join(diffDir, r), prefix, 'redirect');
      if (redirect === undefined) visit(r);
      else addedTree(r, path.join(diffDir, r), resolveRedirect(path.posix.dirname(r).slice(1), redirect));
    }
  };
  /** a directory renamed from a lower: all it holds is new at this path */
  const addedTree = (rel: string, upperAbs: string | undefined, lowerRel: string | undefined): void => {
    for (const e of listMerged(lowers, prefix, upperAbs, lowerRel)) {
      const r = path.posix.join(rel, e.name);
      out.push({ Path: r, Kind: ChangeKind.Add });
      if (isDirStat(e.st)) addedTree(r, e.upper ? e.abs : undefined, e.lowerRel);
    }
  };
  visit('/');
  return out;
}

/** Bytes of file data in the layer's diff dir (hard-linked files counted once). */
export function diffSize(diffDir: string): number {
  let size = 0;
  const seen = new Set<bigint>();
  const visit = (dir: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const st = lstat(path.join(dir, name));
      if (!st) continue;
      const type = st.mode & fsc.S_IFMT;
      if (type === fsc.S_IFDIR) visit(path.join(dir, name));
      else if (type === fsc.S_IFREG && !(st.nlink > 1 && seen.has(st.ino))) {
        seen.add(st.ino);
        size += toSafeNumber(st.size, 'file size');
      }
    }
  };
  visit(diffDir);
  return size;
}
