/**
 * The snapshotter: containerd's snapshot model over a root directory.
 *
 *   ROOT/metadata.db            every snapshot's row (store.ts)
 *   ROOT/snapshots/<id>/fs      its own files: a whole layer (no parent) or an upper layer
 *                               in stratafs's (kernel overlayfs's) format
 *   ROOT/snapshots/<id>/work    stratafs work dir, same filesystem
 *   ROOT/snapshots/.new-*       being created; .rm-* being removed (Cleanup clears both)
 *
 * Kinds follow containerd: an active snapshot is writable and becomes a committed one
 * (its directory is kept, under the new name); a view is a read-only look at a committed
 * parent; only a committed snapshot can be a parent. The calls are synchronous: each is a
 * few syscalls and one transaction, except Usage and Commit, which walk the snapshot's own
 * files (never the mounted union: this process serves no mount).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MetadataStore, snapshotError, now, type Kind, type SnapshotRow, type Timestamp } from './store';
import { mountsFor, type Mount } from './mounts';
import { diskUsage, type Usage } from './usage';
import { compileFilters } from './filters';

export interface Info {
  name: string;
  parent: string;
  kind: Kind;
  created_at: Timestamp;
  updated_at: Timestamp;
  labels: Record<string, string>;
}

/** containerd's limit for one label (key and value together) */
const MAX_LABEL_BYTES = 4096;
/** a parent chain longer than this is refused (the lowerdir list must stay sane) */
const MAX_CHAIN = 500;

function checkLabels(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES) {
      throw snapshotError.argument(`label ${JSON.stringify(k.slice(0, 64))} is longer than ${MAX_LABEL_BYTES} bytes with its value`);
    }
    out[k] = v;
  }
  return out;
}

function checkKey(key: string, what = 'key'): string {
  if (typeof key !== 'string' || key === '') throw snapshotError.argument(`snapshot ${what} is empty`);
  return key;
}

export function infoOf(r: SnapshotRow): Info {
  return { name: r.name, parent: r.parent, kind: r.kind, created_at: r.created, updated_at: r.updated, labels: r.labels };
}

export class Snapshotter {
  readonly store: MetadataStore;
  readonly snapshots: string;

  constructor(readonly root: string) {
    this.snapshots = path.join(root, 'snapshots');
    fs.mkdirSync(this.snapshots, { recursive: true, mode: 0o700 });
    this.store = new MetadataStore(path.join(root, 'metadata.db'));
  }

  close(): void {
    this.store.close();
  }

  private dir(id: number): string {
    return path.join(this.snapshots, String(id));
  }

  private dirs(id: number): { fs: string; work: string } {
    return { fs: path.join(this.dir(id), 'fs'), work: path.join(this.dir(id), 'work') };
  }

  /** the fs dirs of `parent` and its ancestors, top first */
  private lowers(parent: string): string[] {
    const out: string[] = [];
    for (let p = parent; p !== ''; ) {
      const row = this.store.get(p);
      if (!row) throw snapshotError.notFound(`parent snapshot ${JSON.stringify(p)} does not exist`);
      if (out.length >= MAX_CHAIN) throw snapshotError.state(`parent chain of ${JSON.stringify(parent)} is longer than ${MAX_CHAIN}`);
      out.push(this.dirs(row.id).fs);
      p = row.parent;
    }
    return out;
  }

  private mountsOf(row: SnapshotRow): Mount[] {
    if (row.kind === 'COMMITTED') throw snapshotError.state(`snapshot ${JSON.stringify(row.name)} is committed: it has no mounts`);
    return mountsFor(row.kind, this.dirs(row.id), this.lowers(row.parent));
  }

