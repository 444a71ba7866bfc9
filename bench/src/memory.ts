/**
 * Scenario 5: memory. 1 M operations over 10,000 tenants (uniform: every tenant stays in play),
 * alternately an encrypt of 1 KiB and the decrypt of the envelope it produced, through `createKms`
 * (an in-memory provider, memory-provider.ts) with default cache settings. The clock moves at `rate`
 * requests per simulated second, so data keys expire and are replaced (both caches keep taking new
 * entries) for the whole run. RSS and heap are read after a forced GC (the process runs with --expose-gc) at each sample.
 */
import { createKms, definitionOf } from "@kms/core";
import { SteppedClock, defaultCacheSettings } from "./cache-sim";
import { memoryProvider } from "./memory-provider";
import { seededRandom } from "./stats";
import type { MemoryResult, MemorySample } from "./types";

export interface MemoryOptions {
  tenants: number;
  operations: number;
  /** Samples after these many operations (0 = after start-up). */
  sampleAt: readonly number[];
  rate: number;
}

const MiB = 1024 * 1024;

export async function runMemory(options: MemoryOptions): Promise<MemoryResult> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("the memory scenario needs node --expose-gc");
  const provider = memoryProvider();
  const clock = new SteppedClock();
  const kms = createKms({
    registry: [definitionOf(provider)],
    config: {
      providers: { [provider.id]: {} },
      tenants: { defaultKey: { provider: provider.id, keyId: "bench" } },
    },
    env: { NODE_ENV: "development" },
    clock,
  });
  const random = seededRandom(7);
  const tenantIds = Array.from({ length: options.tenants }, (_, i) => `tenant-${i}`);
  const plaintext = Buffer.alloc(1024, 7);
  const context = { purpose: "bench" };
  const samples: MemorySample[] = [];
  const sample = (ops: number) => {
    gc();
    gc();
    const usage = process.memoryUsage();
    const stats = kms.cacheStats();
    samples.push({
      ops,
      rssMiB: usage.rss / MiB,
      heapUsedMiB: usage.heapUsed / MiB,
      externalMiB: usage.external / MiB,
      encryptEntries: stats.encrypt.entries,
      decryptEntries: stats.decrypt.entries,
    });
  };
  const at = new Set(options.sampleAt);
  const stepMs = 1000 / options.rate;
  try {
    let envelope: Buffer | undefined;
    let tenant = "";
    for (let i = 0; i < options.operations; i++) {
      if (at.has(i)) sample(i);
      clock.t += stepMs;
      if (i % 2 === 0) {
        tenant = tenantIds[Math.floor(random() * options.tenants)]!;
        envelope = await kms.encrypt(tenant, plaintext, context);
      } else {
        await kms.decrypt(tenant, envelope!, context);
      }
    }
    if (at.has(options.operations)) sample(options.operations);
  } finally {
    await kms.close();
  }
  // Growth once the caches are full: from the first sample past start-up to the last.
  const first = samples.find((s) => s.ops > 0) ?? samples[0]!;
  const last = samples[samples.length - 1]!;
  return {
    tenants: options.tenants,
    operations: options.operations,
    // The bound the verdict checks each side's entries against: the default capacity (the caches run on their defaults).
    capacity: defaultCacheSettings().decryptCapacity,
    samples,
    heapGrowthMiB: last.heapUsedMiB - first.heapUsedMiB,
  };
}
