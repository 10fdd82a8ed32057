/**
 * A grouped bar chart in plain SVG: one group per workload, one bar per target, heights
 * on a log scale normalised to a reference target (kernel overlayfs when it ran) = 1.
 */
import type { TargetName } from './options';
import type { RunResult } from './results';

const COLOURS: Record<TargetName, string> = {
  native: '#9e9e9e',
  kernel: '#4a7bd0',
  'fuse-overlayfs': '#e0913a',
  stratafs: '#3a9e5c',
  'stratafs-daemon': '#8a5cc0',
  'stratafs-uring': '#2f7f7a',
};

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function label(v: number): string {
  if (v >= 10) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

export function suiteSvg(r: RunResult): string {
  const ref: TargetName | undefined = r.targets.includes('kernel') ? 'kernel' : r.targets[0];
  const targets = r.targets;
  const groups = r.workloads.map((w) => ({
    name: w.name,
    bars: targets.map((t) => {
      const v = w.median[t];
      const base = ref === undefined ? undefined : w.median[ref];
      return { target: t, value: v !== undefined && base ? v / base : undefined, failed: (w.samples[t] ?? []).some((s) => s.seconds === undefined) };
    }),
  }));
  const gref = ref === undefined ? undefined : r.geomean.median[ref];
  if (gref) {
    groups.push({
      name: 'geomean',
      bars: targets.map((t) => {
        const v = r.geomean.median[t];
        return { target: t, value: v === undefined ? undefined : v / gref, failed: false };
      }),
    });
  }
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v): v is number => v !== undefined && v > 0);
  const lo = Math.floor(Math.log10(Math.min(0.5, ...values)));
  const hi = Math.ceil(Math.log10(Math.max(2, ...values)));
  const barW = 16;
  const gap = 22;
  const groupW = targets.length * barW + gap;
  const left = 60;
  const top = 50;
  const plotH = 320;
  const bottom = 80;
  const width = left + groups.length * groupW + 20;
  const height = top + plotH + bottom;
  const y = (v: number): number => top + plotH - ((Math.log10(v) - lo) / (hi - lo)) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${left}" y="18" font-size="14">${esc(`seconds relative to ${ref ?? '?'} (= 1), log scale, median of ${String(r.options.reps)} — ${r.date}`)}</text>`);
  // legend
  targets.forEach((t, i) => {
    const x = left + i * 130;
    out.push(`<rect x="${x}" y="28" width="12" height="12" fill="${COLOURS[t]}"/>`);
    out.push(`<text x="${x + 16}" y="38">${esc(t)}</text>`);
  });
  // grid: every power of ten, and 2 and 5 within each decade
  for (let d = lo; d <= hi; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (Math.log10(v) > hi) break;
      const yy = y(v).toFixed(1);
      out.push(`<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="${m === 1 ? '#bbb' : '#eee'}"/>`);
      if (m === 1 || hi - lo <= 2) out.push(`<text x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${v < 1 ? v.toPrecision(1) : String(v)}×</text>`);
    }
  }
  const base = y(1);
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW + gap / 2;
    g.bars.forEach((b, bi) => {
      const x = gx + bi * barW;
      if (b.value === undefined || b.value <= 0) {
        if (b.failed) out.push(`<text x="${x + barW / 2}" y="${base - 4}" text-anchor="middle" fill="#c00" font-weight="bold">✕</text>`);
        return;
      }
      const yv = y(b.value);
      const y0 = Math.min(yv, base);
      const h = Math.max(1, Math.abs(yv - base));
      out.push(`<rect x="${x}" y="${y0.toFixed(1)}" width="${barW - 2}" height="${h.toFixed(1)}" fill="${COLOURS[b.target]}"><title>${esc(`${g.name} ${b.target}: ${b.value.toFixed(2)}×`)}</title></rect>`);
      const ty = b.value >= 1 ? yv - 3 : yv + 9;
      out.push(`<text x="${x + barW / 2 - 1}" y="${ty.toFixed(1)}" text-anchor="middle" font-size="8">${label(b.value)}</text>`);
    });
    const lx = gx + (targets.length * barW) / 2;
    out.push(`<text x="${lx}" y="${top + plotH + 14}" text-anchor="end" transform="rotate(-35 ${lx} ${top + plotH + 14})">${esc(g.name)}</text>`);
  });
  out.push(`<line x1="${left}" x2="${width - 20}" y1="${base.toFixed(1)}" y2="${base.toFixed(1)}" stroke="#333"/>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
