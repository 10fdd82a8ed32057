/**
 * stratafs benchmark program (never part of the test suite; asserts nothing).
 *
 *   npm run build && npm run bench -- [--quick] [--reps=N] [--only=W,..] [--targets=T,..]
 *
 * Builds a layer stack once, then for each repetition runs every workload on every
 * target, the target order rotated, each on a fresh upper/work dir and a fresh mount.
 * All access to a mount happens in child processes; this process only spawns them and
 * reads /proc. Prints a table of medians and writes results/latest.json and latest.svg.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildDataset, type Dataset } from './lib/dataset';
import { parseOptions, USAGE, type BenchOptions, type TargetName } from './lib/options';
import { describeFailure, killRunning, mountsUnder, ok, run, sh } from './lib/proc';
import { summarise, table, type RunResult, type Sample, type WorkloadResult } from './lib/results';
import { chart } from './lib/svg';
import { makeTargets, type RunDirs, type Target } from './lib/targets';
import { WORKLOADS, type Workload } from './lib/workloads';

const repoRoot = path.resolve(__dirname, '..', '..');
const log = (s: string): void => void process.stderr.write(`${s}\n`);

let interrupted = false;

const DROP_CACHES = 'sync && echo 3 > /proc/sys/vm/drop_caches';

/** Unmounts whatever is still mounted under DIR. */
async function clearMounts(dir: string): Promise<void> {
  for (const m of mountsUnder(dir)) {
    log(`unmounting stale ${m.mountpoint} (${m.fstype})`);
    await run('umount', ['-l', m.mountpoint], { timeoutMs: 30_000 });
  }
}

const OWNER = 'owner.pid';
const KEPT = 'kept';

