/** Small horizontal bar charts side by side in one plain SVG, one panel per measure. */

export interface Panel {
  title: string;
  bars: { label: string; value?: number }[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmt(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

export function panels(title: string, ps: Panel[]): string {
  const labelW = 110;
  const barMax = 170;
  const panelW = labelW + barMax + 50;
  const rowH = 18;
  const top = 40;
  const rowsN = Math.max(1, ...ps.map((p) => p.bars.length));
  const panelH = 24 + rowsN * rowH;
  const width = 20 + ps.length * panelW;
  const height = top + panelH + 20;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="10" y="20" font-size="14">${esc(title)}</text>`);
  ps.forEach((p, pi) => {
    const x0 = 10 + pi * panelW;
    out.push(`<text x="${x0}" y="${top}" font-weight="bold">${esc(p.title)}</text>`);
    const max = Math.max(0, ...p.bars.map((b) => b.value ?? 0));
    p.bars.forEach((b, bi) => {
      const y = top + 10 + bi * rowH;
      out.push(`<text x="${x0 + labelW - 6}" y="${y + 11}" text-anchor="end">${esc(b.label)}</text>`);
      if (b.value === undefined) {
        out.push(`<text x="${x0 + labelW + 2}" y="${y + 11}" fill="#888">n/a</text>`);
        return;
      }
      const w = max > 0 ? Math.max(1, (b.value / max) * barMax) : 1;
      const colour = b.label.startsWith('stratafs') ? '#3a9e5c' : '#8a9bb8';
      out.push(`<rect x="${x0 + labelW}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="${colour}"/>`);
      out.push(`<text x="${(x0 + labelW + w + 4).toFixed(1)}" y="${y + 11}">${fmt(b.value)}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
