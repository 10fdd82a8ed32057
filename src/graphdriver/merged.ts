/**
 * The merged view below a directory, read from layer dirs: what a directory renamed
 * from a lower (`<prefix>redirect` in the upper) really holds. Diff exports such a
 * directory whole and Changes reports everything in it as added, so both list it here:
 * the upper's entries over the lowers' directories at the redirect's path, top first,
 * whiteouts and opaque marks applied.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, C, type Stat } from '../native';
import { bytes } from './beneath';
import { hasMark, isWhiteout, markValue } from './marks';

export interface MergedEntry {
  name: string;
  abs: string;
  st: Stat;
  /** found in the upper (else in a lower) */
  upper: boolean;
  /** for a directory: where its lower part is, relative to the layer roots (undefined: none) */
  lowerRel?: string;
}

export const lstatAbs = (abs: string): Stat => native.statx(C.AT_FDCWD, bytes(abs), C.AT_SYMLINK_NOFOLLOW);
export const isDirStat = (st: Stat): boolean => (st.mode & fs.constants.S_IFMT) === fs.constants.S_IFDIR;
const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * Where a redirected directory's lower contents are, relative to the layer roots: an
 * absolute redirect names it from the root; a relative one (a rename within one
 * directory) is a sibling: a name inside `parentLower`.
 */
export function resolveRedirect(parentLower: string, redirect: string): string {
  const r = Buffer.from(redirect, 'latin1').toString('utf8');
  if (r.startsWith('/')) return r.replace(/^\/+/, '');
  return parentLower === '' || parentLower === '.' ? r : `${parentLower}/${r}`;
}

/** The entries of the merged directory (upper dir `upperAbs` over the lowers at `lowerRel`), in byte order. */
export function listMerged(lowers: string[], prefix: string, upperAbs: string | undefined, lowerRel: string | undefined): MergedEntry[] {
  const found = new Map<string, MergedEntry>();
  const hidden = new Set<string>();
  const collect = (dir: string, upper: boolean): void => {
    for (const name of fs.readdirSync(dir)) {
      if (found.has(name) || hidden.has(name)) continue;
      const abs = path.join(dir, name);
      const st = lstatAbs(abs);
      if (isWhiteout(st)) hidden.add(name);
      else found.set(name, { name, abs, st, upper });
    }
  };
  if (upperAbs !== undefined) collect(upperAbs, true);
  if (lowerRel !== undefined) {
    for (const l of lowers) {
      const dir = path.join(l, lowerRel);
      let st: Stat;
      try {
        st = lstatAbs(dir);
      } catch {
        continue;
      }
      if (!isDirStat(st)) break;
      collect(dir, false);
      if (hasMark(dir, prefix, 'opaque')) break;
    }
  }
  const out = [...found.values()].sort((a, b) => byBytes(a.name, b.name));
  for (const e of out) {
    if (!isDirStat(e.st)) continue;
    let child = lowerRel === undefined ? undefined : lowerRel === '' ? e.name : `${lowerRel}/${e.name}`;
    if (e.upper) {
      const redirect = markValue(e.abs, prefix, 'redirect');
      if (redirect !== undefined) child = resolveRedirect(lowerRel ?? '', redirect);
      else if (hasMark(e.abs, prefix, 'opaque')) child = undefined;
    }
    e.lowerRel = child;
  }
  return out;
}
