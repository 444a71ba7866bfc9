// The benchmark harness every package's `pnpm bench` uses: per-operation timing after a warm-up,
// cases interleaved for several rounds, best round kept, printed as a table with ratios.
/**
 * Times `fn` once per op (after `warmup` untimed calls). `fn` may return a promise, which is awaited
 * (the first call decides). Returns { name, ops, opsPerSec, meanUs, p50Us, p99Us, maxUs }.
 */
export async function measure(name, fn, ops, { warmup = Math.max(200, Math.min(ops, 2000)) } = {}) {
  const first = fn();
  const isAsync = first !== null && typeof first === "object" && typeof first.then === "function";
  if (isAsync) await first;
  for (let i = 1; i < warmup; i++) {
    if (isAsync) await fn();
    else fn();
  }
  const samples = new Float64Array(ops);
  const start = process.hrtime.bigint();
  if (isAsync) {
    for (let i = 0; i < ops; i++) {
      const t0 = process.hrtime.bigint();
      await fn();
      samples[i] = Number(process.hrtime.bigint() - t0);
    }
  } else {
    for (let i = 0; i < ops; i++) {
      const t0 = process.hrtime.bigint();
      fn();
      samples[i] = Number(process.hrtime.bigint() - t0);
    }
  }
  const wallNs = Number(process.hrtime.bigint() - start);
  const sorted = samples.slice().sort();
  let sum = 0;
  for (let i = 0; i < ops; i++) sum += samples[i];
  const pick = (q) => sorted[Math.min(ops - 1, Math.floor(q * ops))] / 1000;
  return {
    name,
    ops,
    opsPerSec: ops / (wallNs / 1e9),
    meanUs: sum / ops / 1000,
    p50Us: pick(0.5),
    p99Us: pick(0.99),
    maxUs: sorted[ops - 1] / 1000,
  };
}

/**
 * Runs the cases of one section interleaved for `rounds` rounds and keeps, per case, the round with
 * the lowest mean. A case is { name, fn, ops, baseline? }. Returns the results (with `baseline`).
 */
export async function runSection(title, cases, { rounds = Number(process.env.BENCH_ROUNDS ?? 7) } = {}) {
  const best = new Map();
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) {
      const result = await measure(c.name, c.fn, c.ops);
      const prev = best.get(c.name);
      if (!prev || result.meanUs < prev.meanUs) best.set(c.name, { ...result, baseline: c.baseline });
    }
  }
  const results = cases.map((c) => best.get(c.name));
  printTable(title, results);
  return results;
}

/** Prints results as an aligned table; a result with `baseline` (a name in the same list) gets ratios. */
export function printTable(title, results) {
  const byName = new Map(results.map((r) => [r.name, r]));
  const fmt = (n, digits = 2) => n.toFixed(digits);
  const rows = results.map((r) => {
    const base = r.baseline ? byName.get(r.baseline) : undefined;
    return [
      r.name,
      String(r.ops),
      Math.round(r.opsPerSec).toLocaleString("en-US"),
      fmt(r.meanUs),
      fmt(r.p50Us),
      fmt(r.p99Us),
      base ? `${fmt(r.meanUs / base.meanUs)}×` : "",
      base ? `${fmt(r.p50Us / base.p50Us)}×` : "",
    ];
  });
  const header = ["case", "ops", "ops/s", "mean µs", "p50 µs", "p99 µs", "× mean", "× p50"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
}

