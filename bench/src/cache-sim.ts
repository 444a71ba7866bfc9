/**
 * Scenario 3: cache effectiveness. 10,000 tenants, requests drawn from a Zipf distribution (seeded),
 * 1 M encrypts through the real `createKms` (an in-memory provider, memory-provider.ts) with a given
 * encrypt-cache capacity.
 * Time is simulated: the client's clock moves by 1/rate seconds per request, so cache entries age
 * (and expire at `cache.encrypt.maxAgeMs`, with core's jitter) as they would at that request rate.
 * Every cache miss is one KMS call (`generateDataKey`); the figures come from `cacheStats()`.
 */
import { type Clock, createKms, definitionOf, kmsConfigSchema } from "@kms/core";
import { memoryProvider } from "./memory-provider";
import { ZipfSampler, seededRandom } from "./stats";

/** AWS KMS list price per 10,000 requests (docs/COST.md). */
export const AWS_PRICE_PER_10K = 0.03;
export const SECONDS_PER_MONTH = 30 * 24 * 3600;

/** The cache capacities core uses when none is configured. */
export function defaultCacheSettings(): { encryptCapacity: number; decryptCapacity: number } {
  const parsed = kmsConfigSchema.parse({ providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "k" } } });
  return { encryptCapacity: parsed.cache.encrypt.capacity, decryptCapacity: parsed.cache.decrypt.capacity };
}

/** Monthly KMS request cost (USD) of `callsPer1000` KMS calls per 1,000 requests at `rate` requests/s. */
export function monthlyCost(callsPer1000: number, rate: number, pricePer10k = AWS_PRICE_PER_10K): number {
  const requests = rate * SECONDS_PER_MONTH;
  return ((requests * callsPer1000) / 1000 / 10_000) * pricePer10k;
}

export interface CacheRunOptions {
  tenants: number;
  operations: number;
  zipfS: number;
  capacity: number;
  /** Requests per simulated second; 0 freezes the clock (entries never expire: capacity alone). */
  rate: number;
  seed: number;
  /** Requests before the steady-state window starts. */
  warmupOps: number;
}

export interface CacheRunResult {
  hits: number;
  misses: number;
  steadyMisses: number;
  maxEntries: number;
  /** generateDataKey calls the provider saw (equal to the misses: sequential requests never coalesce). */
  providerCalls: number;
}

/**
 * A clock the simulations (this one and memory.ts) set directly; timers are never due (the provider
 * answers at once). Not core's `ManualClock`: its `advance` fires timers and yields to the event loop,
 * which over a million requests would time the simulation, not the cache.
 */
export class SteppedClock implements Clock {
  t = 1_700_000_000_000;
  now(): number {
    return this.t;
  }
  setTimer(): () => void {
    return () => {};
  }
}

export async function runCacheOnce(options: CacheRunOptions): Promise<CacheRunResult> {
  const provider = memoryProvider();
  const clock = new SteppedClock();
  const kms = createKms({
    registry: [definitionOf(provider)],
    config: {
      providers: { [provider.id]: {} },
      tenants: { defaultKey: { provider: provider.id, keyId: "bench" } },
      cache: { encrypt: { capacity: options.capacity } },
    },
    env: { NODE_ENV: "development" },
    clock,
    random: seededRandom(options.seed ^ 0x5bd1e995),
  });
  const zipf = new ZipfSampler(options.tenants, options.zipfS);
  const random = seededRandom(options.seed);
  const tenantIds = Array.from({ length: options.tenants }, (_, i) => `tenant-${i}`);
  const plaintext = Buffer.alloc(16);
  const stepMs = options.rate > 0 ? 1000 / options.rate : 0;
  const start = clock.t;
  let missesAtWarmup = 0;
  let maxEntries = 0;
  try {
    for (let i = 0; i < options.operations; i++) {
      if (i === options.warmupOps) missesAtWarmup = kms.cacheStats().encrypt.misses;
      clock.t = start + i * stepMs;
      await kms.encrypt(tenantIds[zipf.sample(random)]!, plaintext);
      if ((i & 0x3fff) === 0) maxEntries = Math.max(maxEntries, kms.cacheStats().encrypt.entries);
    }
    const stats = kms.cacheStats().encrypt;
    maxEntries = Math.max(maxEntries, stats.entries);
    return { hits: stats.hits, misses: stats.misses, steadyMisses: stats.misses - missesAtWarmup, maxEntries, providerCalls: provider.calls.generateDataKey };
  } finally {
    await kms.close();
  }
}
