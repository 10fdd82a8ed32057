/** The layer-sharing results: their shape, a text table, markdown and an SVG chart. */
import { GOALS } from './markdown';
import type { SharingName } from './options';
import { median } from './stats';
import { panels, type Panel } from './svg-panels';

export interface Memory {
  rss: number;
  pss: number;
}

export interface SharingRun {
  name: SharingName;
  /** per container: mount (or copy) time */
  mountSeconds: number[];
  /** per container: reading the big file */
  readSeconds: number[];
  /** growth of the page cache while every container read the big file, bytes */
  pageCacheGrowth?: number;
  /** serving processes after the first mount, after all mounts, after the reads */
  firstMountMemory?: Memory;
  idleMemory?: Memory;
  memory?: Memory;
  daemons?: number;
  /** du of the containers' upper and work dirs (or copies), bytes */
  diskBytes?: number;
  /** change of the filesystem's used space over the whole setup, bytes (in the JSON only:
   * it also counts everything else written to the filesystem meanwhile) */
  fsUsedDelta?: number;
  error?: string;
  notes?: string[];
}

export interface SharingResult {
  date: string;
  machine: string;
  kernel: string;
  node: string;
  filesystem?: string;
  containers: number;
  bigBytes: number;
  /** whether the caches were dropped before the reads (root, writable /proc/sys) */
  cachesDropped: boolean;
  runs: SharingRun[];
  skipped: Partial<Record<SharingName, string>>;
}

const MiB = 2 ** 20;
function mib(x: number | undefined): string {
  if (x === undefined) return '–';
  const v = x / MiB;
  return Math.abs(v) < 10 ? v.toFixed(1) : v.toFixed(0);
}

/** The figures of one run, as shown in every format. */
function figures(r: SharingRun, res: SharingResult) {
  const n = r.mountSeconds.length;
  const perExtra =
    r.firstMountMemory && r.idleMemory && n > 1 ? (r.idleMemory.rss - r.firstMountMemory.rss) / (n - 1) : undefined;
  const hasDaemon = (r.daemons ?? 0) > 0;
  return {
    mount: median(r.mountSeconds),
    read: median(r.readSeconds),
    growth: r.pageCacheGrowth,
    growthX: r.pageCacheGrowth === undefined ? undefined : r.pageCacheGrowth / res.bigBytes,
    rss: hasDaemon ? r.memory?.rss : undefined,
    rssPerMount: hasDaemon && r.memory && n > 0 ? r.memory.rss / n : undefined,
    pssPerMount: hasDaemon && r.memory && n > 0 ? r.memory.pss / n : undefined,
    perExtra: hasDaemon ? perExtra : undefined,
    disk: r.diskBytes,
  };
}

const HEAD = [
  'setup', 'mount s (median)', 'read s (median)', 'page cache +MiB', '× file', 'daemon RSS MiB',
  'RSS/mount MiB', 'PSS/mount MiB', 'RSS/extra mount MiB', 'du MiB',
];

function rows(res: SharingResult): string[][] {
  return res.runs.map((r) => {
    if (r.error) return [r.name, `FAIL: ${r.error}`, ...HEAD.slice(2).map(() => '')];
    const f = figures(r, res);
    return [
      r.name, f.mount?.toFixed(3) ?? '–', f.read?.toFixed(3) ?? '–', mib(f.growth), f.growthX?.toFixed(2) ?? '–',
      mib(f.rss), mib(f.rssPerMount), mib(f.pssPerMount), mib(f.perExtra), mib(f.disk),
    ];
  });
}

function headline(res: SharingResult): string {
  return `${res.containers} containers over the same lowers, each reading the same ${res.bigBytes / MiB} MiB file`;
}

export function sharingTable(res: SharingResult): string {
  const all = [HEAD, ...rows(res)];
  const widths = HEAD.map((_h, c) => Math.max(...all.map((row) => (row[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  const out = [headline(res), '', line(HEAD), widths.map((w) => '-'.repeat(w)).join('  '), ...rows(res).map(line)];
  for (const [name, why] of Object.entries(res.skipped)) out.push(`${name}: ${why}`);
  for (const r of res.runs) for (const n of r.notes ?? []) out.push(`${r.name}: ${n}`);
  return out.join('\n');
}

export function sharingMarkdown(res: SharingResult): string {
  const out = [
    `Layer sharing — ${headline(res)}; ${res.date.slice(0, 10)}, ${res.machine}, Linux ${res.kernel}, ${res.filesystem ?? '?'}; one run:`,
    '',
    `| ${HEAD.join(' | ')} |`,
    `| --- |${HEAD.slice(1).map(() => ' ---: |').join('')}`,
    ...rows(res).map((r) => `| ${r.map((c, i) => (i === 0 ? `\`${c}\`` : c)).join(' | ')} |`),
    '',
  ];
  for (const [name, why] of Object.entries(res.skipped)) out.push(`- \`${name}\`: ${why}`);
  for (const r of res.runs) {
    if (r.name !== 'stratafs' && r.name !== 'stratafs-daemon') continue;
    const x = figures(r, res).growthX;
    if (x !== undefined) {
      out.push(`- \`${r.name}\` page-cache growth ${x.toFixed(2)}× the file (goal ≤ ${GOALS.pageCacheGrowth}×): **${x <= GOALS.pageCacheGrowth ? 'met' : 'not met'}**`);
    }
  }
  out.push('');
  return out.join('\n');
}

export function sharingSvg(res: SharingResult): string {
  const ok = res.runs.filter((r) => !r.error);
  const panel = (title: string, pick: (f: ReturnType<typeof figures>) => number | undefined, scale: number): Panel => ({
    title,
    bars: ok.map((r) => {
      const v = pick(figures(r, res));
      return { label: r.name, value: v === undefined ? undefined : v / scale };
    }),
  });
  return panels(`${headline(res)} — ${res.date}`, [
    panel('page-cache growth, MiB', (f) => f.growth, MiB),
    panel('daemon RSS per mount, MiB', (f) => f.rssPerMount, MiB),
    panel('mount (or copy) time, s', (f) => f.mount, 1),
    panel('disk of the containers (du), MiB', (f) => f.disk, MiB),
  ]);
}
