/**
 * The report's chart as hand-written SVG text (no dependency): grouped bar panels, log or linear,
 * laid out in a grid. Deterministic output for given figures (tested as exact strings).
 */
import { fmtInt, fmtPct, fmtSize } from "./format";
import type { BenchResults, Impl } from "./types";

export interface Series {
  name: string;
  color: string;
}

export interface BarPanel {
  title: string;
  groups: string[];
  series: Series[];
  /** values[group][series]; NaN or undefined = no bar. */
  values: (number | undefined)[][];
  scale: "log" | "linear";
  /** Linear scale: the axis range. Log scale: derived from the data (whole decades). */
  min?: number;
  max?: number;
  format: (v: number) => string;
  /** A dashed horizontal line, e.g. a target. */
  ref?: { value: number; label: string };
}

export const COLORS: Record<Impl, string> = { raw: "#9aa0a6", kms: "#1a73e8", esdk: "#e8710a" };
export const LABELS: Record<Impl, string> = { raw: "bare node:crypto AES-256-GCM", kms: "@kms (this toolkit)", esdk: "AWS Encryption SDK (caching CMM)" };
/** Shorter names for the chart's legends. */
export const SHORT_LABELS: Record<Impl, string> = { raw: "bare AES-256-GCM", kms: "@kms", esdk: "AWS Encryption SDK" };

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const r1 = (n: number) => (Math.round(n * 10) / 10).toString();

/** One panel at (x, y) of size w × h. */
export function renderPanel(panel: BarPanel, x: number, y: number, w: number, h: number): string {
  const out: string[] = [];
  const padL = 56;
  const padR = 12;
  const padT = 44;
  const padB = 34;
  const plotX = x + padL;
  const plotY = y + padT;
  const plotW = w - padL - padR;
  const plotH = h - padT - padB;
  const finite = panel.values.flat().filter((v): v is number => v !== undefined && Number.isFinite(v) && (panel.scale === "linear" || v > 0));
  let lo: number;
  let hi: number;
  if (panel.scale === "log") {
    // A decade below the smallest value when it is a power of ten, so that its bar shows.
    lo = Math.pow(10, Math.floor(Math.log10(Math.min(...finite, panel.ref?.value ?? Infinity) * 0.999)));
    hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...finite, panel.ref?.value ?? 0) * 1.0001)));
    if (!(hi > lo)) hi = lo * 10;
  } else {
    lo = panel.min ?? 0;
    hi = panel.max ?? Math.max(...finite, 1);
  }
  const yOf = (v: number) => {
    const f = panel.scale === "log" ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
    return plotY + plotH - Math.max(0, Math.min(1, f)) * plotH;
  };
  out.push(`<g class="panel">`);
  out.push(`<text x="${r1(x + w / 2)}" y="${r1(y + 16)}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(panel.title)}</text>`);
  // legend
  let lx = plotX;
  for (const s of panel.series) {
    out.push(`<rect x="${r1(lx)}" y="${r1(y + 25)}" width="10" height="10" fill="${s.color}"/>`);
    out.push(`<text x="${r1(lx + 14)}" y="${r1(y + 34)}" font-size="11">${escapeXml(s.name)}</text>`);
    lx += 24 + s.name.length * 6.5;
  }
  if (panel.ref) {
    out.push(`<line x1="${r1(lx)}" y1="${r1(y + 30)}" x2="${r1(lx + 16)}" y2="${r1(y + 30)}" stroke="#d93025" stroke-dasharray="5,3"/>`);
    out.push(`<text x="${r1(lx + 20)}" y="${r1(y + 34)}" font-size="11" fill="#d93025">${escapeXml(panel.ref.label)}</text>`);
  }
  // grid and axis labels
  const ticks: number[] = [];
  if (panel.scale === "log") for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  else for (let i = 0; i <= 4; i++) ticks.push(lo + ((hi - lo) * i) / 4);
  for (const t of ticks) {
    const ty = yOf(t);
    out.push(`<line x1="${r1(plotX)}" y1="${r1(ty)}" x2="${r1(plotX + plotW)}" y2="${r1(ty)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${r1(plotX - 4)}" y="${r1(ty + 4)}" text-anchor="end" font-size="10">${escapeXml(panel.format(t))}</text>`);
  }
  out.push(`<line x1="${r1(plotX)}" y1="${r1(plotY + plotH)}" x2="${r1(plotX + plotW)}" y2="${r1(plotY + plotH)}" stroke="#333"/>`);
  // bars
  const groupW = plotW / panel.groups.length;
  const barW = (groupW * 0.8) / panel.series.length;
  panel.groups.forEach((group, g) => {
    const gx = plotX + g * groupW + groupW * 0.1;
    panel.series.forEach((s, i) => {
      const v = panel.values[g]?.[i];
      if (v === undefined || !Number.isFinite(v) || (panel.scale === "log" && v <= 0)) return;
      const top = yOf(v);
      const bx = gx + i * barW;
      out.push(`<rect x="${r1(bx)}" y="${r1(top)}" width="${r1(barW - 2)}" height="${r1(plotY + plotH - top)}" fill="${s.color}"><title>${escapeXml(`${s.name}, ${group}: ${panel.format(v)}`)}</title></rect>`);
      out.push(`<text x="${r1(bx + (barW - 2) / 2)}" y="${r1(top - 3)}" text-anchor="middle" font-size="9">${escapeXml(panel.format(v))}</text>`);
    });
    out.push(`<text x="${r1(plotX + g * groupW + groupW / 2)}" y="${r1(plotY + plotH + 16)}" text-anchor="middle" font-size="11">${escapeXml(group)}</text>`);
  });
  if (panel.ref) {
    const ry = yOf(panel.ref.value);
    out.push(`<line x1="${r1(plotX)}" y1="${r1(ry)}" x2="${r1(plotX + plotW)}" y2="${r1(ry)}" stroke="#d93025" stroke-dasharray="5,3"/>`);
  }
  out.push(`</g>`);
  return out.join("\n");
}

