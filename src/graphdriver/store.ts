/**
 * The layer store under the Home dockerd gives at Init. One directory per layer ID:
 *
 *   HOME/ID/diff     the layer's own files (overlay upper format)
 *   HOME/ID/work     overlay workdir, same filesystem as diff
 *   HOME/ID/merged   where Get mounts the layer over its parent chain
 *   HOME/ID/parent   the parent's ID (absent for a base layer)
 *   HOME/ID/stratafs-layer   written at Create: this dir is a layer the driver made.
 *                    Remove deletes nothing without it (Home may hold other things).
 *   HOME/.empty      the lone lower of a base layer's mount
 *   HOME/.layer-marks  present once the layers of this Home carry marks; a Home from
 *                    before marks existed gets them once, for the dirs that have the
 *                    layer shape (diff/ and work/), at the first open (`adoptUnmarked`)
 *
 * Everything is on disk, so a restarted plugin finds every layer as it was; mounts are
 * made again on demand. A layer appears atomically: it is built under a temporary name
 * and renamed into place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, C, isNativeError } from '../native';
import { StratafsError } from '../errors';

export const pluginError = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_PLUGIN', msg);

/** Docker's layer IDs are hex digests, `<hex>-init`, or names a person gave (tests). */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const MAX_CHAIN = 500;
/** the file that marks a directory under Home as a layer this driver created */
export const LAYER_MARK = 'stratafs-layer';
/** present in a Home whose layers carry marks (written after the one-time adoption) */
const MARKS_DONE = '.layer-marks';

export function checkId(id: unknown, what = 'ID'): string {
  if (typeof id !== 'string' || !ID_RE.test(id)) throw pluginError(`invalid layer ${what} ${JSON.stringify(id)}`);
  return id;
}

export class LayerStore {
  readonly empty: string;

  constructor(readonly home: string) {
    this.empty = path.join(home, '.empty');
    fs.mkdirSync(this.empty, { recursive: true, mode: 0o700 });
    this.adoptUnmarked();
  }

  /**
   * A Home written before layers carried marks: every dir there with a layer's shape
   * (real diff/ and work/ dirs) was made by Create, so it is marked, once. Afterwards
   * (MARKS_DONE present) nothing is ever adopted again: a dir that appears later without
   * a mark is not a layer, whatever its shape.
   */
  private adoptUnmarked(): void {
    const done = path.join(this.home, MARKS_DONE);
    if (fs.existsSync(done)) return;
    const isDir = (p: string): boolean => {
      try {
        return fs.lstatSync(p).isDirectory();
      } catch {
        return false;
      }
    };
    for (const id of fs.readdirSync(this.home)) {
      if (!ID_RE.test(id) || this.marked(id)) continue;
      const dir = path.join(this.home, id);
      if (isDir(dir) && isDir(path.join(dir, 'diff')) && isDir(path.join(dir, 'work'))) {
        fs.writeFileSync(path.join(dir, LAYER_MARK), `${id}\n`, { mode: 0o600 });
      }
    }
    fs.writeFileSync(done, '', { mode: 0o600 });
  }

  dir(id: string): string {
    return path.join(this.home, checkId(id));
  }

  diff(id: string): string {
    return path.join(this.dir(id), 'diff');
  }

  work(id: string): string {
    return path.join(this.dir(id), 'work');
  }

  merged(id: string): string {
    return path.join(this.dir(id), 'merged');
  }

  exists(id: string): boolean {
    return fs.existsSync(this.diff(id));
  }

  /** `id` must exist (an error naming it otherwise). */
  need(id: string): string {
    if (!this.exists(id)) throw pluginError(`layer ${id} does not exist`);
    return id;
  }

  create(id: string, parent: string | undefined): void {
    if (this.exists(id)) throw pluginError(`layer ${id} already exists`);
    if (parent !== undefined) {
      checkId(parent, 'parent');
      if (!this.exists(parent)) throw pluginError(`parent layer ${parent} of ${id} does not exist`);
    }
    const tmp = path.join(this.home, `.new-${id}-${process.pid}-${Date.now()}`);
    try {
      fs.mkdirSync(tmp, { mode: 0o700 });
      for (const d of ['diff', 'work', 'merged']) fs.mkdirSync(path.join(tmp, d), { mode: 0o755 });
      if (parent !== undefined) fs.writeFileSync(path.join(tmp, 'parent'), parent);
      fs.writeFileSync(path.join(tmp, LAYER_MARK), `${id}\n`, { mode: 0o600 });
      fs.renameSync(tmp, this.dir(id));
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  parent(id: string): string | undefined {
    try {
      const p = fs.readFileSync(path.join(this.dir(id), 'parent'), 'utf8').trim();
      return p === '' ? undefined : checkId(p, 'parent');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** the diff dirs below `id`, top first */
  lowers(id: string): string[] {
    const out: string[] = [];
    const seen = new Set([id]);
    for (let p = this.parent(id); p !== undefined; p = this.parent(p)) {
      if (seen.has(p) || out.length >= MAX_CHAIN) throw pluginError(`layer ${id} has a broken parent chain at ${p}`);
      if (!this.exists(p)) throw pluginError(`layer ${id}: parent ${p} is missing`);
      seen.add(p);
      out.push(this.diff(p));
    }
    return out;
  }

  /**
   * Removes a layer's dir. Anything still mounted on its merged dir is detached first,
   * and the dir is renamed away before the tree is deleted, so the deletion can never
   * walk into a mount.
   */
  remove(id: string): void {
    const dir = this.dir(id);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    if (!st.isDirectory() || !this.marked(id)) {
      throw pluginError(`${dir} is not a layer this driver created (no ${LAYER_MARK} file): not removed`);
    }
    this.detach(id);
    const doomed = path.join(this.home, `.removing-${id}-${process.pid}-${Date.now()}`);
    fs.renameSync(dir, doomed);
    fs.rmSync(doomed, { recursive: true, force: true });
  }

  /** whether HOME/ID carries the mark Create writes (a regular file naming the ID) */
  marked(id: string): boolean {
    try {
      const mark = path.join(this.dir(id), LAYER_MARK);
      return fs.lstatSync(mark).isFile() && fs.readFileSync(mark, 'utf8').trim() === id;
    } catch {
      return false;
    }
  }

  /**
   * Detaches whatever is mounted on the layer's merged dir (mounts left by a plugin
   * process that died: their cached root attributes can hide that they are dead).
   * Returns how many mounts were detached.
   */
  detach(id: string): number {
    let n = 0;
    for (; n < 16; n++) {
      try {
        native.umount2(this.merged(id), C.MNT_DETACH);
      } catch (e) {
        if (isNativeError(e) && (e.code === 'EINVAL' || e.code === 'ENOENT')) break;
        throw e;
      }
    }
    return n;
  }

  /** every layer ID in the store */
  list(): string[] {
    return fs.readdirSync(this.home).filter((n) => !n.startsWith('.') && fs.existsSync(path.join(this.home, n, 'diff')));
  }
}