  /** Prepare (ACTIVE) or View (VIEW): a new snapshot on `parent` (committed, or '' for none). */
  create(kind: 'ACTIVE' | 'VIEW', key: string, parent: string, labels?: Record<string, string>): Mount[] {
    checkKey(key);
    const lbl = checkLabels(labels);
    const tmp = fs.mkdtempSync(path.join(this.snapshots, '.new-'));
    try {
      fs.mkdirSync(path.join(tmp, 'fs'), { mode: 0o755 });
      fs.mkdirSync(path.join(tmp, 'work'), { mode: 0o700 });
      const row = this.store.transaction(() => {
        if (this.store.get(key)) throw snapshotError.exists(`snapshot ${JSON.stringify(key)} already exists`);
        if (parent !== '') {
          const p = this.store.get(parent);
          if (!p) throw snapshotError.notFound(`parent snapshot ${JSON.stringify(parent)} does not exist`);
          if (p.kind !== 'COMMITTED') throw snapshotError.argument(`parent ${JSON.stringify(parent)} is not a committed snapshot`);
        }
        const at = now();
        const id = this.store.insert({ name: key, parent, kind, created: at, updated: at, labels: lbl });
        const target = this.dir(id);
        // a directory left by a transaction that never committed (crash) may hold this id
        fs.rmSync(target, { recursive: true, force: true });
        fs.renameSync(tmp, target);
        return this.store.need(key);
      });
      return this.mountsOf(row);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  mounts(key: string): Mount[] {
    return this.mountsOf(this.store.need(checkKey(key)));
  }

  /** The active snapshot `key` becomes the committed `name` (its files stay where they are). */
  commit(name: string, key: string, labels?: Record<string, string>): void {
    checkKey(name, 'name');
    const lbl = checkLabels(labels);
    const row = this.store.need(checkKey(key));
    if (row.kind !== 'ACTIVE') throw snapshotError.state(`snapshot ${JSON.stringify(key)} is not active: only an active snapshot can be committed`);
    const usage = diskUsage(this.dirs(row.id).fs);
    this.store.transaction(() => {
      const again = this.store.need(key);
      if (again.id !== row.id || again.kind !== 'ACTIVE') throw snapshotError.state(`snapshot ${JSON.stringify(key)} changed during commit`);
      if (this.store.get(name)) throw snapshotError.exists(`snapshot ${JSON.stringify(name)} already exists`);
      this.store.commit(row.id, name, lbl, now(), usage.size, usage.inodes);
    });
    // the work dir only matters while the snapshot is writable
    fs.rmSync(this.dirs(row.id).work, { recursive: true, force: true });
    fs.mkdirSync(this.dirs(row.id).work, { mode: 0o700 });
  }

  remove(key: string): void {
    const row = this.store.transaction(() => {
      const r = this.store.need(checkKey(key));
      if (this.store.hasChildren(r.name)) throw snapshotError.state(`snapshot ${JSON.stringify(key)} has children: remove them first`);
      this.store.delete(r.id);
      return r;
    });
    this.removeDir(String(row.id));
  }

  /** Renames a snapshot dir away and deletes it (a crash in between leaves a .rm-* for Cleanup). */
  private removeDir(name: string): void {
    const doomed = path.join(this.snapshots, `.rm-${name}-${process.pid}-${Date.now()}`);
    try {
      fs.renameSync(path.join(this.snapshots, name), doomed);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    fs.rmSync(doomed, { recursive: true, force: true });
  }

  stat(key: string): Info {
    return infoOf(this.store.need(checkKey(key)));
  }

  /**
   * Update: only labels are mutable. `paths` as in containerd: empty or "labels" replace
   * every label, "labels.KEY" sets (or, absent from `info`, removes) one.
   */
  update(info: Partial<Info>, paths: string[]): Info {
    const name = checkKey(info.name ?? '', 'name');
    const given = checkLabels(info.labels);
    return this.store.transaction(() => {
      const row = this.store.need(name);
      let labels: Record<string, string>;
      if (paths.length === 0 || paths.includes('labels')) labels = given;
      else {
        labels = { ...row.labels };
        for (const p of paths) {
          if (!p.startsWith('labels.') || p.length === 'labels.'.length) {
            throw snapshotError.argument(`cannot update ${JSON.stringify(p)} of snapshot ${JSON.stringify(name)}: only labels are mutable`);
          }
          const k = p.slice('labels.'.length);
          if (k in given) labels[k] = given[k];
          else delete labels[k];
        }
      }
      this.store.setLabels(row.id, labels, now());
      return infoOf(this.store.need(name));
    });
  }

  list(filters: string[] = []): Info[] {
    const match = compileFilters(filters);
    return this.store.all().map(infoOf).filter(match);
  }

  usage(key: string): Usage {
    const row = this.store.need(checkKey(key));
    if (row.kind === 'COMMITTED') return { size: row.size, inodes: row.inodes };
    return diskUsage(this.dirs(row.id).fs);
  }

  /** Removes every directory under ROOT/snapshots that no snapshot owns; returns their names. */
  cleanup(): string[] {
    const owned = this.store.ids();
    const removed: string[] = [];
    for (const name of fs.readdirSync(this.snapshots)) {
      if (/^[0-9]+$/.test(name) && owned.has(Number(name))) continue;
      // a .new-* dir is never one a Prepare is building: every call runs synchronously
      // on the one thread, so a Prepare is never in progress while Cleanup runs
      if (name.startsWith('.rm-')) fs.rmSync(path.join(this.snapshots, name), { recursive: true, force: true });
      else this.removeDir(name);
      removed.push(name);
    }
    return removed;
  }
}
