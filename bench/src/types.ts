/** The figures each scenario produces, as the report renders them (plain JSON: they cross processes). */

export type Impl = "raw" | "kms" | "esdk";
export type WarmOp = "encrypt" | "decrypt";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  ramGiB: number;
  os: string;
  node: string;
  openssl: string;
  /** Package name → version, for the packages measured. */
  packages: Record<string, string>;
  /** The commit measured, when known. */
  commit?: string;
  date: string;
  /** 1-minute load average when the run started and when it ended: other work on the machine shows here. */
  loadAverage?: { start: number; end?: number };
}

/** One (size, operation, implementation) cell of scenario 1: medians over the rounds. */
export interface WarmCell {
  size: number;
  op: WarmOp;
  impl: Impl;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** Median of the rounds' (this impl's mean time per op ÷ raw's), for kms and esdk; 1 for raw. */
  vsRaw: number;
  /** [min, max] of those per-round ratios. */
  vsRawRange: [number, number];
}

export interface WarmResult {
  rounds: number;
  cells: WarmCell[];
  /** Median of the rounds' (esdk mean time ÷ kms mean time), per `${op}:${size}`. */
  esdkOverKms: Record<string, number>;
  esdkOverKmsRange: Record<string, [number, number]>;
  /** Backing-keyring calls the ESDK's caching CMM made while timed (must be 0: a cached path). */
  esdkBackingCalls: number;
  /** KMS calls our client made while timed (must be 0). */
  kmsProviderCalls: number;
}

export interface StampedeRow {
  concurrency: number;
  op: WarmOp;
  impl: "kms" | "esdk";
  /** Median over the runs of the KMS requests the emulator served for the stampede. */
  kmsCalls: number;
  kmsCallsRange: [number, number];
  /** Median over the runs of the time until every request was served, ms. */
  timeMs: number;
  timeMsRange: [number, number];
}

export interface StampedeResult {
  runs: number;
  latencyMs: number;
  rows: StampedeRow[];
}

export interface CacheRow {
  capacity: number;
  /** Requests per simulated second (the clock the cache ages by); 0 = a frozen clock (no expiry). */
  rate: number;
  /** Medians over the seeds. */
  hitRate: number;
  steadyHitRate: number;
  kmsCallsPer1000: number;
  steadyKmsCallsPer1000: number;
  /** Monthly KMS request cost in USD implied by the steady-state calls at `rate`. */
  monthlyCostUsd: number;
  seeds: number;
}

export interface CacheResult {
  tenants: number;
  operations: number;
  zipfS: number;
  warmupOps: number;
  defaultCapacity: number;
  pricePer10k: number;
  rows: CacheRow[];
}

export interface MemorySample {
  ops: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** Memory of Buffers and other objects outside the JS heap. */
  externalMiB: number;
  encryptEntries: number;
  decryptEntries: number;
}

export interface MemoryResult {
  tenants: number;
  operations: number;
  capacity: number;
  samples: MemorySample[];
  /** Growth of heapUsed from the first sample after warm-up to the last, MiB. */
  heapGrowthMiB: number;
}

export interface ServerCase {
  name: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Median of the rounds' (this route's req/s ÷ the no-op route's). */
  vsNoop: number;
  vsNoopRange: [number, number];
}

export interface ServerResult {
  seconds: number;
  rounds: number;
  connections: number;
  cases: ServerCase[];
}

export interface BenchResults {
  machine: MachineInfo;
  warm?: WarmResult;
  stampede?: StampedeResult;
  cache?: CacheResult;
  memory?: MemoryResult;
  server?: ServerResult;
  /** Scenarios that failed, with the error message. */
  errors: Record<string, string>;
  wallSeconds: number;
  /** Settings that deviate from the defaults (quick mode, fewer rounds). */
  settings: Record<string, string | number>;
}
