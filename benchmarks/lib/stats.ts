/** Small statistics over repetition times. */

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function geomean(xs: number[]): number | undefined {
  const pos = xs.filter((x) => x > 0);
  if (pos.length === 0) return undefined;
  return Math.exp(pos.reduce((a, x) => a + Math.log(x), 0) / pos.length);
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b <= 0 ? undefined : a / b;
}
