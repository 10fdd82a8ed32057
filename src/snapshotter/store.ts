/**
 * The snapshotter's metadata: one SQLite database (ROOT/metadata.db) with a row per
 * snapshot. A snapshot's files live in ROOT/snapshots/<id>/ (see snapshots.ts); the row
 * is the only thing that says a directory is in use.
 *
 * Crash safety: every change is one SQLite transaction (WAL journal, synchronous=FULL),
 * so after a crash at any moment the database holds the old state or the new one. The
 * directory work is ordered around the transaction so that a crash can only leave a
 * directory no row names (Cleanup removes those), never a row without its directory:
 * a new snapshot's directory is built under a temporary name and renamed into place
 * inside the transaction that inserts its row; a removed snapshot's row goes first and
 * its directory after.
 */
import Database from 'better-sqlite3';
import { StratafsError } from '../errors';

export type Kind = 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export interface SnapshotRow {
  id: number;
  /** the key (active, view) or the name (committed) */
  name: string;
  /** the committed snapshot below (empty: none) */
  parent: string;
  kind: Kind;
  created: Timestamp;
  updated: Timestamp;
  labels: Record<string, string>;
  /** bytes and inodes of a committed snapshot's own files, counted once at commit */
  size: number;
  inodes: number;
}

interface RawRow {
  id: number;
  name: string;
  parent: string;
  kind: string;
  created_s: number;
  created_n: number;
  updated_s: number;
  updated_n: number;
  labels: string;
  size: number;
  inodes: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  parent TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL CHECK (kind IN ('VIEW', 'ACTIVE', 'COMMITTED')),
  created_s INTEGER NOT NULL, created_n INTEGER NOT NULL,
  updated_s INTEGER NOT NULL, updated_n INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
`;

export const snapshotError = {
  notFound: (msg: string) => new StratafsError('STRATAFS_ERR_SNAPSHOT_NOT_FOUND', msg),
  exists: (msg: string) => new StratafsError('STRATAFS_ERR_SNAPSHOT_EXISTS', msg),
  state: (msg: string) => new StratafsError('STRATAFS_ERR_SNAPSHOT_STATE', msg),
  argument: (msg: string) => new StratafsError('STRATAFS_ERR_SNAPSHOT_ARGUMENT', msg),
};

export function now(): Timestamp {
  const ns = process.hrtime.bigint() - hrBase + wallBase;
  return { seconds: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) };
}
// wall clock with nanosecond steps: Date.now() once, then the monotonic clock
const wallBase = BigInt(Date.now()) * 1_000_000n;
const hrBase = process.hrtime.bigint();

function fromRaw(r: RawRow): SnapshotRow {
  return {
    id: r.id,
    name: r.name,
    parent: r.parent,
    kind: r.kind as Kind,
    created: { seconds: r.created_s, nanos: r.created_n },
    updated: { seconds: r.updated_s, nanos: r.updated_n },
    labels: JSON.parse(r.labels) as Record<string, string>,
    size: r.size,
    inodes: r.inodes,
  };
}

export class MetadataStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one transaction (rolled back if it throws). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  get(name: string): SnapshotRow | undefined {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE name = ?').get(name) as RawRow | undefined;
    return r && fromRaw(r);
  }

  need(name: string): SnapshotRow {
    const r = this.get(name);
    if (!r) throw snapshotError.notFound(`snapshot ${JSON.stringify(name)} does not exist`);
    return r;
  }

  all(): SnapshotRow[] {
    return (this.db.prepare('SELECT * FROM snapshots ORDER BY id').all() as RawRow[]).map(fromRaw);
  }

  ids(): Set<number> {
    return new Set((this.db.prepare('SELECT id FROM snapshots').all() as { id: number }[]).map((r) => r.id));
  }

  hasChildren(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1').get(name) !== undefined;
  }

  insert(row: Omit<SnapshotRow, 'id' | 'size' | 'inodes'>): number {
    const info = this.db.prepare(`INSERT INTO snapshots (name, parent, kind, created_s, created_n, updated_s, updated_n, labels)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(row.name, row.parent, row.kind, row.created.seconds, row.created.nanos,
      row.updated.seconds, row.updated.nanos, JSON.stringify(row.labels));
    return Number(info.lastInsertRowid);
  }

  /** The active snapshot `id` becomes the committed `name`. */
  commit(id: number, name: string, labels: Record<string, string>, at: Timestamp, size: number, inodes: number): void {
    this.db.prepare(`UPDATE snapshots SET name = ?, kind = 'COMMITTED', labels = ?, updated_s = ?, updated_n = ?,
      size = ?, inodes = ? WHERE id = ?`).run(name, JSON.stringify(labels), at.seconds, at.nanos, size, inodes, id);
  }

  setLabels(id: number, labels: Record<string, string>, at: Timestamp): void {
    this.db.prepare('UPDATE snapshots SET labels = ?, updated_s = ?, updated_n = ? WHERE id = ?')
      .run(JSON.stringify(labels), at.seconds, at.nanos, id);
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }
}
