/**
 * A short history of this server's cache and KMS figures for the console's chart and alerts: every
 * `intervalMs` one sample of the cache counters (both sides added up) and of the KMS operations
 * seen since the previous sample (core's `kms.operation` events: calls, failures, throttles). In
 * memory, a fixed number of samples; no tenant id, key id or key material.
 */
import type { KmsClient } from "@kms/core";

export const DEFAULT_STATS_INTERVAL_MS = 10_000;
/** 90 samples of 10 s: the last 15 minutes. */
export const DEFAULT_STATS_SAMPLES = 90;

export interface StatsSample {
  /** End of the interval, ms since the epoch. */
  at: number;
  /** Length of the interval in ms (the last, partial one is shorter). */
  intervalMs: number;
  /** Cache lookups in the interval (encrypt and decrypt sides). */
  hits: number;
  misses: number;
  /** Cached data keys at the end of the interval (both sides). */
  entries: number;
  /** KMS operations that ended in the interval, after retries; failures; of them throttled. */
  kmsCalls: number;
  kmsErrors: number;
  kmsThrottled: number;
}

export interface StatsHistory {
  /** The samples, oldest first, and the interval in progress as the last one. */
  samples(): StatsSample[];
  readonly intervalMs: number;
  stop(): void;
}

export function createStatsHistory(kms: KmsClient, options: { intervalMs?: number; size?: number; now?: () => number } = {}): StatsHistory {
  const intervalMs = options.intervalMs ?? DEFAULT_STATS_INTERVAL_MS;
  const size = options.size ?? DEFAULT_STATS_SAMPLES;
  const now = options.now ?? Date.now;
  const history: StatsSample[] = [];
  const totals = () => {
    const { encrypt, decrypt } = kms.cacheStats();
    return { hits: encrypt.hits + decrypt.hits, misses: encrypt.misses + decrypt.misses, entries: encrypt.entries + decrypt.entries };
  };
  let since = now();
  let base = totals();
  let calls = 0;
  let errors = 0;
  let throttled = 0;
  const unsubscribe = kms.onEvent((event) => {
    if (event.type !== "kms.operation") return;
    calls++;
    if (event.outcome === "error") errors++;
    if (event.code === "KMS_THROTTLED") throttled++;
  });
  const current = (): StatsSample => {
    const t = now();
    const figures = totals();
    return {
      at: t,
      intervalMs: t - since,
      // A counter that went down (a cache rebuilt) counts from zero.
      hits: Math.max(0, figures.hits - base.hits),
      misses: Math.max(0, figures.misses - base.misses),
      entries: figures.entries,
      kmsCalls: calls,
      kmsErrors: errors,
      kmsThrottled: throttled,
    };
  };
  const timer = setInterval(() => {
    const sample = current();
    history.push(sample);
    if (history.length > size) history.shift();
    since = sample.at;
    base = totals();
    calls = errors = throttled = 0;
  }, intervalMs);
  timer.unref();
  return {
    intervalMs,
    samples: () => [...history, current()],
    stop() {
      clearInterval(timer);
      unsubscribe();
    },
  };
}
