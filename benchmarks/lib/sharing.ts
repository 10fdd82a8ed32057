/**
 * Layer sharing: N containers over the same lowers, each reading the same big file once.
 * For each setup, one after the other: the time to make each container (mount, or copy),
 * the page-cache growth while the N containers read the file (/proc/meminfo "Cached",
 * caches dropped first), the memory of the processes serving the mounts (RSS and PSS,
 * summed), and the disk the containers' own directories use (du, and the filesystem's
 * used-space change, which also sees reflink sharing but also everyone else's writes).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildDataset, type Dataset } from './dataset';
import type { BenchOptions, SharingName } from './options';
import { canDropCaches, describeFailure, dropCachesScript, mountsUnder, ok, q, sh } from './proc';
import { isInterrupted, withScratch } from './scratch';
import { fsTypeOf, makeSetup, type Container, type Setup } from './sharing-setups';
import { sharingMarkdown, sharingSvg, sharingTable, type SharingResult, type SharingRun } from './sharing-report';
import { median } from './stats';

function meminfoBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** A "Field:  N kB" line of a /proc file, in bytes (0 when the process is gone). */
function procKb(file: string, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Summed RSS and PSS of PIDS, bytes. */
function memoryOf(pids: number[]): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    rss += procKb(`/proc/${pid}/status`, 'VmRSS');
    pss += procKb(`/proc/${pid}/smaps_rollup`, 'Pss');
  }
  return { rss, pss };
}

function fsUsedBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return (s.blocks - s.bfree) * s.bsize;
}

async function must(what: string, script: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<number> {
  const r = await sh(script, env, timeoutMs);
  if (!ok(r)) throw new Error(describeFailure(what, r));
  return r.seconds;
}

/** N containers of one setup, measured, then undone. */
async function measure(setup: Setup, ds: Dataset, o: BenchOptions, log: (s: string) => void): Promise<SharingRun> {
  const res: SharingRun = { name: setup.name, mountSeconds: [], readSeconds: [] };
  const base = path.join(ds.root, 'sharing', setup.name);
  const made: Container[] = [];
  const timeoutMs = o.timeoutSec * 1000;
  try {
    const used0 = fsUsedBytes(ds.root);
    for (let i = 0; i < o.containers && !isInterrupted(); i++) {
      const c = path.join(base, `c${i}`);
      const dirs = { base: c, upper: path.join(c, 'upper'), work: path.join(c, 'work'), mnt: path.join(c, 'mnt') };
      for (const d of [dirs.upper, dirs.work, dirs.mnt]) fs.mkdirSync(d, { recursive: true });
      const t0 = process.hrtime.bigint();
      made.push(await setup.add(ds, dirs));
      res.mountSeconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
      if (i === 0) res.firstMountMemory = memoryOf(setup.pids());
    }
    res.idleMemory = memoryOf(setup.pids());
    await must('drop caches', dropCachesScript(), {}, timeoutMs);
    const cached0 = meminfoBytes('Cached');
    for (const c of made) {
      if (isInterrupted()) break;
      res.readSeconds.push(await must('read the big file', 'cat "$ROOT/big.bin" > /dev/null', { ROOT: c.root }, timeoutMs));
    }
    res.pageCacheGrowth = meminfoBytes('Cached') - cached0;
    res.memory = memoryOf(setup.pids());
    res.daemons = setup.pids().length;
    const dirs = made.flatMap((c) => [c.dirs.upper, c.dirs.work]);
    const du = await sh(`du -scx --block-size=1 ${dirs.map(q).join(' ')} | tail -n 1 | cut -f 1`, {}, timeoutMs);
    if (ok(du)) res.diskBytes = Number(du.stdout.trim());
    res.fsUsedDelta = fsUsedBytes(ds.root) - used0;
  } catch (e) {
    res.error = e instanceof Error ? e.message : String(e);
  } finally {
    const notes = await setup.teardown();
    if (notes.length > 0) res.notes = notes;
    if (mountsUnder(base).length === 0) fs.rmSync(base, { recursive: true, force: true });
    else (res.notes ??= []).push(`left ${base}: still mounted`);
  }
  const m = median(res.mountSeconds);
  log(`${setup.name}: ${res.error ? `ERROR ${res.error}` : `${made.length} containers, mount median ${m?.toFixed(3)} s, page cache +${((res.pageCacheGrowth ?? 0) / 2 ** 20).toFixed(0)} MiB`}`);
  return res;
}

export interface SharingOutput {
  json: SharingResult;
  text: string;
  markdown: string;
  svg: string;
}

export async function runSharing(o: BenchOptions, repoRoot: string, log: (s: string) => void): Promise<SharingOutput> {
  const result: SharingResult = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
    kernel: os.release(),
    node: process.version,
    containers: o.containers,
    bigBytes: o.bigMib * 2 ** 20,
    cachesDropped: canDropCaches(),
    runs: [],
    skipped: {},
  };
  if (!result.cachesDropped) log('note: caches cannot be dropped here: page-cache growth counts only what was not cached yet');
  await withScratch(o, log, async (scratch) => {
    const ds = await buildDataset(scratch, o, log, false);
    result.filesystem = fsTypeOf(scratch);
    for (const name of o.sharingTargets as SharingName[]) {
      if (isInterrupted()) break;
      const setup = makeSetup(name, repoRoot);
      const why = await setup.unavailable(scratch);
      if (why) {
        result.skipped[name] = why;
        log(`skipping ${name}: ${why}`);
        continue;
      }
      result.runs.push(await measure(setup, ds, o, log));
    }
  });
  return { json: result, text: sharingTable(result), markdown: sharingMarkdown(result), svg: sharingSvg(result) };
}
