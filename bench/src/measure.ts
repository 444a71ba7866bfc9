/**
 * Per-operation timing: each call timed with process.hrtime.bigint after an untimed warm-up, up to
 * `maxOps` calls or `maxMs` of wall time, whichever comes first (a 1 MiB case gets fewer samples
 * than a 64 B case, not less time).
 */
import { type TimingSummary, summarize } from "./stats";

export interface MeasureOptions {
  maxOps: number;
  maxMs: number;
  /** Untimed calls first (JIT, caches); default min(maxOps, 200). */
  warmup?: number;
  /** At least this many timed calls even past maxMs; default 20. */
  minOps?: number;
}

/** Times `fn` (sync or async: a returned promise is awaited) once per call. */
export async function measure(fn: () => unknown, options: MeasureOptions): Promise<TimingSummary> {
  const { maxOps, maxMs } = options;
  const warmup = options.warmup ?? Math.min(maxOps, 200);
  const minOps = Math.min(maxOps, options.minOps ?? 20);
  for (let i = 0; i < warmup; i++) await fn();
  const samples = new Float64Array(maxOps);
  const deadline = process.hrtime.bigint() + BigInt(Math.round(maxMs * 1e6));
  let n = 0;
  while (n < maxOps) {
    const t0 = process.hrtime.bigint();
    const out = fn();
    if (out instanceof Promise) await out;
    const t1 = process.hrtime.bigint();
    samples[n++] = Number(t1 - t0);
    if (t1 > deadline && n >= minOps) break;
  }
  return summarize(samples.subarray(0, n));
}
