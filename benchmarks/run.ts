/**
 * stratafs benchmark program (never part of the test suite; asserts nothing).
 *
 *   npm run build && npm run bench -- [--quick] [--reps=N] [--only=W,..] [--targets=T,..]
 *   npm run bench -- --sharing [--containers=N]      (or npm run bench:sharing)
 *
 * The workload run prints a table of medians and ratios and writes results/latest.json,
 * latest.svg and latest.md; the sharing run writes results/sharing.json, sharing.svg and
 * sharing.md. See benchmarks/README.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { markdownReport } from './lib/markdown';
import { parseOptions, USAGE, type BenchOptions } from './lib/options';
import { summarise, table, type RunResult } from './lib/results';
import { isInterrupted } from './lib/scratch';
import { runSharing } from './lib/sharing';
import { suiteSvg } from './lib/svg';
import { runSuite } from './lib/suite';
import { WORKLOADS } from './lib/workloads';

const repoRoot = path.resolve(__dirname, '..', '..');
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const say = (s: string): void => void process.stdout.write(`${s}\n`);

function printSuite(result: RunResult): void {
  say(`\n${table(result)}`);
  const mountLine = Object.entries(result.mountMedian).map(([t, s]) => `${t} ${s.toFixed(3)} s`);
  if (mountLine.length > 0) say(`\nmedian time to mount: ${mountLine.join(', ')}`);
  for (const w of result.workloads) {
    for (const m of w.mismatches) say(`outputs differ in ${w.name}, ${m}`);
    for (const [t, samples] of Object.entries(w.samples)) {
      for (const s of samples ?? []) if (s.error) say(`${w.name} on ${t} (rep ${s.rep + 1}) failed: ${s.error}`);
    }
  }
  for (const [what, why] of Object.entries(result.skipped)) say(`${what} skipped: ${why}`);
}

/** Writes NAME.json, NAME.svg and NAME.md into the results directory. */
function write(o: BenchOptions, name: string, json: unknown, svg: string, md: string): void {
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  fs.writeFileSync(path.join(o.out, `${name}.svg`), svg);
  fs.writeFileSync(path.join(o.out, `${name}.md`), md);
  say(`\nmarkdown for the README (also in ${path.join(o.out, `${name}.md`)}):\n\n${md}`);
  say(`wrote ${path.join(o.out, `${name}.json`)}, ${name}.svg and ${name}.md`);
}

async function main(): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseOptions(process.argv.slice(2), repoRoot);
  } catch (e) {
    log(`bench: ${(e as Error).message} (see --help)`);
    return 2;
  }
  if (o.help) {
    say(USAGE);
    return 0;
  }
  const unknown = (o.only ?? []).filter((n) => !WORKLOADS.some((w) => w.name === n));
  if (unknown.length > 0) {
    log(`bench: unknown workload(s) ${unknown.join(', ')} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);
    return 2;
  }
  if (o.sharing) {
    const r = await runSharing(o, repoRoot, log);
    say(`\n${r.text}`);
    write(o, 'sharing', r.json, r.svg, r.markdown);
  } else {
    const result = await runSuite(o, repoRoot, log);
    summarise(result);
    printSuite(result);
    write(o, 'latest', result, suiteSvg(result), markdownReport(result));
  }
  return isInterrupted() ? 130 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    log(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  },
);
