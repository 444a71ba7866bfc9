import type { BenchResults, WarmCell } from "../src/types";

const cell = (size: number, op: "encrypt" | "decrypt", impl: "raw" | "kms" | "esdk", opsPerSec: number, p50Us: number, p99Us: number, vsRaw: number, vsRawRange: [number, number]): WarmCell => ({
  size,
  op,
  impl,
  opsPerSec,
  p50Us,
  p99Us,
  vsRaw,
  vsRawRange,
});

/** Fixed figures for the rendering tests (not measured). */
export function fixture(): BenchResults {
  return {
    machine: {
      cpuModel: "AMD EPYC",
      cores: 2,
      ramGiB: 23.5,
      os: "Linux 6.1",
      node: "v20.20.2",
      openssl: "3.0.19",
      packages: { "@kms/core": "0.0.0", "@aws-crypto/client-node": "5.0.2" },
      commit: "abc1234",
      date: "2026-11-29 14:00 UTC",
      loadAverage: { start: 0.12, end: 1.9 },
    },
    warm: {
      rounds: 5,
      cells: [
        cell(1024, "encrypt", "raw", 180_000, 4.2, 12.3, 1, [1, 1]),
        cell(1024, "encrypt", "kms", 125_000, 5.84, 23.4, 1.32, [1.2, 1.45]),
        cell(1024, "encrypt", "esdk", 2_870, 240, 4714, 62.1, [56.2, 68.1]),
        cell(1024, "decrypt", "raw", 196_408, 4.45, 8.69, 1, [1, 1]),
        cell(1024, "decrypt", "kms", 133_577, 5.78, 19.2, 1.47, [1.28, 1.66]),
        cell(1024, "decrypt", "esdk", 3_044, 248, 2155, 64.3, [56, 72.7]),
      ],
      esdkOverKms: { "encrypt:1024": 47.04, "decrypt:1024": 43.9 },
      esdkOverKmsRange: { "encrypt:1024": [40.1, 52.3], "decrypt:1024": [40, 48] },
      esdkBackingCalls: 0,
      kmsProviderCalls: 0,
    },
    stampede: {
      runs: 3,
      latencyMs: 20,
      rows: [
        { concurrency: 1, op: "encrypt", impl: "kms", kmsCalls: 1, kmsCallsRange: [1, 1], timeMs: 54.3, timeMsRange: [50.1, 60.2] },
        { concurrency: 1, op: "encrypt", impl: "esdk", kmsCalls: 1, kmsCallsRange: [1, 1], timeMs: 37, timeMsRange: [35, 40] },
        { concurrency: 10_000, op: "encrypt", impl: "kms", kmsCalls: 1, kmsCallsRange: [1, 1], timeMs: 412.5, timeMsRange: [400, 430] },
        { concurrency: 10_000, op: "encrypt", impl: "esdk", kmsCalls: 10_000, kmsCallsRange: [10_000, 10_000], timeMs: 19_250, timeMsRange: [18_900, 19_800] },
      ],
    },
    cache: {
      tenants: 10_000,
      operations: 1_000_000,
      zipfS: 1,
      warmupOps: 100_000,
      defaultCapacity: 10_000,
      pricePer10k: 0.03,
      rows: [
        { capacity: 1000, rate: 1000, hitRate: 0.6759, steadyHitRate: 0.6763, kmsCallsPer1000: 324.1, steadyKmsCallsPer1000: 323.7, monthlyCostUsd: 2517.1, seeds: 1 },
        { capacity: 10_000, rate: 1000, hitRate: 0.9657, steadyHitRate: 0.9715, kmsCallsPer1000: 34.3, steadyKmsCallsPer1000: 28.5, monthlyCostUsd: 221.616, seeds: 3 },
        { capacity: 10_000, rate: 0, hitRate: 0.99, steadyHitRate: 0.9984, kmsCallsPer1000: 10, steadyKmsCallsPer1000: 1.6, monthlyCostUsd: 0, seeds: 3 },
      ],
    },
    memory: {
      tenants: 10_000,
      operations: 1_000_000,
      capacity: 10_000,
      samples: [
        { ops: 0, rssMiB: 77, heapUsedMiB: 15.4, externalMiB: 2.1, encryptEntries: 0, decryptEntries: 0 },
        { ops: 250_000, rssMiB: 199, heapUsedMiB: 41.3, externalMiB: 3.2, encryptEntries: 10_000, decryptEntries: 9_990 },
        { ops: 1_000_000, rssMiB: 201, heapUsedMiB: 41.8, externalMiB: 3.3, encryptEntries: 10_000, decryptEntries: 10_000 },
      ],
      heapGrowthMiB: 0.5,
    },
    server: {
      seconds: 5,
      rounds: 3,
      connections: 64,
      cases: [
        { name: "no-op (POST …/noop)", rps: 6_500, p50Ms: 9, p99Ms: 25, vsNoop: 1, vsNoopRange: [1, 1] },
        { name: "encrypt 1 KiB", rps: 5_900, p50Ms: 10, p99Ms: 28, vsNoop: 0.91, vsNoopRange: [0.85, 0.95] },
      ],
    },
    errors: {},
    wallSeconds: 450,
    settings: {},
  };
}
