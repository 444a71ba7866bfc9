/** Number formatting shared by the report and the chart (deterministic: no locale surprises). */

/** 1234567.8 → "1,234,568". */
export function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const s = Math.round(n).toString();
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** About three significant digits, at most 2 decimals: 0.6912 → "0.69", 51.71 → "51.7", 1234 → "1,234". */
export function fmtNum(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1000) return fmtInt(n);
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** A ratio: 1.318 → "1.32×", 48.2 → "48.2×". */
export function fmtRatio(n: number): string {
  return `${fmtNum(n)}×`;
}

/** A ratio range [1.2, 1.45] → "1.20–1.45". */
export function fmtRange([lo, hi]: readonly [number, number]): string {
  return `${fmtNum(lo)}–${fmtNum(hi)}`;
}

/** A percentage of 1: 0.99843 → "99.84 %". */
export function fmtPct(fraction: number, decimals = 2): string {
  if (!Number.isFinite(fraction)) return "–";
  return `${(fraction * 100).toFixed(decimals)} %`;
}

export function fmtUsd(n: number): string {
  if (!Number.isFinite(n)) return "–";
  return n >= 100 ? `$${fmtInt(n)}` : `$${n.toFixed(2)}`;
}

/** Bytes as the issue names the sizes: 64 → "64 B", 1024 → "1 KiB", 1048576 → "1 MiB". */
export function fmtSize(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** Milliseconds, or seconds past 10 s: 21.43 → "21.4 ms", 12345 → "12.3 s". */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms >= 10_000 ? `${fmtNum(ms / 1000)} s` : `${fmtNum(ms)} ms`;
}
