// The differential checks over the FUSE-over-io_uring transport: representative scripted
// scenarios and a seeded random run, kernel overlayfs against stratafs with the fuse
// module's enable_uring on (restored afterwards), and proof from the kernel (the
// daemon's ring completions in /proc) that the requests came through the ring. Then
// the fallback: with enable_uring off the kernel does not offer the ring and the same
// mount serves through /dev/fuse, with no ring at all.
import t, { type Test } from 'tap';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { agentRun, agentSnapshot } from '../lib/agent';
import { tempDir } from '../lib/tmp';
import { ringCompletions, setEnableUring, uringUnavailable } from '../lib/uring';
import { compareSnapshots, formatDifferences, triage } from './compare';
import { compareRuns, fixtureLayout, KERNEL_OPTIONS, kernelViewOfUpper, mountLayout, runOnTarget, type Layout, type TargetResult } from './harness';
import { plannedOps } from './random';
import { SCENARIOS, type Scenario } from './scenarios';

const skip = uringUnavailable();

/** the scripted scenarios run over the ring: data, names, links, xattrs, listings */
const PICKED = [
  'copy-up on data and metadata changes',
  'unlink and rmdir leave whiteouts',
  'rename files',
  'rename directories from a lower (redirect)',
  'hard links',
  'symlinks',
  'xattrs on lower files and dirs',
  'readdir after changes',
  'truncate up (holes) and writes at large offsets',
  'mknod: FIFOs and device nodes',
];

/** like runOnTarget for stratafs, plus the daemon's ring completions read before unmount */
async function runOverRing(tt: Test, layout: Layout, scenario: Scenario): Promise<{ result: TargetResult; completions: number[] }> {
  const kernelOptions = scenario.kernelOptions ?? KERNEL_OPTIONS;
  const m = await mountLayout(tt, 'stratafs', layout, kernelOptions, [...(scenario.stratafsOptions ?? []), 'uring=auto']);
  const outcomes = await agentRun(m.mnt, scenario.ops);
  const merged = await agentSnapshot(m.mnt, 'merged');
  const completions = await ringCompletions(m.mnt);
  await m.unmount();
  const upper = await agentSnapshot(layout.upper as string, 'upper');
  return { result: { target: 'stratafs', options: m.options, outcomes, merged, upper }, completions };
}

async function differentialOverRing(tt: Test, scenario: Scenario): Promise<void> {
  const dir = await tempDir(tt, 'uring');
  const kernelOptions = scenario.kernelOptions ?? KERNEL_OPTIONS;
  const a = await runOnTarget(tt, 'kernel', await fixtureLayout(join(dir, 'a'), {}), scenario.ops, kernelOptions);
  const layoutB = await fixtureLayout(join(dir, 'b'), {});
  const { result: b, completions } = await runOverRing(tt, layoutB, scenario);
  tt.equal(completions.length, 1, 'the daemon serving the mount has one io_uring');
  tt.ok((completions[0] ?? 0) > 0, `requests came through the ring (${completions[0] ?? 0} completions)`);
  tt.equal(b.outcomes.length, scenario.ops.length, 'stratafs ran every op');
  const { unexplained } = triage(scenario.name, compareRuns(scenario.ops, a, b));
  if (unexplained.length > 0) tt.comment(formatDifferences(unexplained, ['kernel', 'stratafs (io_uring)']));
  tt.equal(unexplained.length, 0, 'outcomes, merged view and upper layer match kernel overlayfs');
  const view = await kernelViewOfUpper(tt, layoutB, kernelOptions);
  tt.equal(compareSnapshots('merged', a.merged, view).length, 0, 'kernel overlayfs shows the same tree over the upper stratafs wrote');
}

t.test('differential checks over the io_uring transport', { skip }, async (t) => {
  await setEnableUring(t, true);
  for (const scenario of SCENARIOS.filter((s) => PICKED.includes(s.name))) {
    await t.test(scenario.name, (tt) => differentialOverRing(tt, scenario));
  }
  const seed = 11;
  await t.test(`random ops over the ring (STRATAFS_SEED=${seed}, 300 ops)`, (tt) =>
    differentialOverRing(tt, { name: 'random', ops: plannedOps(seed, 300).map((p) => p.op) }));
});

t.test('with enable_uring off the same mount serves through /dev/fuse', { skip }, async (t) => {
  await setEnableUring(t, false);
  const dir = await tempDir(t, 'uring-off');
  const layout = await fixtureLayout(join(dir, 'b'), {});
  const m = await mountLayout(t, 'stratafs', layout, KERNEL_OPTIONS, ['uring=auto']);
  const file = join(m.mnt, 'fallback-check');
  await writeFile(file, 'through /dev/fuse\n');
  t.equal(await readFile(file, 'utf8'), 'through /dev/fuse\n', 'the mount serves requests');
  t.same(await ringCompletions(m.mnt), [], 'the daemon has no io_uring');
  await m.unmount();
});
