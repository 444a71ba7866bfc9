/**
 * The harness: runs the five scenarios (each in a fresh process), then writes docs/BENCHMARKS.md and
 * docs/benchmarks.svg from the figures. Entry point: src/run.mjs (`pnpm bench`).
 *
 * Environment:
 * - BENCH_QUICK=1: a smoke run (fewer rounds and smaller scales; the report says so). Not for figures.
 * - BENCH_ROUNDS: warm-path rounds (default 7). BENCH_ONLY=warm,stampede,cache,server,memory: a subset.
 * - BENCH_OUT: the folder for BENCHMARKS.md and benchmarks.svg (default: the repository's docs/).
 * - BENCH_RENDER_ONLY=1: re-render the report from bench/results/latest.json without measuring.
 */
import { fork } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, relative, resolve } from "node:path";
import { AWS_PRICE_PER_10K, type CacheRunOptions, type CacheRunResult, defaultCacheSettings, monthlyCost } from "./cache-sim";
import { machineInfo } from "./machine";
import type { MemoryOptions } from "./memory";
import { renderReport, targetRows } from "./report";
import type { StampedeOptions } from "./stampede";
import { median } from "./stats";
import { benchmarkChart } from "./svg";
import type { BenchResults, CacheRow, MemoryResult, ServerResult, StampedeResult, WarmResult } from "./types";
import type { WarmOptions } from "./warm";

const env = process.env;
const QUICK = env.BENCH_QUICK === "1";
const ONLY = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(",").map((s) => s.trim())) : undefined;
const ROOT = resolve(__dirname, "..", "..");
const OUT = resolve(env.BENCH_OUT ?? join(ROOT, "docs"));
const RESULTS = join(__dirname, "..", "results", "latest.json");

const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

/** Runs `name` in dist/child.js and resolves with what it sends back. */
function inChild<T>(name: string, options: unknown, execArgv: string[] = []): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(join(__dirname, "child.js"), [name, JSON.stringify(options)], {
      execArgv,
      env: { ...env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let settled = false;
    child.on("message", (message: { ok: boolean; result?: T; error?: string }) => {
      settled = true;
      if (message.ok) resolvePromise(message.result as T);
      else reject(new Error(message.error));
    });
    child.on("exit", (code) => {
      if (!settled) reject(new Error(`scenario ${name} exited with code ${code} and no result`));
    });
  });
}

