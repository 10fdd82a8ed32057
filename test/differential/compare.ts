// Comparison of two targets' results: per-op outcomes and tree snapshots, and a readable
// report of the first differences.
import { isDeepStrictEqual } from 'node:util';
import type { Op, Outcome, Snapshot, SnapshotEntry } from '../lib/agent';
import { KNOWN_DIFFERENCES } from './known-differences';

export type Where = 'outcome' | 'merged' | 'upper';

export interface Difference {
  where: Where;
  /** Path in the tree, or "#INDEX op" for an outcome. */
  path: string;
  field: string;
  a: unknown;
  b: unknown;
  opIndex?: number;
}

export function describeOp(op: Op): string {
  const { op: name, ...args } = op;
  return `${name} ${Object.values(args)
    .map((v) => JSON.stringify(v))
    .join(' ')}`;
}

export function compareOutcomes(ops: readonly Op[], a: readonly Outcome[], b: readonly Outcome[]): Difference[] {
  const diffs: Difference[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (!isDeepStrictEqual(a[i], b[i])) {
      diffs.push({ where: 'outcome', path: `#${i} ${ops[i] ? describeOp(ops[i]) : '?'}`, field: 'outcome', a: a[i], b: b[i], opIndex: i });
    }
  }
  return diffs;
}

const FIELDS: (keyof SnapshotEntry)[] = ['type', 'error', 'mode', 'uid', 'gid', 'nlink', 'size', 'sha256', 'target', 'rdev', 'mtime', 'linkGroup', 'xattrs'];

export function compareSnapshots(where: 'merged' | 'upper', a: Snapshot, b: Snapshot): Difference[] {
  const diffs: Difference[] = [];
  const paths = [...new Set([...Object.keys(a.entries), ...Object.keys(b.entries)])].sort();
  for (const path of paths) {
    const ea = a.entries[path];
    const eb = b.entries[path];
    if (!ea || !eb) {
      diffs.push({ where, path, field: 'exists', a: ea ?? '(absent)', b: eb ?? '(absent)' });
      continue;
    }
    for (const field of FIELDS) {
      if (!isDeepStrictEqual(ea[field], eb[field])) diffs.push({ where, path, field, a: ea[field], b: eb[field] });
    }
  }
  return diffs;
}

/** Split differences into the ones listed in known-differences.ts and the rest. */
export function triage(scenario: string, diffs: readonly Difference[]): { unexplained: Difference[]; known: Difference[] } {
  const unexplained: Difference[] = [];
  const known: Difference[] = [];
  for (const d of diffs) {
    const hit = KNOWN_DIFFERENCES.some(
      (k) =>
        (k.scenario === undefined || k.scenario.test(scenario)) &&
        k.where === d.where &&
        (k.path === undefined || k.path.test(d.path)) &&
        (k.field === undefined || k.field === d.field),
    );
    (hit ? known : unexplained).push(d);
  }
  return { unexplained, known };
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** A readable report: the first LIMIT differences, with the targets named. */
export function formatDifferences(diffs: readonly Difference[], names: [string, string], limit = 30): string {
  const lines = diffs.slice(0, limit).map((d) => {
    const head = d.where === 'outcome' ? `outcome ${d.path}` : `${d.where} ${d.path} [${d.field}]`;
    return `  ${head}\n      ${names[0]}: ${show(d.a)}\n      ${names[1]}: ${show(d.b)}`;
  });
  if (diffs.length > limit) lines.push(`  ... and ${diffs.length - limit} more`);
  return lines.join('\n');
}
