// Shrink a failing random run to a short op list that still shows the same kind of
// difference, for a bug report. Not a test: run it by hand.
//
//   npx ts-node test/differential/shrink.ts SEED [N] [OUT.json]
//   npx ts-node test/differential/shrink.ts OPS.json [-] [OUT.json]   (shrink further)
//
// Environment as for differential.test.ts (STRATAFS_DIFF_TARGET, STRATAFS_BIN, ...). Each
// trial mounts fresh layers on both targets (a few seconds), so the search is bounded:
// first the shortest failing prefix (binary search), then removal of chunks of ops,
// halving the chunk size, within STRATAFS_SHRINK_TRIALS trials (default 80). The result
// is written to OUT.json (default /tmp/stratafs-shrunk-SEED.json). STRATAFS_SHRINK_MATCH
// (a regex on "merged PATH [FIELD]" / "outcome OP CODE/CODE") picks which difference to
// keep when there are several. Replay the result with
// STRATAFS_DIFF_REPLAY=OUT.json STRATAFS_DIFF_ONLY=replay npx tap test/differential/differential.test.ts
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Op } from '../lib/agent';
import { describeOp, triage, type Difference } from './compare';
import { compareRuns, fixtureLayout, KERNEL_OPTIONS, runOnTarget, targetFromEnv } from './harness';
import { randomOps } from './random';

/**
 * What must stay while shrinking: an outcome difference of the same op kind and the same
 * two outcome codes, or a snapshot difference at the same path in the same field.
 */
const signature = (d: Difference, ops: readonly Op[]): string => {
  const code = (o: unknown): string => (typeof o === 'object' && o !== null && 'err' in o ? String(o.err) : 'ok');
  return d.where === 'outcome' && d.opIndex !== undefined
    ? `outcome ${ops[d.opIndex].op} ${code(d.a)}/${code(d.b)}`
    : `${d.where} ${d.path} [${d.field}]`;
};
/** STRATAFS_SHRINK_MATCH=REGEX picks the difference to keep (matched against its signature). */
const MATCH = process.env.STRATAFS_SHRINK_MATCH === undefined ? undefined : new RegExp(process.env.STRATAFS_SHRINK_MATCH);

async function differences(ops: readonly Op[]): Promise<Difference[]> {
  const dir = await mkdtemp('/tmp/stratafs-shrink-');
  const downs: (() => unknown)[] = [];
  const t = { teardown: (fn: () => unknown) => void downs.push(fn) };
  try {
    const a = await runOnTarget(t, 'kernel', await fixtureLayout(join(dir, 'a'), {}), ops, KERNEL_OPTIONS);
    const b = await runOnTarget(t, targetFromEnv(), await fixtureLayout(join(dir, 'b'), {}), ops, KERNEL_OPTIONS);
    return triage('random', compareRuns(ops, a, b)).unexplained;
  } finally {
    for (const fn of downs.reverse()) await fn();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [seedArg, nArg, outArg] = process.argv.slice(2);
  if (seedArg === undefined) throw new Error('usage: shrink.ts SEED|OPS.json [N] [OUT.json]');
  const fromFile = seedArg.endsWith('.json');
  let ops = fromFile ? (JSON.parse(await readFile(seedArg, 'utf8')) as Op[]) : randomOps(Number(seedArg), Number(nArg ?? '1000'));
  const out = outArg ?? (fromFile ? seedArg.replace(/\.json$/, '.shrunk.json') : `/tmp/stratafs-shrunk-${seedArg}.json`);
  let budget = Number(process.env.STRATAFS_SHRINK_TRIALS ?? '80');

  const first = await differences(ops);
  if (first.length === 0) {
    console.log('no difference: nothing to shrink');
    return;
  }
  const chosen = first.find((d) => MATCH === undefined || MATCH.test(signature(d, ops)));
  if (chosen === undefined) {
    console.log(`no difference matches ${String(MATCH)}:\n${first.map((d) => `  ${signature(d, ops)}`).join('\n')}`);
    return;
  }
  const want = signature(chosen, ops);
  console.log(`${first.length} difference(s); shrinking while one is "${want}"`);
  const fails = async (candidate: readonly Op[]): Promise<boolean> => {
    budget--;
    return (await differences(candidate)).some((d) => signature(d, candidate) === want);
  };

  // Shortest failing prefix: the difference may show only in the final snapshots.
  let lo = 0;
  let hi = ops.length;
  const firstOp = first.find((d) => d.opIndex !== undefined && signature(d, ops) === want)?.opIndex;
  if (firstOp !== undefined) hi = firstOp + 1;
  while (lo + 1 < hi && budget > 0) {
    const mid = Math.floor((lo + hi) / 2);
    if (await fails(ops.slice(0, mid))) hi = mid;
    else lo = mid;
  }
  ops = ops.slice(0, hi);
  console.log(`prefix: ${ops.length} ops`);

  // Remove chunks, halving their size.
  for (let size = Math.max(1, Math.floor(ops.length / 2)); size >= 1 && budget > 0; size = Math.floor(size / 2)) {
    for (let start = ops.length - size; start >= 0 && budget > 0; start -= size) {
      const candidate = [...ops.slice(0, start), ...ops.slice(start + size)];
      if (candidate.length > 0 && (await fails(candidate))) ops = candidate;
    }
    console.log(`chunk ${size}: ${ops.length} ops`);
    if (size === 1) break;
  }
  await writeFile(out, JSON.stringify(ops, null, 1));
  console.log(`${ops.length} ops (written to ${out}):`);
  for (const op of ops) console.log(`  ${describeOp(op)}`);
  for (const d of await differences(ops)) console.log(`  ${d.where} ${d.path} [${d.field}]: ${JSON.stringify(d.a)} vs ${JSON.stringify(d.b)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