/** Panels in a grid of `columns`, each w × h; a note line under them. */
export function renderChart(panels: BarPanel[], options: { columns?: number; panelW?: number; panelH?: number; title: string; note?: string }): string {
  const columns = options.columns ?? 2;
  const pw = options.panelW ?? 480;
  const ph = options.panelH ?? 300;
  const rows = Math.ceil(panels.length / columns);
  const width = columns * pw;
  const height = 36 + rows * ph + (options.note ? 20 : 0);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>`,
  ];
  panels.forEach((panel, i) => parts.push(renderPanel(panel, (i % columns) * pw, 36 + Math.floor(i / columns) * ph, pw, ph)));
  if (options.note) parts.push(`<text x="8" y="${height - 6}" font-size="10" fill="#5f6368">${escapeXml(options.note)}</text>`);
  parts.push(`</svg>`);
  return `${parts.join("\n")}\n`;
}

/** Compact: 3 significant digits, no trailing zeros, k and M: 2490 → "2.49k", 1000 → "1k", 0.1 → "0.1". */
export function compact(v: number): string {
  const [scaled, suffix] = v >= 1e6 ? [v / 1e6, "M"] : v >= 1e3 ? [v / 1e3, "k"] : [v, ""];
  return `${Number(scaled.toPrecision(3)).toString()}${suffix}`;
}

/** The report's chart from the results: what each scenario shows best. */
export function benchmarkChart(results: BenchResults): string {
  const panels: BarPanel[] = [];
  const impls: Impl[] = ["raw", "kms", "esdk"];
  if (results.warm) {
    const sizes = [...new Set(results.warm.cells.map((c) => c.size))].sort((a, b) => a - b);
    for (const op of ["encrypt", "decrypt"] as const) {
      panels.push({
        title: `Warm ${op}, operations/s (log scale)`,
        groups: sizes.map(fmtSize),
        series: impls.map((impl) => ({ name: SHORT_LABELS[impl], color: COLORS[impl] })),
        values: sizes.map((size) => impls.map((impl) => results.warm!.cells.find((c) => c.size === size && c.op === op && c.impl === impl)?.opsPerSec)),
        scale: "log",
        format: compact,
      });
    }
  }
  if (results.stampede) {
    const encryptRows = results.stampede.rows.filter((r) => r.op === "encrypt");
    const ns = [...new Set(encryptRows.map((r) => r.concurrency))].sort((a, b) => a - b);
    panels.push({
      title: `Cold encrypt stampede: KMS calls (log scale)`,
      groups: ns.map((n) => `${fmtInt(n)} concurrent`),
      series: (["kms", "esdk"] as const).map((impl) => ({ name: `${SHORT_LABELS[impl]}${impl === "esdk" ? " (caching CMM)" : ""}`, color: COLORS[impl] })),
      values: ns.map((n) => (["kms", "esdk"] as const).map((impl) => encryptRows.find((r) => r.concurrency === n && r.impl === impl)?.kmsCalls)),
      scale: "log",
      format: compact,
    });
  }
  if (results.cache) {
    const { cache } = results;
    const rate = primaryRate(results);
    const rows = cache.rows.filter((r) => r.rate === rate).sort((a, b) => a.capacity - b.capacity);
    const frozen = (capacity: number) => cache.rows.find((r) => r.rate === 0 && r.capacity === capacity)?.steadyHitRate;
    panels.push({
      title: `Encrypt-cache hit rate by capacity (${fmtInt(cache.tenants)} tenants, Zipf)`,
      groups: rows.map((r) => `${fmtInt(r.capacity)}${r.capacity === cache.defaultCapacity ? " (default)" : ""}`),
      series: [
        { name: `steady, ${fmtInt(rate)} req/s`, color: COLORS.kms },
        { name: "capacity alone", color: "#81c995" },
      ],
      values: rows.map((r) => [r.steadyHitRate, frozen(r.capacity)]),
      scale: "linear",
      min: 0.6,
      max: 1,
      format: (v) => fmtPct(v, Math.abs(v * 10 - Math.round(v * 10)) < 1e-9 ? 0 : 1),
      ref: { value: 0.99, label: "target 99 %" },
    });
  }
  return renderChart(panels, {
    title: "@kms benchmarks (docs/BENCHMARKS.md)",
    note: `${results.machine.cores} × ${results.machine.cpuModel}, Node.js ${results.machine.node}; medians of several runs. Generated by pnpm bench.`,
  });
}

/** The request rate scenario 3's capacity sweep ran at: the one with the most rows. */
export function primaryRate(results: BenchResults): number {
  const counts = new Map<number, number>();
  for (const r of results.cache?.rows ?? []) counts.set(r.rate, (counts.get(r.rate) ?? 0) + 1);
  let best = 0;
  let bestCount = -1;
  for (const [rate, count] of counts) {
    if (count > bestCount) {
      best = rate;
      bestCount = count;
    }
  }
  return best;
}