/** Runs `tasks` with at most `limit` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

async function warmScenario(): Promise<WarmResult> {
  const options: WarmOptions = { rounds: Number(env.BENCH_ROUNDS ?? (QUICK ? 2 : 7)), caseMs: QUICK ? 60 : 250 };
  return inChild<WarmResult>("warm", options);
}

async function stampedeScenario(): Promise<StampedeResult> {
  const options: StampedeOptions = {
    concurrency: QUICK ? [1, 100, 1000] : [1, 100, 10_000],
    decryptConcurrency: [1, 100, 1000],
    runs: QUICK ? 1 : 3,
    latencyMs: 20,
  };
  return inChild<StampedeResult>("stampede", options);
}

async function memoryScenario(): Promise<MemoryResult> {
  const operations = QUICK ? 200_000 : 1_000_000;
  const options: MemoryOptions = {
    tenants: 10_000,
    operations,
    sampleAt: Array.from({ length: 11 }, (_, i) => (i * operations) / 10),
    rate: 1000,
  };
  return inChild<MemoryResult>("memory", options, ["--expose-gc"]);
}

interface CacheConfig {
  capacity: number;
  rate: number;
  seeds: number[];
}

function cacheConfigs(): { configs: CacheConfig[]; tenants: number; operations: number; warmupOps: number; zipfS: number; defaultCapacity: number } {
  const defaults = defaultCacheSettings();
  const operations = QUICK ? 200_000 : 1_000_000;
  // The default capacity's rows decide a target: three seeds. The rest of the sweep: one (over 1 M
  // draws the sampling noise is a few hundredths of a point; the three seeds show how much).
  const targetSeeds = QUICK ? [1] : [1, 2, 3];
  const primaryRate = 1000;
  const def = defaults.encryptCapacity;
  // No capacity above the tenant count: with every tenant fitting there is no eviction left to save.
  const configs: CacheConfig[] = [
    ...[1000, 2500, 5000, def].map((capacity) => ({ capacity, rate: primaryRate, seeds: capacity === def ? targetSeeds : [1] })),
    { capacity: def, rate: 0, seeds: targetSeeds },
    { capacity: def, rate: 100, seeds: [1] },
  ];
  return { configs, tenants: 10_000, operations, warmupOps: operations / 10, zipfS: 1, defaultCapacity: def };
}

/** Scenarios 3 and 5 (neither is timed: their clocks are simulated): one child per run, two at a time. */
async function cacheAndMemoryScenarios(results: BenchResults): Promise<void> {
  const plan = cacheConfigs();
  const tasks: (() => Promise<unknown>)[] = [];
  const runs: { config: CacheConfig; result: CacheRunResult }[] = [];
  const wantCache = !ONLY || ONLY.has("cache");
  const wantMemory = !ONLY || ONLY.has("memory");
  if (wantMemory) {
    tasks.push(() =>
      memoryScenario().then(
        (memory) => (results.memory = memory),
        (error: unknown) => (results.errors.memory = error instanceof Error ? error.message : String(error)),
      ),
    );
  }
  if (wantCache) {
    // Slowest first (small capacities miss most), so the two workers finish together.
    for (const config of plan.configs) {
      for (const seed of config.seeds) {
        const options: CacheRunOptions = { tenants: plan.tenants, operations: plan.operations, zipfS: plan.zipfS, warmupOps: plan.warmupOps, seed, capacity: config.capacity, rate: config.rate };
        tasks.push(() => inChild<CacheRunResult>("cache", options).then((result) => runs.push({ config, result })));
      }
    }
  }
  const t0 = Date.now();
  log(`${[wantCache ? "cache" : "", wantMemory ? "memory" : ""].filter(Boolean).join(" and ")}: running (${tasks.length} processes, two at a time)`);
  try {
    await pool(tasks, 2);
  } catch (error) {
    results.errors.cache = error instanceof Error ? error.message : String(error);
  }
  log(`cache and memory: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!wantCache || results.errors.cache) return;
  const steadyOps = plan.operations - plan.warmupOps;
  const rows: CacheRow[] = plan.configs.map((config) => {
    const mine = runs.filter((r) => r.config === config).map((r) => r.result);
    const steadyCallsPer1000 = median(mine.map((r) => (r.steadyMisses / steadyOps) * 1000));
    return {
      capacity: config.capacity,
      rate: config.rate,
      hitRate: median(mine.map((r) => r.hits / (r.hits + r.misses))),
      steadyHitRate: median(mine.map((r) => 1 - r.steadyMisses / steadyOps)),
      kmsCallsPer1000: median(mine.map((r) => (r.providerCalls / plan.operations) * 1000)),
      steadyKmsCallsPer1000: steadyCallsPer1000,
      monthlyCostUsd: monthlyCost(steadyCallsPer1000, config.rate),
      seeds: mine.length,
    };
  });
  results.cache = {
    tenants: plan.tenants,
    operations: plan.operations,
    zipfS: plan.zipfS,
    warmupOps: plan.warmupOps,
    defaultCapacity: plan.defaultCapacity,
    pricePer10k: AWS_PRICE_PER_10K,
    rows,
  };
}

async function serverScenario(): Promise<ServerResult> {
  const seconds = QUICK ? 2 : 5;
  const rounds = QUICK ? 1 : 3;
  // A variable specifier: the script is plain JS without type declarations.
  const specifier = "@kms/server/bench/server.bench.mjs";
  const { runServerBench } = (await import(specifier)) as {
    runServerBench(options: object): Promise<{ cases: { name: string; rps: number; p50Ms: number; p99Ms: number; vsNoop: number; vsNoopRange: [number, number] }[] }>;
  };
  const result = await runServerBench({ seconds, rounds, connections: 64, withHealthRoute: false, warmupSeconds: 1, log: () => {} });
  return {
    seconds,
    rounds,
    connections: 64,
    cases: result.cases.map(({ name, rps, p50Ms, p99Ms, vsNoop, vsNoopRange }) => ({ name, rps, p50Ms, p99Ms, vsNoop, vsNoopRange })),
  };
}

const SCENARIOS = [
  ["warm", warmScenario],
  ["stampede", stampedeScenario],
  ["server", serverScenario],
] as const;

async function measureAll(): Promise<BenchResults> {
  const started = process.hrtime.bigint();
  const results: BenchResults = { machine: machineInfo(), errors: {}, wallSeconds: 0, settings: {} };
  if (QUICK) results.settings.mode = "BENCH_QUICK (smoke run: fewer rounds, smaller scales; not for publication)";
  if (env.BENCH_ROUNDS) results.settings["warm rounds"] = Number(env.BENCH_ROUNDS);
  log(`${results.machine.cores} × ${results.machine.cpuModel}, Node.js ${results.machine.node}`);
  for (const [name, scenario] of SCENARIOS) {
    if (ONLY && !ONLY.has(name)) continue;
    const t0 = Date.now();
    log(`${name}: running`);
    try {
      (results as unknown as Record<string, unknown>)[name] = await scenario();
      log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      results.errors[name] = message;
      log(`${name}: FAILED: ${message}`);
    }
  }
  if (!ONLY || ONLY.has("cache") || ONLY.has("memory")) await cacheAndMemoryScenarios(results);
  results.wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  results.machine.loadAverage = { ...results.machine.loadAverage!, end: loadavg()[0]! };
  return results;
}

async function main(): Promise<void> {
  let results: BenchResults;
  if (env.BENCH_RENDER_ONLY === "1") {
    results = JSON.parse(readFileSync(RESULTS, "utf8")) as BenchResults;
  } else {
    results = await measureAll();
    mkdirSync(join(RESULTS, ".."), { recursive: true });
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  }
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "benchmarks.svg"), benchmarkChart(results));
  writeFileSync(join(OUT, "BENCHMARKS.md"), renderReport(results, { chartFile: "benchmarks.svg" }));
  log(`wrote ${relative(process.cwd(), join(OUT, "BENCHMARKS.md"))} and benchmarks.svg (${(results.wallSeconds / 60).toFixed(1)} min of measuring)`);
  for (const t of targetRows(results)) log(`${t.pass === undefined ? "INFO" : t.pass ? "PASS" : "FAIL"}  ${t.target}: ${t.measured}`);
  if (Object.keys(results.errors).length > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
