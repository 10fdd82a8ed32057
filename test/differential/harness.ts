// One differential run: the same layers, the same ops, on two targets; then the
// comparison. Target A is always kernel overlayfs (the oracle). Target B is stratafs, or
// kernel overlayfs again when STRATAFS_DIFF_TARGET=kernel (the harness sanity check:
// kernel against kernel must compare equal).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { agentRun, agentSnapshot, type Op, type Outcome, type Snapshot } from '../lib/agent';
import { buildFixtureLayers } from '../lib/layers';
import { runOk } from '../lib/proc';
import { mountKernelOverlay, mountStratafs, type Mounted, type TargetName } from '../lib/mounts';
import type { Teardown } from '../lib/tmp';
import { compareOutcomes, compareSnapshots, type Difference } from './compare';

function listFromEnv(name: string): string[] | undefined {
  const v = process.env[name];
  return v === undefined ? undefined : v.split(',').filter((s) => s.length > 0);
}

/** The second target: STRATAFS_DIFF_TARGET = stratafs (default) | kernel. */
export function targetFromEnv(): TargetName {
  const v = process.env.STRATAFS_DIFF_TARGET ?? 'stratafs';
  if (v !== 'stratafs' && v !== 'kernel') throw new Error(`STRATAFS_DIFF_TARGET must be stratafs or kernel, not ${v}`);
  return v;
}

/**
 * The oracle's options in the differential suite: STRATAFS_DIFF_KERNEL_OPTS (comma list),
 * else redirect_dir=on,index=off. Why index=off: stratafs copies up one name of a lower
 * hard link pair and so breaks the pair, as the kernel does with index=off; with index=on
 * the kernel keeps the pair (and counts links through its index), which changes nlink and
 * contents seen through the other name. Nothing else in these scenarios depends on index
 * (it matters for NFS export and for verifying lowers on remount). redirect_dir=on: renaming
 * a directory that comes from a lower must work (otherwise EXDEV), as stratafs does it.
 * (mountKernelOverlay's own default stays KERNEL_DEFAULT_OPTIONS, index=on.)
 */
export const KERNEL_OPTIONS: readonly string[] = listFromEnv('STRATAFS_DIFF_KERNEL_OPTS') ?? ['redirect_dir=on', 'index=off'];
/** Extra options for stratafs mounts: STRATAFS_DIFF_STRATAFS_OPTS (comma list). */
export const STRATAFS_EXTRA_OPTIONS: readonly string[] = listFromEnv('STRATAFS_DIFF_STRATAFS_OPTS') ?? [];

export interface Layout {
  lowers: string[];
  upper?: string;
  work?: string;
  mnt: string;
}

export const SYSCALLS_PY = join(__dirname, 'syscalls.py');

/**
 * Fresh example layers plus upper/work/mnt under DIR. Every entry of the layers gets a
 * fixed atime and mtime (from its layer and path, with a nanosecond part), so that two
 * copies compare equal and a copy-up that loses or rounds a time shows in the snapshots.
 */
export async function fixtureLayout(dir: string, opts: { aufsTop?: boolean; readOnly?: boolean }): Promise<Layout> {
  await mkdir(dir, { recursive: true });
  const layers = await buildFixtureLayers(join(dir, 'layers'), opts.aufsTop ? 'aufs' : 'overlay');
  await runOk('python3', ['-I', '-S', SYSCALLS_PY, 'fixtimes', ...layers.lowers], { timeoutMs: 60_000 });
  const layout: Layout = { lowers: layers.lowers, mnt: join(dir, 'mnt') };
  await mkdir(layout.mnt);
  if (!opts.readOnly) {
    layout.upper = join(dir, 'upper');
    layout.work = join(dir, 'work');
    await mkdir(layout.upper);
    await mkdir(layout.work);
  }
  return layout;
}

/** Mount LAYOUT on TARGET; the unmount is registered with t.teardown right away. */
export async function mountLayout(
  t: Teardown,
  target: TargetName,
  layout: Layout,
  kernelOptions: readonly string[] = KERNEL_OPTIONS,
  stratafsOptions: readonly string[] = [],
): Promise<Mounted> {
  const spec = { lowers: layout.lowers, upper: layout.upper, work: layout.work, mnt: layout.mnt };
  const m =
    target === 'kernel'
      ? await mountKernelOverlay({ ...spec, options: kernelOptions })
      : await mountStratafs({ ...spec, extraOptions: [...stratafsOptions, ...STRATAFS_EXTRA_OPTIONS] });
  t.teardown(() => m.unmount());
  return m;
}

export interface TargetResult {
  target: TargetName;
  options: string;
  outcomes: Outcome[];
  merged: Snapshot;
  /** Snapshot of the upper dir after unmount (absent for read-only mounts). */
  upper?: Snapshot;
}

/** Mount, run OPS through the agent, snapshot the merged view, unmount, snapshot upper. */
export async function runOnTarget(
  t: Teardown,
  target: TargetName,
  layout: Layout,
  ops: readonly Op[],
  kernelOptions?: readonly string[],
  stratafsOptions?: readonly string[],
): Promise<TargetResult> {
  const m = await mountLayout(t, target, layout, kernelOptions, stratafsOptions);
  const outcomes = await agentRun(m.mnt, ops);
  const merged = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  const upper = layout.upper === undefined ? undefined : await agentSnapshot(layout.upper, 'upper');
  return { target, options: m.options, outcomes, merged, upper };
}

/** Every difference between two runs of the same ops. */
export function compareRuns(ops: readonly Op[], a: TargetResult, b: TargetResult): Difference[] {
  const diffs = [...compareOutcomes(ops, a.outcomes, b.outcomes), ...compareSnapshots('merged', a.merged, b.merged)];
  if (a.upper && b.upper) diffs.push(...compareSnapshots('upper', a.upper, b.upper));
  return diffs;
}

/**
 * The on-disk compatibility check: mount LAYOUT's upper and work dirs (as left by the
 * target) with kernel overlayfs over the same lowers and the oracle's options, and
 * snapshot the merged view; it must equal the oracle's live view.
 */
export async function kernelViewOfUpper(t: Teardown, layout: Layout, kernelOptions: readonly string[]): Promise<Snapshot> {
  const mnt = `${layout.mnt}-remount`;
  await mkdir(mnt);
  const m = await mountLayout(t, 'kernel', { ...layout, mnt }, kernelOptions);
  const merged = await agentSnapshot(m.mnt, 'merged');
  await m.unmount();
  return merged;
}
