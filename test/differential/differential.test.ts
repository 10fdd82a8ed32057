// Differential tests: every scripted scenario and one seeded random run, on kernel
// overlayfs (the oracle) and on stratafs, compared op by op and tree by tree.
//
// Environment:
//   STRATAFS_DIFF_TARGET=stratafs|kernel  second target (default stratafs; "kernel" runs
//                                         the harness sanity check, kernel vs kernel)
//   STRATAFS_DIFF_KERNEL_OPTS=a,b         oracle mount options (default redirect_dir=on,index=off,
//                                         see KERNEL_OPTIONS in harness.ts for why)
//   STRATAFS_DIFF_STRATAFS_OPTS=a,b       extra stratafs mount options
//   STRATAFS_DIFF_ONLY=REGEX              run only the scenarios whose name matches
//   STRATAFS_SEED=N                       seed of the random run (default: from the clock)
//   STRATAFS_DIFF_OPS=N                   ops in the random run (default 1000)
//   STRATAFS_BIN=PATH                     the stratafs executable (default bin/stratafs)
//   STRATAFS_DIFF_REPLAY=FILE             also run the ops in FILE (a JSON array) as scenario
//                                         "replay" (with STRATAFS_DIFF_ONLY=replay: only those)
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Op } from '../lib/agent';
import { tempDir } from '../lib/tmp';
import { compareSnapshots, describeOp, formatDifferences, triage } from './compare';
import { compareRuns, fixtureLayout, KERNEL_OPTIONS, kernelViewOfUpper, runOnTarget, targetFromEnv, type TargetResult } from './harness';
import { coverageSummary, opCountFromEnv, plannedOps, seedFromEnv } from './random';
import { SCENARIOS, type Scenario } from './scenarios';

const TARGET_B = targetFromEnv();
const NAMES: [string, string] = ['kernel', TARGET_B === 'kernel' ? 'kernel (2nd)' : 'stratafs'];
const ONLY = process.env.STRATAFS_DIFF_ONLY === undefined ? undefined : new RegExp(process.env.STRATAFS_DIFF_ONLY);

async function differential(tt: Test, scenario: Scenario, context: string): Promise<TargetResult> {
  const dir = await tempDir(tt, 'diff');
  const kernelOptions = scenario.kernelOptions ?? KERNEL_OPTIONS;
  // The oracle cannot read AUFS whiteouts: it gets the same layer in OverlayFS form.
  const layoutA = await fixtureLayout(join(dir, 'a'), { readOnly: scenario.readOnly });
  const layoutB = await fixtureLayout(join(dir, 'b'), {
    readOnly: scenario.readOnly,
    aufsTop: scenario.aufsTop === true && TARGET_B === 'stratafs',
  });

  const a = await runOnTarget(tt, 'kernel', layoutA, scenario.ops, kernelOptions);
  const b = await runOnTarget(tt, TARGET_B, layoutB, scenario.ops, kernelOptions, scenario.stratafsOptions);
  tt.comment(`${NAMES[0]}: -o ${a.options}`);
  tt.comment(`${NAMES[1]}: -o ${b.options}`);

  tt.equal(a.outcomes.length, scenario.ops.length, 'the oracle ran every op');
  tt.equal(b.outcomes.length, scenario.ops.length, `${NAMES[1]} ran every op`);
  tt.same(a.merged.leaks, [], `${NAMES[0]} shows no private overlay xattr`);
  tt.same(b.merged.leaks, [], `${NAMES[1]} shows no private overlay xattr`);

  const { unexplained, known } = triage(scenario.name, compareRuns(scenario.ops, a, b));
  if (known.length > 0) tt.comment(`${known.length} known difference(s) (known-differences.ts)`);
  const firstOp = unexplained.find((d) => d.opIndex !== undefined)?.opIndex;
  const report =
    unexplained.length === 0
      ? ''
      : `${unexplained.length} difference(s) [${context}]` +
        (firstOp === undefined ? '' : `; first differing op #${firstOp}: ${describeOp(scenario.ops[firstOp])}`) +
        `\n${formatDifferences(unexplained, NAMES)}`;
  if (report) tt.comment(report);
  const first = unexplained[0];
  tt.equal(
    unexplained.length,
    0,
    'outcomes, merged view and upper layer match' +
      (first ? ` (first: ${first.where} ${first.path}${first.where === 'outcome' ? '' : ` [${first.field}]`}; report above)` : ''),
  );
  // The upper layer the second target wrote must mean the same to kernel overlayfs.
  // (Not for AUFS lowers, which the kernel cannot read, nor for read-only mounts.)
  if (!scenario.readOnly && !(scenario.aufsTop === true && TARGET_B === 'stratafs')) {
    const view = await kernelViewOfUpper(tt, layoutB, kernelOptions);
    const remount = compareSnapshots('merged', a.merged, view);
    if (remount.length > 0) tt.comment(`kernel view of the ${NAMES[1]} upper layer:\n${formatDifferences(remount, ['kernel', 'kernel on upper'])}`);
    tt.equal(remount.length, 0, `kernel overlayfs mounts the upper layer of ${NAMES[1]} and shows the same tree`);
  }
  if (TARGET_B === 'kernel') {
    // Sanity of the oracle itself: ops that must succeed on fresh layers did.
    tt.ok(
      a.outcomes.some((o) => 'ok' in o),
      'some ops succeed',
    );
  }
  return a;
}

t.comment(`second target: ${NAMES[1]}; oracle options: ${KERNEL_OPTIONS.join(',')}`);

for (const scenario of SCENARIOS) {
  if (ONLY && !ONLY.test(scenario.name)) continue;
  t.test(scenario.name, (tt) => differential(tt, scenario, scenario.why ?? 'scripted'));
}

const REPLAY = process.env.STRATAFS_DIFF_REPLAY;
if (REPLAY !== undefined && (!ONLY || ONLY.test('replay'))) {
  t.test(`replay ${REPLAY}`, (tt) => differential(tt, { name: 'replay', ops: JSON.parse(readFileSync(REPLAY, 'utf8')) as Op[] }, `STRATAFS_DIFF_REPLAY=${REPLAY}`));
}

if (!ONLY || ONLY.test('random')) {
  const seed = seedFromEnv();
  const n = opCountFromEnv();
  t.test(`random ops (STRATAFS_SEED=${seed} STRATAFS_DIFF_OPS=${n})`, async (tt) => {
    tt.comment(`reproduce with STRATAFS_SEED=${seed} STRATAFS_DIFF_OPS=${n}`);
    const planned = plannedOps(seed, n);
    const ops: Op[] = planned.map((p) => p.op);
    const oracle = await differential(tt, { name: 'random', ops }, `STRATAFS_SEED=${seed} STRATAFS_DIFF_OPS=${n}`);
    const { text, codes } = coverageSummary(planned, oracle.outcomes);
    tt.comment(text);
    // The generator must keep aiming at the tree: most ops work on the oracle, and few
    // miss because the name is not there (the model keeps track of what exists).
    const ok = codes.get('ok') ?? 0;
    const enoent = codes.get('ENOENT') ?? 0;
    // guards against a generator that drifted into mostly failing ops (it tracks the tree
    // loosely, so long runs drift: 5000-op runs have seen up to a third ENOENT)
    tt.ok(ok >= 0.4 * n, `most ops succeed on the oracle (${ok} of ${n})`);
    tt.ok(enoent <= 0.4 * n, `ENOENT stays a minority (${enoent} of ${n})`);
  });
}
