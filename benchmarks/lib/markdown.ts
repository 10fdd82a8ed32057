/**
 * The run as markdown, ready to paste into the README's performance section: the
 * medians, the ratios, the geometric means, and which of the targets were met.
 */
import type { RunResult } from './results';

/** Goals of the project for one run (README, "Performance"). */
export const GOALS = { vsFuseOverlayfs: 1.0, geomeanVsKernel: 1.5, pageCacheGrowth: 1.2, daemonRssMiB: 64 } as const;

const fmt = (x: number | undefined, digits = 3): string => (x === undefined ? '–' : x.toFixed(digits));

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** "4 × CPU, 24 GiB RAM, Linux 6.18, Node v20; 53,501 files, big file 512 MiB; median of 3" */
export function runLine(r: RunResult): string {
  const ds = r.dataset ? `; ${r.dataset.files.toLocaleString('en-US')} files in 3 lowers, big file ${r.dataset.bigMib} MiB` : '';
  return `${r.date.slice(0, 10)}, ${r.machine}, Linux ${r.kernel}, Node ${r.node}${ds}; median of ${String(r.options.reps)}, one run`;
}

export function markdownTable(r: RunResult): string {
  const out: string[] = [];
  const daemon = r.targets.includes('stratafs-daemon');
  // the two transports side by side: io_uring against /dev/fuse reads
  const uring = r.targets.includes('stratafs-uring') && r.targets.includes('stratafs');
  const vsDev = (m: Partial<Record<string, number>>): string =>
    fmt(m['stratafs-uring'] !== undefined && m.stratafs ? m['stratafs-uring'] / m.stratafs : undefined, 2);
  out.push(row(['workload', ...r.targets.map((t) => `${t} (s)`), 'stratafs / fuse-overlayfs', 'stratafs / kernel', ...(daemon ? ['stratafs-daemon / fuse-overlayfs'] : []),
    ...(uring ? ['stratafs-uring / stratafs'] : [])]));
  out.push(row(['---', ...r.targets.map(() => '---:'), '---:', '---:', ...(daemon ? ['---:'] : []), ...(uring ? ['---:'] : [])]));
  r.workloads.forEach((w, i) => {
    const failed = (t: string): boolean => (w.samples[t as keyof typeof w.samples] ?? []).some((s) => s.seconds === undefined);
    const vsFuse = r.ratios[i]?.stratafsVsFuseOverlayfs;
    const mark = !w.diagnostic && vsFuse !== undefined && vsFuse >= GOALS.vsFuseOverlayfs ? ' ✗' : '';
    const d = r.ratios[i]?.daemonVsFuseOverlayfs;
    const dMark = !w.diagnostic && d !== undefined && d >= GOALS.vsFuseOverlayfs ? ' ✗' : '';
    out.push(row([w.diagnostic ? `(\`${w.name}\`)` : `\`${w.name}\``, ...r.targets.map((t) => (failed(t) ? 'FAIL' : fmt(w.median[t]))), `${fmt(vsFuse, 2)}${mark}`,
      fmt(r.ratios[i]?.stratafsVsKernel, 2), ...(daemon ? [`${fmt(d, 2)}${dMark}`] : []), ...(uring ? [vsDev(w.median)] : [])]));
  });
  out.push(row(['geomean', ...r.targets.map((t) => fmt(r.geomean.median[t])), fmt(r.geomean.stratafsVsFuseOverlayfs, 2), fmt(r.geomean.stratafsVsKernel, 2),
    ...(daemon ? [fmt(r.geomean.daemonVsFuseOverlayfs, 2)] : []), ...(uring ? [vsDev(r.geomean.median)] : [])]));
  return out.join('\n');
}

/** One line per goal: met or not, and by how much. */
export function goalLines(r: RunResult): string[] {
  const lines: string[] = [];
  const withBoth = r.ratios.filter((x) => !x.diagnostic && x.stratafsVsFuseOverlayfs !== undefined);
  const slower = withBoth.filter((x) => (x.stratafsVsFuseOverlayfs as number) >= GOALS.vsFuseOverlayfs);
  if (withBoth.length > 0) {
    const names = slower.map((x) => `\`${x.name}\` ${fmt(x.stratafsVsFuseOverlayfs, 2)}×`).join(', ');
    lines.push(
      slower.length === 0
        ? `- stratafs faster than fuse-overlayfs on every workload (${withBoth.length} of ${withBoth.length}): **met**`
        : `- stratafs faster than fuse-overlayfs on ${withBoth.length - slower.length} of ${withBoth.length} workloads: **not met** (${names})`,
    );
  }
  const withDaemon = r.ratios.filter((x) => !x.diagnostic && x.daemonVsFuseOverlayfs !== undefined);
  const dSlower = withDaemon.filter((x) => (x.daemonVsFuseOverlayfs as number) >= GOALS.vsFuseOverlayfs);
  if (withDaemon.length > 0) {
    const names = dSlower.map((x) => `\`${x.name}\` ${fmt(x.daemonVsFuseOverlayfs, 2)}×`).join(', ');
    lines.push(
      dSlower.length === 0
        ? `- stratafs-daemon faster than fuse-overlayfs on every workload (${withDaemon.length} of ${withDaemon.length}): **met**`
        : `- stratafs-daemon faster than fuse-overlayfs on ${withDaemon.length - dSlower.length} of ${withDaemon.length} workloads: **not met** (${names})`,
    );
  }
  const g = r.geomean.stratafsVsKernel;
  if (g !== undefined) {
    lines.push(`- geometric mean stratafs / kernel overlayfs ${fmt(g, 2)} (goal ≤ ${GOALS.geomeanVsKernel}): **${g <= GOALS.geomeanVsKernel ? 'met' : 'not met'}**`);
  }
  const mem = r.daemonMemory;
  if (mem) {
    const met = mem.rssMiB <= GOALS.daemonRssMiB && mem.rssAfterDropMiB <= GOALS.daemonRssMiB;
    lines.push(`- stratafs-daemon RSS after the whole run ${mem.rssMiB} MiB, after drop_caches ${mem.rssAfterDropMiB} MiB (goal ≤ ${GOALS.daemonRssMiB}): **${met ? 'met' : 'not met'}**`);
  }
  for (const w of r.workloads) for (const m of w.mismatches) lines.push(`- outputs differ in \`${w.name}\`, ${m}`);
  return lines;
}

export function markdownReport(r: RunResult): string {
  const notes = r.workloads.some((w) => w.diagnostic) ? ['', 'Workloads in parentheses are diagnostics, not goals: they are left out of the geometric means.'] : [];
  return [`Workloads — ${runLine(r)}:`, '', markdownTable(r), ...notes, '', ...goalLines(r), ''].join('\n');
}
