/**
 * What a run produces: raw times per workload and target, medians, ratios, and the
 * text table printed at the end.
 */
import type { TargetName } from './options';
import { geomean, median, ratio } from './stats';

export interface Sample {
  rep: number;
  /** undefined when the run failed */
  seconds?: number;
  mountSeconds?: number;
  error?: string;
  notes?: string[];
  /** what the command and check printed (compared across targets) */
  output?: string;
}

export interface WorkloadResult {
  name: string;
  description: string;
  /** shown, but not one of the project's goals: left out of the geometric means */
  diagnostic?: boolean;
  samples: Partial<Record<TargetName, Sample[]>>;
  median: Partial<Record<TargetName, number>>;
  /** output differences between targets, one line each */
  mismatches: string[];
}

export interface RunResult {
  date: string;
  host: string;
  kernel: string;
  node: string;
  /** CPUs and memory, for the report */
  machine: string;
  options: Record<string, unknown>;
  dataset?: { files: number; bigMib: number; fioMib: number };
  targets: TargetName[];
  /** targets and workloads that could not run here, with the reason */
  skipped: Record<string, string>;
  workloads: WorkloadResult[];
  ratios: { name: string; diagnostic?: boolean; stratafsVsFuseOverlayfs?: number; stratafsVsKernel?: number; daemonVsFuseOverlayfs?: number }[];
  geomean: { median: Partial<Record<TargetName, number>>; stratafsVsFuseOverlayfs?: number; stratafsVsKernel?: number; daemonVsFuseOverlayfs?: number };
  mountMedian: Partial<Record<TargetName, number>>;
  /** RSS (MiB) of the shared daemon after the run, and after drop_caches */
  daemonMemory?: { rssMiB: number; rssAfterDropMiB: number };
}

export function summarise(r: RunResult): void {
  for (const w of r.workloads) {
    for (const t of r.targets) {
      const ok = (w.samples[t] ?? []).filter((s) => s.seconds !== undefined).map((s) => s.seconds as number);
      // a target with any failed repetition gets no median: a partial figure misleads
      const all = w.samples[t] ?? [];
      if (ok.length > 0 && ok.length === all.length) w.median[t] = median(ok);
    }
  }
  r.ratios = r.workloads.map((w) => ({
    name: w.name,
    diagnostic: w.diagnostic,
    stratafsVsFuseOverlayfs: ratio(w.median.stratafs, w.median['fuse-overlayfs']),
    stratafsVsKernel: ratio(w.median.stratafs, w.median.kernel),
    daemonVsFuseOverlayfs: ratio(w.median['stratafs-daemon'], w.median['fuse-overlayfs']),
  }));
  // the geometric mean of each target over the workloads every target finished
  const complete = r.workloads.filter((w) => !w.diagnostic && r.targets.every((t) => w.median[t] !== undefined));
  for (const t of r.targets) {
    const g = geomean(complete.map((w) => w.median[t] as number));
    if (g !== undefined) r.geomean.median[t] = g;
  }
  const goals = r.ratios.filter((x) => !x.diagnostic);
  r.geomean.stratafsVsFuseOverlayfs = geomean(goals.map((x) => x.stratafsVsFuseOverlayfs).filter((x): x is number => x !== undefined));
  r.geomean.stratafsVsKernel = geomean(goals.map((x) => x.stratafsVsKernel).filter((x): x is number => x !== undefined));
  r.geomean.daemonVsFuseOverlayfs = geomean(goals.map((x) => x.daemonVsFuseOverlayfs).filter((x): x is number => x !== undefined));
  for (const t of r.targets) {
    const ms = r.workloads.flatMap((w) => (w.samples[t] ?? []).map((s) => s.mountSeconds)).filter((x): x is number => x !== undefined);
    const m = median(ms);
    if (m !== undefined && t !== 'native') r.mountMedian[t] = m;
  }
}

const fmt = (x: number | undefined, digits = 3): string => (x === undefined ? '-' : x.toFixed(digits));

function failed(w: WorkloadResult, t: TargetName): boolean {
  return (w.samples[t] ?? []).some((s) => s.seconds === undefined);
}

export function table(r: RunResult): string {
  const head = ['workload', ...r.targets, 'strata/fuse-ovl', 'strata/kernel'];
  const rows: string[][] = r.workloads.map((w, i) => [
    w.diagnostic ? `(${w.name})` : w.name,
    ...r.targets.map((t) => (failed(w, t) ? 'FAIL' : fmt(w.median[t]))),
    fmt(r.ratios[i].stratafsVsFuseOverlayfs, 2),
    fmt(r.ratios[i].stratafsVsKernel, 2),
  ]);
  rows.push([
    'geomean',
    ...r.targets.map((t) => fmt(r.geomean.median[t])),
    fmt(r.geomean.stratafsVsFuseOverlayfs, 2),
    fmt(r.geomean.stratafsVsKernel, 2),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]): string => cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  return [line(head), widths.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}
