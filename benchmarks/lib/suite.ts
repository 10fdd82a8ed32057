/**
 * The workload benchmark: for each repetition, every workload on every target, the
 * target order rotated, each on a fresh upper/work dir and a fresh mount. All access to
 * a mount happens in child processes; this process only spawns them and reads /proc.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildDataset, type Dataset } from './dataset';
import type { BenchOptions, TargetName } from './options';
import { canDropCaches, describeFailure, dropCachesScript, mountsUnder, ok, sh } from './proc';
import type { RunResult, Sample, WorkloadResult } from './results';
import { isInterrupted, withScratch } from './scratch';
import { rootfsLayers } from './rootfs';
import { makeTargets, type RunDirs, type Target } from './targets';
import { WORKLOADS, type OwnMounts, type Workload, type WorkloadContext } from './workloads';

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
async function runOne(t: Target, w: Workload, rep: number, ds: Dataset, o: BenchOptions, rootfs?: string[]): Promise<Sample> {
  const sample: Sample = { rep };
  const dirs = runDirs(ds.root, t.name, w);
  const ctx: WorkloadContext = { ds, target: t.name, own: ownMounts(t, dirs, rootfs) };
  const env = { MNT: t.root(ds, dirs) };
  let mounted = false;
  try {
    if (!w.ownMounts) {
      const m0 = process.hrtime.bigint();
      await t.mount(ds, dirs);
      mounted = true;
      sample.mountSeconds = Number(process.hrtime.bigint() - m0) / 1e9;
    }
    const prepare = w.prepare?.(ctx);
    if (prepare) await step('prepare', prepare, env, o);
    // dirty data of earlier steps must not be written back during the timed command
    await step(w.cold ? 'drop caches' : 'sync', w.cold ? dropCachesScript() : 'sync', {}, o);
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

/** what a workload that mounts by itself needs of the target; undefined for native */
function ownMounts(t: Target, dirs: RunDirs, rootfs?: string[]): OwnMounts | undefined {
  const { mountShell, unmountShell } = t;
  if (!mountShell || !unmountShell) return undefined;
  const dir = path.join(dirs.base, 'own');
  fs.mkdirSync(dir, { recursive: true });
  return { dir, rootfs, mount: mountShell, unmount: unmountShell };
}

function rotate<T>(xs: T[], by: number): T[] {
  const k = xs.length === 0 ? 0 : by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

async function onPath(cmd: string): Promise<boolean> {
  return ok(await sh(`command -v ${cmd}`));
}

/** The workloads asked for, minus those whose program is missing (noted in SKIPPED). */
async function chooseWorkloads(o: BenchOptions, skipped: Record<string, string>): Promise<Workload[]> {
  const chosen = o.only ? WORKLOADS.filter((w) => o.only?.includes(w.name)) : WORKLOADS;
  const out: Workload[] = [];
  for (const w of chosen) {
    if (w.requires && !(await onPath(w.requires))) skipped[w.name] = `${w.requires} is not installed`;
    else if (w.rootfs && !fs.existsSync(o.rootfs)) {
      skipped[w.name] = `no rootfs tarball at ${o.rootfs} (the container tests make it; or --rootfs=TAR)`;
    } else out.push(w);
  }
  return out;
}

/** Runs the workloads; the result is complete but not yet summarised. */
export async function runSuite(o: BenchOptions, repoRoot: string, log: (s: string) => void): Promise<RunResult> {
  const all = makeTargets(repoRoot);
  const targets: Target[] = [];
  const skipped: Record<string, string> = {};
  for (const name of o.targets) {
    const why = await all[name].unavailable();
    if (why) {
      skipped[name] = why;
      log(`skipping ${name}: ${why}`);
    } else targets.push(all[name]);
  }
  const workloads = await chooseWorkloads(o, skipped);
  for (const w of WORKLOADS) if (skipped[w.name]) log(`skipping ${w.name}: ${skipped[w.name]}`);
  if (!canDropCaches()) log('note: caches cannot be dropped here (not root, or /proc/sys read-only): "cold" workloads are not cold');

  const result: RunResult = {
    date: new Date().toISOString(),
    host: os.hostname(),
    kernel: os.release(),
    node: process.version,
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
    options: { ...o },
    targets: targets.map((t) => t.name),
    skipped,
    workloads: workloads.map((w): WorkloadResult => ({ name: w.name, description: w.description, diagnostic: w.diagnostic, samples: {}, median: {}, mismatches: [] })),
    ratios: [],
    geomean: { median: {} },
    mountMedian: {},
  };
  await withScratch(o, log, async (scratch) => {
    try {
      await runAll(scratch);
      for (const t of targets) {
        const m = await t.memory?.();
        if (m) {
          result.daemonMemory = m;
          log(`${t.name}: RSS ${m.rssMiB} MiB after the run, ${m.rssAfterDropMiB} MiB after drop_caches`);
        }
      }
    } finally {
      for (const t of targets) {
        for (const note of (await t.teardown?.()) ?? []) log(`${t.name}: ${note}`);
      }
    }
  });
  return result;

  async function runAll(scratch: string): Promise<void> {
    const ds = await buildDataset(scratch, o, log);
    for (const t of targets) await t.setup?.(scratch);
    result.dataset = { files: ds.files, bigMib: o.bigMib, fioMib: ds.fioSize / 2 ** 20 };
    const rootfs = workloads.some((w) => w.rootfs) ? await rootfsLayers(o.cache, o.rootfs, log) : undefined;
    for (let rep = 0; rep < o.reps && !isInterrupted(); rep++) {
      for (const [wi, w] of workloads.entries()) {
        if (isInterrupted()) break;
        const wr = result.workloads[wi];
        const outputs = new Map<string, TargetName[]>();
        for (const t of rotate(targets, rep + wi)) {
          if (isInterrupted()) break;
          if (w.ownMounts && !t.mountShell) continue;
          const s = await runOne(t, w, rep, ds, o, rootfs);
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
  }
}
