// Seeded random operations for the differential run. A loose model of the merged tree
// (model.ts) steers the choice: most ops target names that exist (lower entries first, so
// that copy-up is exercised), new names reuse names that existed in a lower or were just
// deleted (whiteouts get replaced), and a share of the ops collide on purpose or name a
// path that cannot work, for the error paths (ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR,
// EINVAL). Each op carries the model's prediction, which the run compares with the
// oracle's outcome only to report how well the generator aims.
import type { Op, OpenFlag, Outcome, RenameFlag, Time } from '../lib/agent';
import { depthOf, parentOf, TreeModel, type Entry, type Expect, type Kind } from './model';

/** mulberry32: a tiny deterministic PRNG, enough for test generation. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed: STRATAFS_SEED if set, else derived from the clock (always printed by the test). */
export function seedFromEnv(): number {
  const env = process.env.STRATAFS_SEED;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`STRATAFS_SEED must be a non-negative integer, not ${env}`);
    return n;
  }
  return Date.now() % 2 ** 31;
}

export function opCountFromEnv(): number {
  const n = Number(process.env.STRATAFS_DIFF_OPS ?? '1000');
  if (!Number.isInteger(n) || n <= 0) throw new Error(`STRATAFS_DIFF_OPS must be a positive integer`);
  return n;
}

/** Names for new entries: many are lower names elsewhere in the tree. */
const NAMES = ['f1', 'f2', 'x', 'y', 'm1', 't1', 's1', 'd1', 'd2', 'd3', 'sub', 'new', 'n', 'z', 'one', 'two', 'old1', 'hl-a', 'issue'];
/**
 * Targets of new symlinks. The ops follow links from the host, outside any container, so an
 * absolute target must never resolve there (a file below /dev/null cannot exist): one to
 * /etc/passwd once had the host's file truncated and chmodded by a random run.
 */
export const LINK_TARGETS = ['f1', '../f1', 'd1', 'x', '/dev/null/etc/passwd', 'missing', '..', '.'];
const XATTRS = ['user.note', 'user.dir-note', 'user.color', 'user.a', 'user.b'];
const FILE_MODES = ['644', '600', '755', '700', '4755', '2755', '6755', '1755', '4644', '2644', '7777', '000'];
const DIR_MODES = ['755', '700', '2775', '1777', '3755', '000'];
const OWNERS = [0, 1000, 1001, -1];
/** Device numbers for mknod (never 0:0, which is a whiteout on disk). */
const DEVICES: readonly [number, number][] = [
  [1, 3],
  [1, 7],
  [5, 1],
  [136, 9],
  [0, 1],
];
const MAX_DEPTH = 6;
/** Upper bound of sizes and write offsets, so that hashing the trees stays fast. */
const LARGE = 3 * 1024 * 1024;

/** One generated op and the model's expected outcome ("ok" or an errno code). */
export interface Planned {
  op: Op;
  expect: Expect;
}

/** The outcome code of an agent outcome: "ok" or the error code. */
export const outcomeCode = (o: Outcome | undefined): string => (o === undefined ? 'missing' : 'ok' in o ? 'ok' : o.err);

class Generator {
  readonly m = TreeModel.initial();
  readonly rnd: () => number;

  constructor(seed: number) {
    this.rnd = prng(seed);
  }

