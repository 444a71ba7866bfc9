/**
 * The harness's arithmetic: percentiles of timing samples, medians of runs, a seeded random number
 * generator and a Zipf sampler. Pure functions, tested in test/stats.test.ts.
 */

/**
 * The q-quantile of ascending `sorted` values by the nearest-rank method: the smallest value with at
 * least q of the values at or below it. q in [0, 1]; an empty list has none (NaN).
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (q <= 0) return sorted[0]!;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

/** The median: the middle value, or the mean of the two middle values of an even count. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Summary of per-operation timings in nanoseconds: throughput from their sum, p50 and p99 in µs. */
export interface TimingSummary {
  ops: number;
  /** Operations per second of the timed work (ops ÷ sum of the samples). */
  opsPerSec: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

export function summarize(samplesNs: Float64Array): TimingSummary {
  const ops = samplesNs.length;
  let sum = 0;
  for (let i = 0; i < ops; i++) sum += samplesNs[i]!;
  const sorted = samplesNs.slice().sort();
  return {
    ops,
    opsPerSec: ops === 0 ? 0 : (ops * 1e9) / sum,
    meanUs: ops === 0 ? Number.NaN : sum / ops / 1000,
    p50Us: percentile(sorted, 0.5) / 1000,
    p99Us: percentile(sorted, 0.99) / 1000,
  };
}

/** mulberry32: a small, fast, seeded PRNG with uniform output in [0, 1). Not for cryptography. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A Zipf(n, s) sampler over ranks 0…n-1: rank k is drawn with probability proportional to
 * 1 / (k + 1)^s. Inverse-CDF over a precomputed table (n doubles), O(log n) per draw.
 */
export class ZipfSampler {
  readonly n: number;
  readonly s: number;
  readonly #cdf: Float64Array;

  constructor(n: number, s: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError("n must be a positive integer");
    if (!(s >= 0)) throw new RangeError("s must be ≥ 0");
    this.n = n;
    this.s = s;
    this.#cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
      sum += 1 / Math.pow(k + 1, s);
      this.#cdf[k] = sum;
    }
    for (let k = 0; k < n; k++) this.#cdf[k]! /= sum;
    this.#cdf[n - 1] = 1;
  }

  /** The probability of rank k. */
  probability(k: number): number {
    if (k < 0 || k >= this.n) return 0;
    return this.#cdf[k]! - (k === 0 ? 0 : this.#cdf[k - 1]!);
  }

  /** The rank that uniform `u` in [0, 1) maps to. */
  rankOf(u: number): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#cdf[mid]! <= u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** A draw using `random` (uniform in [0, 1)). */
  sample(random: () => number): number {
    return this.rankOf(random());
  }
}
