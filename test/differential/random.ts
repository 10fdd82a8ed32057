// Seeded random operations for the differential run. The name space is small on purpose
// (a handful of directories and names, most of them present in the example layers under
// play/), so operations collide: names are reused, directories are emptied and refilled,
// files become directories and back, lower entries are renamed over each other.
import type { Op } from '../lib/agent';

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

// Repeats weight the choice towards directories that exist most of the time.
const DIRS = ['play', 'play', 'play', 'play/d1', 'play/d1', 'play/d2', 'play/d2', 'play/d3', 'play/d3/sub', 'play/d1/d2', 'play/n'];
const NAMES = ['f1', 'f2', 'm1', 't1', 's1', 'x', 'y', 'd1', 'd2', 'd3', 'n'];
const LINK_TARGETS = ['f1', '../f1', 'd1', 'x', '/etc/passwd', 'missing'];
const XATTRS = ['user.note', 'user.dir-note', 'user.a', 'user.b'];
const MODES = ['644', '600', '755', '700', '4755', '2775', '1777', '000'];
const OWNERS = [0, 1000, 1001];

/** N random ops from SEED. Deterministic: the same seed always gives the same list. */
export function randomOps(seed: number, n: number): Op[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const path = (): string => (rnd() < 0.08 ? pick(DIRS) : `${pick(DIRS)}/${pick(NAMES)}`);
  const data = (i: number): string => `op${i}:`.padEnd(1 + Math.floor(rnd() * 40), String.fromCharCode(97 + (i % 26)));

  // Weighted table: cheap probes are frequent so that differences show up early.
  const table: [number, (i: number) => Op][] = [
    [6, (i) => ({ op: 'create', path: path(), mode: pick(MODES.slice(0, 4)), data: data(i) })],
    [3, (i) => ({ op: 'overwrite', path: path(), data: data(i) })],
    [5, (i) => ({ op: 'write', path: path(), offset: Math.floor(rnd() * 30), data: data(i) })],
    [4, (i) => ({ op: 'append', path: path(), data: data(i) })],
    [3, () => ({ op: 'truncate', path: path(), size: Math.floor(rnd() * 50) })],
    [3, () => ({ op: 'chmod', path: path(), mode: pick(MODES) })],
    [2, () => ({ op: 'chown', path: path(), uid: pick(OWNERS), gid: pick(OWNERS) })],
    [8, () => ({ op: 'rename', from: path(), to: path() })],
    [8, () => ({ op: 'unlink', path: path() })],
    [6, () => ({ op: 'rmdir', path: path() })],
    [6, () => ({ op: 'mkdir', path: path(), mode: pick(['755', '700', '2775']) })],
    [3, () => ({ op: 'link', from: path(), to: path() })],
    [3, () => ({ op: 'symlink', target: pick(LINK_TARGETS), path: path() })],
    [2, () => ({ op: 'setxattr', path: path(), name: pick(XATTRS), value: `v${Math.floor(rnd() * 4)}` })],
    [2, () => ({ op: 'removexattr', path: path(), name: pick(XATTRS) })],
    [1, () => ({ op: 'listxattr', path: path() })],
    [6, () => ({ op: 'readdir', path: pick(DIRS) })],
    [5, () => ({ op: 'read', path: path() })],
    [6, () => ({ op: 'stat', path: path() })],
    [1, () => ({ op: 'readlink', path: path() })],
  ];
  const total = table.reduce((s, [w]) => s + w, 0);
  const ops: Op[] = [];
  let sinceRefill = 0;
  while (ops.length < n) {
    if (++sinceRefill === 97) {
      // Refill: turn the directory names back into directories (a file or symlink in the
      // way is unlinked first; for a directory that unlink fails with EISDIR).
      sinceRefill = 0;
      for (const d of new Set(DIRS)) ops.push({ op: 'unlink', path: d }, { op: 'mkdir', path: d, mode: '755' });
      continue;
    }
    let r = rnd() * total;
    let k = 0;
    while (r >= table[k][0]) r -= table[k++][0];
    ops.push(table[k][1](ops.length));
  }
  ops.length = n;
  return ops;
}