  chance(p: number): boolean {
    return this.rnd() < p;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1));
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)];
  }

  /** An existing path (not the root) matching FILTER; lower entries preferred half the time. */
  existing(filter: (e: Entry, p: string) => boolean = () => true): string | undefined {
    const all = this.m.paths((p, e) => filter(e, p));
    if (all.length === 0) return undefined;
    const lower = all.filter((p) => this.m.get(p)!.lower);
    return this.pick(lower.length > 0 && this.chance(0.5) ? lower : all);
  }

  file(): string | undefined {
    return this.existing((e) => e.kind === 'file');
  }

  dir(): string | undefined {
    return this.existing((e) => e.kind === 'dir');
  }

  /** A free path in an existing directory: a ghost (a name that was there) or a pool name. */
  fresh(maxDepth = MAX_DEPTH): string {
    const ghosts = [...this.m.ghosts].filter((g) => !this.m.entries.has(g) && this.m.get(parentOf(g))?.kind === 'dir' && depthOf(g) <= maxDepth);
    if (ghosts.length > 0 && this.chance(0.4)) return this.pick(ghosts);
    for (let tries = 0; tries < 20; tries++) {
      const dirs = this.m.paths((p, e) => e.kind === 'dir' && depthOf(p) < maxDepth);
      const parent = dirs.length > 0 && this.chance(0.9) ? this.pick(dirs) : '.';
      const p = parent === '.' ? this.pick(NAMES) : `${parent}/${this.pick(NAMES)}`;
      if (!this.m.entries.has(p)) return p;
    }
    return `play-${this.int(0, 9)}`;
  }

  /** A path whose lookup fails: missing name, missing parent, or a file as parent. */
  bad(): string {
    const r = this.rnd();
    const f = this.existing((e) => e.kind !== 'dir');
    if (r < 0.3 && f !== undefined) return `${f}/${this.pick(NAMES)}`;
    const missing = this.fresh();
    return r < 0.6 ? `${missing}/${this.pick(NAMES)}` : missing;
  }

  /** Any existing path (root excluded), or a bad one when the tree is empty. */
  any(): string {
    return this.existing() ?? this.bad();
  }

  data(i: number, len = this.int(1, 40)): string {
    return `op${i}:`.padEnd(len, String.fromCharCode(97 + (i % 26)));
  }

  offset(): number {
    const r = this.rnd();
    if (r < 0.85) return this.int(0, 60);
    if (r < 0.95) return 4096 * this.int(1, 20) + this.int(0, 9);
    return this.int(LARGE / 4, LARGE);
  }

  size(): number {
    const r = this.rnd();
    if (r < 0.5) return this.int(0, 60);
    if (r < 0.8) return this.int(4097, 70001);
    return this.int(LARGE / 4, LARGE);
  }

  time(): Time {
    const r = this.rnd();
    const nsec = this.chance(0.2) ? 0 : this.int(0, 999_999_999);
    if (r < 0.8) return [this.int(300_000_000, 900_000_000), nsec]; // 1979..1998
    if (r < 0.9) return [this.int(4_000_000_000, 4_100_000_000), nsec]; // after 2038
    return [-this.int(1, 100_000_000), nsec]; // before 1970
  }

  // ---- op makers: each returns the op and its expected outcome, updating the model ----

  /** A new non-directory or directory at a fresh path, or a deliberate collision. */
  makeEntry(kind: Kind, make: (path: string) => Op): Planned {
    const r = this.rnd();
    const path = r < 0.8 ? this.fresh() : r < 0.92 ? this.any() : this.bad();
    const err = this.m.parentError(path) ?? (this.m.entries.has(path) ? 'EEXIST' : undefined);
    if (!err) this.m.add(path, kind);
    return { op: make(path), expect: err ?? 'ok' };
  }

  /** An op on an existing path of one kind (mostly), or on a wrong kind / bad path. */
  onExisting(want: (e: Entry) => boolean, wrongKind: (e: Entry) => Expect, make: (path: string) => Op, effect?: (path: string) => void): Planned {
    const r = this.rnd();
    const path = (r < 0.85 ? this.existing(want) : undefined) ?? (r < 0.93 ? this.any() : this.bad());
    const looked = this.m.lookup(path);
    if (looked !== 'ok') return { op: make(path), expect: looked };
    const e = this.m.get(path)!;
    if (!want(e)) return { op: make(path), expect: wrongKind(e) };
    effect?.(path);
    return { op: make(path), expect: 'ok' };
  }

  /** Open-for-write style ops on files: special files are refused by the agent. */
  fileError(e: Entry): Expect {
    if (e.kind === 'dir') return 'EISDIR';
    if (e.kind === 'fifo' || e.kind === 'chr' || e.kind === 'blk') return 'SPECIAL';
    return 'ok'; // symlinks: followed, not modelled
  }

  touchFile = (p: string): void => this.m.touch(p);

  rename(flags: RenameFlag[]): Planned {
    const from = this.chance(0.93) ? this.any() : this.bad();
    const src = this.m.get(from);
    const r = this.rnd();
    let to: string;
    if (flags.includes('exchange') || r < 0.35) {
      // Onto an existing entry: same kind mostly (replace, or EXCHANGE), any kind else.
      const sameKind = src ? this.existing((e, p) => (e.kind === 'dir') === (src.kind === 'dir') && p !== from) : undefined;
      to = (this.chance(0.8) ? sameKind : undefined) ?? this.any();
    } else if (r < 0.45 && src?.kind === 'dir') {
      // Over an empty directory (a lower one when there is one: only whiteouts left).
      const empty = this.m.paths((p) => this.m.isEmptyDir(p) && p !== from);
      to = empty.length > 0 ? this.pick(empty) : this.fresh();
    } else if (r < 0.5) {
      to = this.bad();
    } else {
      to = this.fresh(src?.kind === 'dir' ? MAX_DEPTH - 1 : MAX_DEPTH);
    }
    const op: Op = flags.length === 0 ? { op: 'rename', from, to } : { op: 'rename2', from, to, flags };
    return { op, expect: this.m.rename(from, to, flags) };
  }

  link(): Planned {
    const from = this.chance(0.9) ? (this.existing((e) => e.kind !== 'dir') ?? this.any()) : this.bad();
    const r = this.rnd();
    const to = r < 0.85 ? this.fresh() : r < 0.95 ? this.any() : this.bad();
    const op: Op = { op: 'link', from, to };
    const src = this.m.lookup(from);
    if (src !== 'ok') return { op, expect: src };
    const dst = this.m.lookup(to);
    if (dst === 'ok') return { op, expect: 'EEXIST' };
    if (dst !== 'ENOENT' || this.m.parentError(to)) return { op, expect: dst };
    if (this.m.get(from)!.kind === 'dir') return { op, expect: 'EPERM' };
    this.m.touch(from); // a lower source is copied up first
    this.m.add(to, this.m.get(from)!.kind, this.m.get(from)!.ino);
    return { op, expect: 'ok' };
  }

  unlink(): Planned {
    return this.onExisting(
      (e) => e.kind !== 'dir',
      () => 'EISDIR',
      (path) => ({ op: 'unlink', path }),
      (p) => this.m.remove(p),
    );
  }

  rmdir(): Planned {
    // Empty directories first (lower ones: a directory holding only whiteouts).
    const empty = this.m.paths((p) => this.m.isEmptyDir(p));
    if (empty.length > 0 && this.chance(0.5)) {
      const lower = empty.filter((p) => this.m.get(p)!.lower);
      const path = this.pick(lower.length > 0 && this.chance(0.6) ? lower : empty);
      this.m.remove(path);
      return { op: { op: 'rmdir', path }, expect: 'ok' };
    }
    const planned = this.onExisting(
      (e) => e.kind === 'dir',
      () => 'ENOTDIR',
      (path) => ({ op: 'rmdir', path }),
    );
    if (planned.expect !== 'ok' || planned.op.op !== 'rmdir') return planned;
    if (!this.m.isEmptyDir(planned.op.path)) return { ...planned, expect: 'ENOTEMPTY' };
    this.m.remove(planned.op.path);
    return planned;
  }

  open(i: number): Planned {
    const variants: [OpenFlag[], boolean][] = [
      [['O_WRONLY', 'O_TRUNC'], false],
      [['O_WRONLY', 'O_TRUNC'], true],
      [['O_RDWR', 'O_TRUNC'], true],
      [['O_RDONLY', 'O_TRUNC'], false],
      [['O_RDWR'], true],
      [['O_WRONLY', 'O_APPEND'], true],
      [['O_WRONLY', 'O_CREAT', 'O_EXCL'], true],
      [['O_RDONLY', 'O_DIRECTORY'], false],
      [['O_RDONLY', 'O_NOFOLLOW'], false],
      [['O_WRONLY'], false],
    ];
    const [flags, write] = this.pick(variants);
    const data = write ? this.data(i) : undefined;
    const offset = write && flags.includes('O_RDWR') ? this.offset() : undefined;
    const op = (path: string): Op => ({ op: 'open', path, flags, ...(data === undefined ? {} : { data }), ...(offset === undefined ? {} : { offset }) });
    if (flags.includes('O_EXCL')) return this.makeEntry('file', op);
    if (flags.includes('O_DIRECTORY')) return this.onExisting((e) => e.kind === 'dir', () => 'ENOTDIR', op);
    const writes = !flags.includes('O_RDONLY') || flags.includes('O_TRUNC');
    return this.onExisting(
      (e) => e.kind === 'file' || (!writes && e.kind === 'dir'),
      (e) => (e.kind === 'symlink' ? (flags.includes('O_NOFOLLOW') ? 'ELOOP' : 'ok') : this.fileError(e)),
      op,
      writes ? this.touchFile : undefined,
    );
  }

  /** An xattr op on an existing path (mostly; a name it has, for remove and get). */
  xattr(call: 'set' | 'remove' | 'get', make: (path: string, name: string) => Op): Planned {
    const path = this.chance(0.9) ? this.any() : this.bad();
    const has = [...(this.m.get(path)?.xattrs ?? [])];
    const name = call !== 'set' && has.length > 0 && this.chance(0.7) ? this.pick(has) : this.pick(XATTRS);
    const looked = this.m.lookup(path);
    return { op: make(path, name), expect: looked === 'ok' ? this.m.xattr(path, call, name) : looked };
  }

  /** open(O_CREAT|O_TRUNC): a new file, or an existing one (mostly lower) emptied and rewritten. */
  overwrite(i: number): Planned {
    const r = this.rnd();
    const path = (r < 0.3 ? this.fresh() : r < 0.9 ? this.file() : undefined) ?? (this.chance(0.7) ? this.any() : this.bad());
    const e = this.m.get(path);
    const expect = this.m.parentError(path) ?? (e ? this.fileError(e) : 'ok');
    if (expect === 'ok') {
      if (e) this.m.touch(path);
      else this.m.add(path, 'file');
    }
    return { op: { op: 'overwrite', path, data: this.data(i) }, expect };
  }

  /** One op from the weighted table. */
  next(i: number): Planned {
    const count = this.m.entries.size;
    // Keep the tree between ~25 and ~150 entries: creations win when it is small.
    const grow = count < 25 ? 3 : count > 150 ? 0.3 : 1;
    const shrink = count > 150 ? 3 : count < 25 ? 0.3 : 1;
    const table: [number, () => Planned][] = [
      [6 * grow, () => this.makeEntry('file', (path) => ({ op: 'create', path, mode: this.pick(['644', '600', '755', '4755']), data: this.data(i) }))],
      [5 * grow, () => this.makeEntry('dir', (path) => ({ op: 'mkdir', path, mode: this.pick(['755', '700', '2775']) }))],
      [2 * grow, () => this.makeEntry('symlink', (path) => ({ op: 'symlink', target: this.pick(LINK_TARGETS), path }))],
      [
        2 * grow,
        () => {
          const r = this.rnd();
          const kind = r < 0.6 ? 'fifo' : r < 0.9 ? 'chr' : 'blk';
          const [major, minor] = this.pick(DEVICES);
          const mode = this.pick(['644', '600', '666']);
          return this.makeEntry(kind, (path) => (kind === 'fifo' ? { op: 'mknod', path, kind, mode } : { op: 'mknod', path, kind, mode, major, minor }));
        },
      ],
      [3 * grow, () => this.link()],
      [5 * shrink, () => this.unlink()],
      [4 * shrink, () => this.rmdir()],
      [8, () => this.rename([])],
      [2, () => this.rename(['noreplace'])],
      [2, () => this.rename(['exchange'])],
      [0.2, () => this.rename(['whiteout'])],
      [5, () => this.onExisting((e) => e.kind === 'file', (e) => this.fileError(e), (path) => ({ op: 'write', path, offset: this.offset(), data: this.data(i) }), this.touchFile)],
      [3, () => this.onExisting((e) => e.kind === 'file', (e) => this.fileError(e), (path) => ({ op: 'append', path, data: this.data(i) }), this.touchFile)],
      [2, () => this.overwrite(i)],
      [3, () => this.open(i)],
      [3, () => this.onExisting((e) => e.kind === 'file', (e) => this.fileError(e), (path) => ({ op: 'truncate', path, size: this.size() }), this.touchFile)],
      [
        3,
        () =>
          this.onExisting(
            () => true,
            () => 'ok',
            (path) => ({ op: 'chmod', path, mode: this.pick(this.m.get(path)?.kind === 'dir' ? DIR_MODES : FILE_MODES) }),
            this.touchFile,
          ),
      ],
      [2, () => this.onExisting(() => true, () => 'ok', (path) => ({ op: 'chown', path, uid: this.pick(OWNERS), gid: this.pick(OWNERS) }), this.touchFile)],
      [
        3,
        () =>
          this.onExisting(
            () => true,
            () => 'ok',
            (path) => ({
              op: 'utimens',
              path,
              atime: this.chance(0.2) ? 'omit' : this.time(),
              mtime: this.chance(0.1) ? 'omit' : this.time(),
              nofollow: this.m.get(path)?.kind === 'symlink' || this.chance(0.3),
            }),
            this.touchFile,
          ),
      ],
      [2, () => this.xattr('set', (path, name) => ({ op: 'setxattr', path, name, value: `v${this.int(0, 3)}` }))],
      [1, () => this.xattr('remove', (path, name) => ({ op: 'removexattr', path, name }))],
      [1, () => this.xattr('get', (path, name) => ({ op: 'getxattr', path, name }))],
      [1, () => this.onExisting(() => true, () => 'ok', (path) => ({ op: 'listxattr', path }))],
      [4, () => this.onExisting((e) => e.kind === 'dir', () => 'ENOTDIR', (path) => ({ op: 'readdir', path }))],
      [4, () => this.onExisting((e) => e.kind === 'file', (e) => (e.kind === 'dir' ? 'EISDIR' : e.kind === 'symlink' ? 'ELOOP' : 'SPECIAL'), (path) => ({ op: 'read', path }))],
      [5, () => this.onExisting(() => true, () => 'ok', (path) => ({ op: 'stat', path }))],
      [1, () => this.onExisting((e) => e.kind === 'symlink', () => 'EINVAL', (path) => ({ op: 'readlink', path }))],
      [
        1,
        () => {
          const linked = this.m.paths((p, e) => e.kind !== 'dir' && this.m.linksOf(p).length > 1);
          const a = linked.length > 0 ? this.pick(linked) : this.any();
          const others = this.m.linksOf(a).filter((p) => p !== a);
          const b = others.length > 0 ? this.pick(others) : this.any();
          return { op: { op: 'sameinode', a, b }, expect: this.m.entries.has(a) && this.m.entries.has(b) ? 'ok' : 'ENOENT' };
        },
      ],
    ];
    const total = table.reduce((s, [w]) => s + w, 0);
    let r = this.rnd() * total;
    let k = 0;
    while (k < table.length - 1 && r >= table[k][0]) r -= table[k++][0];
    return table[k][1]();
  }
}