/** Clears mounts left by earlier runs under PARENT whose program is no longer alive. */
async function clearStaleRuns(parent: string): Promise<void> {
  for (const name of fs.readdirSync(parent)) {
    if (!name.startsWith('run-')) continue;
    const dir = path.join(parent, name);
    let pid = 0;
    try {
      pid = Number(fs.readFileSync(path.join(dir, OWNER), 'utf8'));
      process.kill(pid, 0);
      continue; // another benchmark is running there
    } catch {
      // no owner, or the owner is gone
    }
    await clearMounts(dir);
    // a run that was killed leaves its scratch behind; one kept on purpose stays
    if (!fs.existsSync(path.join(dir, KEPT)) && mountsUnder(dir).length === 0) {
      log(`removing ${dir} left by a run that did not finish`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

let runSeq = 0;

function runDirs(scratch: string, target: TargetName, w: Workload): RunDirs {
  const base = path.join(scratch, 'runs', `${String(++runSeq).padStart(4, '0')}-${target}-${w.name}`);
  const dirs = { base, upper: path.join(base, 'upper'), work: path.join(base, 'work'), mnt: path.join(base, 'mnt') };
  for (const d of [dirs.upper, dirs.work, dirs.mnt]) fs.mkdirSync(d, { recursive: true });
  return dirs;
}

async function step(what: string, script: string, env: Record<string, string>, o: BenchOptions): Promise<string> {
  const r = await sh(script, env, o.timeoutSec * 1000);
  if (!ok(r)) throw new Error(describeFailure(what, r));
  return r.stdout.trim();
}

/** One workload on one target on a fresh mount: the timed command and its check. */
async function runOne(t: Target, w: Workload, rep: number, ds: Dataset, o: BenchOptions): Promise<Sample> {
  const sample: Sample = { rep };
  const dirs = runDirs(ds.root, t.name, w);
  const ctx = { ds, target: t.name };
  const env = { MNT: t.root(ds, dirs) };
  let mounted = false;
  try {
    const m0 = process.hrtime.bigint();
    await t.mount(ds, dirs);
    mounted = true;
    sample.mountSeconds = Number(process.hrtime.bigint() - m0) / 1e9;
    const prepare = w.prepare?.(ctx);
    if (prepare) await step('prepare', prepare, env, o);
    // dirty data of earlier steps must not be written back during the timed command
    await step(w.cold ? 'drop caches' : 'sync', w.cold ? DROP_CACHES : 'sync', {}, o);
    const r = await sh(w.command(ctx), env, o.timeoutSec * 1000);
    if (!ok(r)) throw new Error(describeFailure('command', r));
    sample.seconds = r.seconds;
    const outputs = [r.stdout.trim()];
    const check = w.check?.(ctx);
    if (check) outputs.push(await step('check', check, env, o));
    sample.output = outputs.filter((s) => s.length > 0).join(' / ');
  } catch (e) {
    sample.error = e instanceof Error ? e.message : String(e);
  } finally {
    const notes = mounted ? await t.unmount(dirs) : await t.unmount(dirs).catch(() => []);
    const cleanup = w.cleanup?.(ctx);
    if (cleanup) {
      const r = await sh(cleanup, env, o.timeoutSec * 1000);
      if (!ok(r)) notes.push(describeFailure('cleanup', r));
    }
    if (notes.length > 0) sample.notes = notes;
    // never remove anything that is still a mount (or has one below it)
    if (mountsUnder(dirs.base).length === 0) fs.rmSync(dirs.base, { recursive: true, force: true });
    else (sample.notes ??= []).push(`left ${dirs.base}: still mounted`);
  }
  return sample;
}

function rotate<T>(xs: T[], by: number): T[] {
  const k = xs.length === 0 ? 0 : by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

async function main(): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseOptions(process.argv.slice(2), repoRoot);
  } catch (e) {
    log(`bench: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const workloads = o.only ? WORKLOADS.filter((w) => o.only?.includes(w.name)) : WORKLOADS;
  const unknown = (o.only ?? []).filter((n) => !WORKLOADS.some((w) => w.name === n));
  if (unknown.length > 0) {
    log(`bench: unknown workload(s) ${unknown.join(', ')} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);
    return 2;
  }
  const all = makeTargets(repoRoot);
  const targets: Target[] = [];
  const skipped: Partial<Record<TargetName, string>> = {};
  for (const name of o.targets) {
    const why = await all[name].unavailable();
    if (why) {
      skipped[name] = why;
      log(`skipping ${name}: ${why}`);
    } else targets.push(all[name]);
  }
  if (process.getuid?.() !== 0) log('note: not root, so caches cannot be dropped: "cold" workloads are not cold');

  fs.mkdirSync(o.scratch, { recursive: true });
  await clearStaleRuns(o.scratch);
  const scratch = fs.mkdtempSync(path.join(o.scratch, 'run-'));
  fs.writeFileSync(path.join(scratch, OWNER), String(process.pid));
  log(`scratch: ${scratch}`);
  const onSignal = (): void => {
    interrupted = true;
    log('interrupted: finishing the current step and cleaning up');
    killRunning();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const result: RunResult = {
    date: new Date().toISOString(),
    host: os.hostname(),
    kernel: os.release(),
    node: process.version,
    options: { ...o },
    targets: targets.map((t) => t.name),
    skipped,
    workloads: workloads.map((w): WorkloadResult => ({ name: w.name, description: w.description, samples: {}, median: {}, mismatches: [] })),
    ratios: [],
    geomean: { median: {} },
    mountMedian: {},
  };
  try {
    const ds = await buildDataset(scratch, o, log);
    for (let rep = 0; rep < o.reps && !interrupted; rep++) {
      for (const [wi, w] of workloads.entries()) {
        if (interrupted) break;
        const wr = result.workloads[wi];
        const outputs = new Map<string, TargetName[]>();
        for (const t of rotate(targets, rep + wi)) {
          if (interrupted) break;
          const s = await runOne(t, w, rep, ds, o);
          (wr.samples[t.name] ??= []).push(s);
          const shown = s.error ? `ERROR ${s.error}` : `${(s.seconds as number).toFixed(3)} s`;
          log(`rep ${rep + 1}/${o.reps}  ${w.name.padEnd(14)} ${t.name.padEnd(15)} ${shown}${s.notes ? `  [${s.notes.join('; ')}]` : ''}`);
          if (s.output !== undefined) outputs.set(s.output, [...(outputs.get(s.output) ?? []), t.name]);
        }
        if (outputs.size > 1) {
          const desc = [...outputs].map(([out, ts]) => `${ts.join('+')}: "${out}"`).join(' vs ');
          wr.mismatches.push(`rep ${rep + 1}: ${desc}`);
          log(`rep ${rep + 1}  ${w.name}: outputs differ: ${desc}`);
        }
      }
    }
  } finally {
    await clearMounts(scratch);
    if (o.keep) {
      fs.writeFileSync(path.join(scratch, KEPT), '');
      log(`kept ${scratch}`);
    }
    else if (mountsUnder(scratch).length === 0) fs.rmSync(scratch, { recursive: true, force: true });
    else log(`not removing ${scratch}: something is still mounted below it`);
  }

  summarise(result);
  process.stdout.write(`\n${table(result)}\n`);
  const mountLine = Object.entries(result.mountMedian).map(([t, s]) => `${t} ${s.toFixed(3)} s`);
  if (mountLine.length > 0) process.stdout.write(`\nmedian time to mount: ${mountLine.join(', ')}\n`);
  for (const w of result.workloads) {
    for (const m of w.mismatches) process.stdout.write(`outputs differ in ${w.name}, ${m}\n`);
    for (const [t, samples] of Object.entries(w.samples)) {
      for (const s of samples ?? []) if (s.error) process.stdout.write(`${w.name} on ${t} (rep ${s.rep + 1}) failed: ${s.error}\n`);
    }
  }
  for (const [t, why] of Object.entries(skipped)) process.stdout.write(`${t} skipped: ${why}\n`);
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(path.join(o.out, 'latest.svg'), chart(result));
  process.stdout.write(`\nwrote ${path.join(o.out, 'latest.json')} and latest.svg\n`);
  return interrupted ? 130 : 0;
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
