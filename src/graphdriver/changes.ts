/**
 * Changes and DiffSize of a layer: the merged view of the layer over its parent chain
 * ("new") compared with the view of the chain alone ("old"), as Docker's naive diff
 * compares two trees (what `docker diff` shows with overlay2):
 *
 * - a name only in the new view is added (kind 1), and so is all it holds;
 * - a name only in the old view is deleted (kind 2), itself only;
 * - a name in both is modified (kind 0) when its mode (type included), owner, group or
 *   device number differ, or, for a non-directory, its size or mtime (equal seconds
 *   with either nanosecond part 0 count as equal: tars carry whole seconds), or its
 *   `security.capability`; a directory's own size and mtime do not count;
 * - a directory with a change anywhere below it is listed modified (once, before its
 *   contents) even if it is itself unchanged: `C /usr`, `C /usr/share`, `A /usr/share/x`;
 * - a directory renamed from a lower (a redirect) is a new name: it is added with its
 *   whole merged contents, read as the mount reads it.
 *
 * Both views are read through src/layers (LayerStack): fd-relative, never following a
 * symlink, by the mount's own merge rules; names and paths are byte strings. Only
 * directories the layer touched are compared: one without an upper part and with the
 * same lower parts in both views is the same tree.
 *
 * DiffSize is the size of what the changes add or modify (non-directories, hard links
 * counted once), which is what Diff exports.
 *
 * A walk yields to the event loop every BATCH entries, so the mounts the process serves
 * keep answering while a big layer is compared.
 */
import { constants as fsc } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Stat } from '../native';
import { toSafeNumber } from '../int64';
import { isDirStat, type FoundLower, type LayerStack, type LowerRef, type MergedDir, type Resolved } from '../layers';

export enum ChangeKind {
  Modify = 0,
  Add = 1,
  Delete = 2,
}

export interface Change {
  /** absolute path in the layer, a byte string */
  Path: string;
  Kind: ChangeKind;
}

export interface ChangesResult {
  changes: Change[];
  /** bytes of the non-directories added or modified */
  size: number;
}

/** entries handled between two turns of the event loop */
const BATCH = 256;

const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));
const childPath = (dir: string, name: string): string => (dir === '/' ? `/${name}` : `${dir}/${name}`);
const topStat = (r: Resolved): Stat => r.upper ?? (r.lowers[0] as FoundLower).stat;

/** Whole seconds equal, and nanoseconds equal or either of them 0. */
const sameTime = (a: Stat, b: Stat): boolean =>
  a.mtimeSec === b.mtimeSec && (a.mtimeNsec === b.mtimeNsec || a.mtimeNsec === 0 || b.mtimeNsec === 0);

function statDifferent(o: Stat, n: Stat): boolean {
  if (o.mode !== n.mode || o.uid !== n.uid || o.gid !== n.gid) return true;
  if (o.rdevMajor !== n.rdevMajor || o.rdevMinor !== n.rdevMinor) return true;
  return !isDirStat(n) && (!sameTime(o, n) || o.size !== n.size);
}

const sameRefs = (a: readonly LowerRef[], b: readonly LowerRef[]): boolean =>
  a.length === b.length && a.every((r, i) => r.layer === b[i]?.layer && r.path === b[i]?.path);

class Walk {
  readonly changes: Change[] = [];
  size = 0;
  private readonly linked = new Set<string>();
  private handled = 0;

  constructor(private readonly stack: LayerStack) {}

  private async pace(): Promise<void> {
    if (++this.handled % BATCH === 0) await nextTurn();
  }

  /** Where the object `r` (named `name` in `dir`) is: its upper, else its top lower. */
  private where(dir: MergedDir, name: string, r: Resolved): { layer: LowerRef['layer']; path: string } {
    if (r.upper && dir.upper) return { layer: dir.upper.layer, path: dir.upper.path === '' ? name : `${dir.upper.path}/${name}` };
    const l = r.lowers[0] as LowerRef;
    return { layer: l.layer, path: l.path };
  }

  private count(dir: MergedDir, name: string, r: Resolved): void {
    const st = topStat(r);
    if ((st.mode & fsc.S_IFMT) === fsc.S_IFDIR) return;
    if (st.nlink > 1) {
      const { layer } = this.where(dir, name, r);
      const key = `${layer.devMajor}:${layer.devMinor}:${st.ino}`;
      if (this.linked.has(key)) return;
      this.linked.add(key);
    }
    this.size += toSafeNumber(st.size, 'file size');
  }

  /** Compares directory `path` of the new view (`nw`) with the old view's (`old`). */
  async dir(path: string, nw: MergedDir, old: MergedDir): Promise<void> {
    if (nw.upper === null && sameRefs(nw.lowers, old.lowers)) return;
    const names = [...new Set([...this.stack.names(nw), ...this.stack.names(old)])].sort(byBytes);
    for (const name of names) {
      await this.pace();
      const n = this.stack.lookup(nw, name);
      const o = this.stack.lookup(old, name);
      const p = childPath(path, name);
      if (n === null) {
        if (o !== null) this.changes.push({ Path: p, Kind: ChangeKind.Delete });
        continue;
      }
      if (o === null) {
        await this.added(p, nw, name, n);
        continue;
      }
      const at = this.changes.length;
      const modified = this.modified(nw, old, name, n, o);
      if (modified) {
        this.changes.push({ Path: p, Kind: ChangeKind.Modify });
        this.count(nw, name, n);
      }
      if (!isDirStat(topStat(n))) continue;
      const child = this.stack.child(nw, name, n);
      if (isDirStat(topStat(o))) await this.dir(p, child, this.stack.child(old, name, o));
      else await this.addedBelow(p, child);
      if (!modified && this.changes.length > at) this.changes.splice(at, 0, { Path: p, Kind: ChangeKind.Modify });
    }
  }

  private modified(nw: MergedDir, old: MergedDir, name: string, n: Resolved, o: Resolved): boolean {
    const a = this.where(nw, name, n);
    const b = this.where(old, name, o);
    if (a.layer === b.layer && a.path === b.path) return false; // the same object
    if (statDifferent(topStat(o), topStat(n))) return true;
    const capA = this.stack.capability(a.layer, a.path);
    const capB = this.stack.capability(b.layer, b.path);
    return capA === null ? capB !== null : capB === null || !capA.equals(capB);
  }

  /** `name` of `dir` (resolved as `r`) is new: it and all it holds are added. */
  private async added(path: string, dir: MergedDir, name: string, r: Resolved): Promise<void> {
    this.changes.push({ Path: path, Kind: ChangeKind.Add });
    this.count(dir, name, r);
    if (isDirStat(topStat(r))) await this.addedBelow(path, this.stack.child(dir, name, r));
  }

  private async addedBelow(path: string, dir: MergedDir): Promise<void> {
    for (const name of this.stack.names(dir)) {
      await this.pace();
      const r = this.stack.lookup(dir, name);
      if (r !== null) await this.added(childPath(path, name), dir, name, r);
    }
  }
}

/** The changes of the layer `stack.upper` against its lowers, and their size. */
export async function changes(stack: LayerStack): Promise<ChangesResult> {
  const walk = new Walk(stack);
  await walk.dir('/', stack.root(true), stack.root(false));
  return { changes: walk.changes, size: walk.size };
}