/** N random ops from SEED with the model's predictions. Deterministic per seed. */
export function plannedOps(seed: number, n: number): Planned[] {
  const g = new Generator(seed);
  const out: Planned[] = [];
  for (let i = 0; i < n; i++) out.push(g.next(i));
  return out;
}

/** N random ops from SEED. Deterministic: the same seed always gives the same list. */
export function randomOps(seed: number, n: number): Op[] {
  return plannedOps(seed, n).map((p) => p.op);
}

/**
 * Coverage of a run: per op kind (renameat2 by flag), how many ops and which outcomes
 * (the oracle's), and how often the model predicted the outcome.
 */
export function coverageSummary(planned: readonly Planned[], outcomes: readonly Outcome[]): { text: string; codes: Map<string, number> } {
  const perKind = new Map<string, Map<string, number>>();
  const codes = new Map<string, number>();
  let predicted = 0;
  planned.forEach((p, i) => {
    const kind = p.op.op === 'rename2' ? `rename2:${p.op.flags.join('+')}` : p.op.op;
    const code = outcomeCode(outcomes[i]);
    const m = perKind.get(kind) ?? new Map<string, number>();
    m.set(code, (m.get(code) ?? 0) + 1);
    perKind.set(kind, m);
    codes.set(code, (codes.get(code) ?? 0) + 1);
    if (code === p.expect) predicted++;
  });
  const fmt = (m: Map<string, number>): string =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([c, k]) => `${c} ${k}`)
      .join(', ');
  const lines = [...perKind]
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([kind, m]) => `  ${kind.padEnd(20)} ${String([...m.values()].reduce((s, v) => s + v, 0)).padStart(4)}: ${fmt(m)}`);
  const pct = planned.length === 0 ? 0 : Math.round((100 * predicted) / planned.length);
  return {
    text: `op kinds and oracle outcomes (${planned.length} ops; all: ${fmt(codes)}; model predicted ${pct}%):\n${lines.join('\n')}`,
    codes,
  };
}
