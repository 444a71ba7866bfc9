/**
 * docs/BENCHMARKS.md from the figures: pure rendering (tested as exact strings), no measuring here.
 */
import { SECONDS_PER_MONTH } from "./cache-sim";
import { ESDK_SUITE_NAME } from "./esdk";
import { fmtInt, fmtMs, fmtNum, fmtPct, fmtRange, fmtRatio, fmtSize, fmtUsd } from "./format";
import { LABELS, primaryRate } from "./svg";
import type { BenchResults, CacheResult, Impl, MemoryResult, MemorySample, StampedeResult, WarmResult } from "./types";

/** The issue's targets. */
export const TARGETS = {
  warmEncryptVsRaw: 1.5,
  warmEncryptVsEsdk: 20,
  stampedeCalls: 1,
  stampedeConcurrency: 10_000,
  hitRate: 0.99,
  /** Memory: heap after 1 M operations within this fraction of the heap once the caches are full. */
  heapGrowthFraction: 0.05,
} as const;

export interface TargetRow {
  target: string;
  measured: string;
  /** Undefined for a figure shown next to the targets for information (not one of the issue's targets). */
  pass?: boolean;
}

const verdict = (pass: boolean | undefined) => (pass === undefined ? "not a target (see §3)" : pass ? "**PASS**" : "**FAIL**");

export function table(header: string[], rows: string[][], align?: ("l" | "r")[]): string {
  const sep = header.map((_, i) => ((align?.[i] ?? (i === 0 ? "l" : "r")) === "r" ? "---:" : "---"));
  return [header, sep, ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export function targetRows(results: BenchResults): TargetRow[] {
  const rows: TargetRow[] = [];
  const { warm, stampede, cache, memory } = results;
  if (warm) {
    const kms = warm.cells.find((c) => c.op === "encrypt" && c.size === 1024 && c.impl === "kms");
    if (kms) {
      rows.push({
        target: `warm encrypt, 1 KiB: within ${TARGETS.warmEncryptVsRaw}× of bare AES-256-GCM (time per operation)`,
        measured: `${fmtRatio(kms.vsRaw)} (runs: ${fmtRange(kms.vsRawRange)})`,
        pass: kms.vsRaw <= TARGETS.warmEncryptVsRaw,
      });
    }
    const esdk = warm.esdkOverKms["encrypt:1024"];
    if (esdk !== undefined) {
      rows.push({
        target: `warm encrypt, 1 KiB: at least ${TARGETS.warmEncryptVsEsdk}× faster than the AWS Encryption SDK's cached path`,
        measured: `${fmtRatio(esdk)} faster (runs: ${fmtRange(warm.esdkOverKmsRange["encrypt:1024"]!)})`,
        pass: esdk >= TARGETS.warmEncryptVsEsdk,
      });
    }
  }
  if (stampede) {
    const row = stampede.rows.find((r) => r.impl === "kms" && r.op === "encrypt" && r.concurrency === TARGETS.stampedeConcurrency);
    if (row) {
      const [lo, hi] = row.kmsCallsRange;
      rows.push({
        target: `${fmtInt(TARGETS.stampedeConcurrency)} concurrent cold requests make exactly ${TARGETS.stampedeCalls} KMS call`,
        measured: `${fmtInt(row.kmsCalls)} call${row.kmsCalls === 1 ? "" : "s"} (every run: ${lo === hi ? fmtInt(lo) : `${fmtInt(lo)}–${fmtInt(hi)}`})`,
        pass: lo === TARGETS.stampedeCalls && hi === TARGETS.stampedeCalls,
      });
    }
  }
  if (cache) {
    const frozen = cache.rows.find((r) => r.capacity === cache.defaultCapacity && r.rate === 0);
    if (frozen) {
      rows.push({
        target: `hit rate ≥ ${fmtPct(TARGETS.hitRate, 0)} at the default capacity (${fmtInt(cache.defaultCapacity)}): capacity alone (no expiry), steady state`,
        measured: `${fmtPct(frozen.steadyHitRate)} (whole run, cold start included: ${fmtPct(frozen.hitRate)})`,
        pass: frozen.steadyHitRate >= TARGETS.hitRate,
      });
    }
    const rate = primaryRate(results);
    const aged = cache.rows.find((r) => r.capacity === cache.defaultCapacity && r.rate === rate && rate > 0);
    if (aged) {
      rows.push({
        // The target is about capacity (scenario 3's variable); expiry at a given traffic is a second,
        // time-dependent figure: shown here so that nobody reads the capacity figure as the whole story.
        target: `for information: hit rate at the default capacity with the default max age (5 min) at ${fmtInt(rate)} requests/s, steady state`,
        measured: `${fmtPct(aged.steadyHitRate)} (whole run: ${fmtPct(aged.hitRate)})`,
      });
    }
  }
  if (memory) {
    const { bounded, growth } = memoryVerdict(memory);
    rows.push({
      target: `memory bounded: no growth past the cache bound over ${fmtInt(memory.operations)} operations`,
      measured: `cache entries ≤ ${fmtInt(memory.capacity)} per side; heap ${growth}`,
      pass: bounded,
    });
  }
  return rows;
}

const signed = (n: number) => `${n >= 0 ? "+" : "−"}${fmtNum(Math.abs(n))}`;

/** What RSS and external memory did once the caches were full (neither is part of the verdict). */
export function rssText(memory: MemoryResult): string {
  const full = memory.samples.find((s) => s.ops > 0) ?? memory.samples[0]!;
  const half = memory.samples.find((s) => s.ops >= memory.operations / 2) ?? full;
  const last = memory.samples[memory.samples.length - 1]!;
  const trend = (pick: (s: MemorySample) => number) =>
    `${fmtNum(pick(full))} MiB at ${fmtInt(full.ops)} operations, ${fmtNum(pick(half))} at ${fmtInt(half.ops)}, ${fmtNum(pick(last))} at the end`;
  const first = half.externalMiB - full.externalMiB;
  const second = last.externalMiB - half.externalMiB;
  const shape =
    second < first
      ? `rising less in the second half (${signed(second)} MiB) than in the first (${signed(first)} MiB)`
      : `still rising: ${signed(first)} MiB in the first half, ${signed(second)} MiB in the second`;
  return (
    `RSS: ${trend((s) => s.rssMiB)}; external memory (Buffers and native objects outside the JS heap): ${trend((s) => s.externalMiB)}, ${shape}. ` +
    "These two are shown, not judged (they include memory the GC freed and the allocator has not returned); the JS heap and the cache " +
    "entries are what the caches' bound must hold flat."
  );
}

export function memoryVerdict(memory: MemoryResult): { bounded: boolean; growth: string } {
  const entriesBounded = memory.samples.every((s) => s.encryptEntries <= memory.capacity && s.decryptEntries <= memory.capacity);
  const full = memory.samples.find((s) => s.ops > 0) ?? memory.samples[0]!;
  const allowed = full.heapUsedMiB * TARGETS.heapGrowthFraction;
  const sign = memory.heapGrowthMiB >= 0 ? "+" : "−";
  return {
    bounded: entriesBounded && memory.heapGrowthMiB <= allowed,
    growth: `${sign}${fmtNum(Math.abs(memory.heapGrowthMiB))} MiB from ${fmtInt(full.ops)} to ${fmtInt(memory.operations)} operations (allowed: ${fmtPct(TARGETS.heapGrowthFraction, 0)} = ${fmtNum(allowed)} MiB)`,
  };
}

/**
 * The load averages, with a warning when other work shared the machine as the run began (the end's
 * figure counts the benchmark's own processes, two at a time in its last scenarios, so it says little).
 */
export function loadText(load: { start: number; end?: number }, cores: number): string {
  const values = [load.start, ...(load.end === undefined ? [] : [load.end])];
  const text = values.map((v) => v.toFixed(2)).join(" / ");
  return load.start > cores / 2 ? `${text}: other processes were using the CPUs; absolute figures are lower than on an idle machine` : text;
}

function warmSection(warm: WarmResult): string {
  const sizes = [...new Set(warm.cells.map((c) => c.size))].sort((a, b) => a - b);
  const impls: Impl[] = ["raw", "kms", "esdk"];
  const parts: string[] = [];
  for (const op of ["encrypt", "decrypt"] as const) {
    const rows: string[][] = [];
    for (const size of sizes) {
      for (const impl of impls) {
        const c = warm.cells.find((x) => x.size === size && x.op === op && x.impl === impl);
        if (!c) continue;
        const esdkRatio = warm.esdkOverKms[`${op}:${size}`];
        const raw = warm.cells.find((x) => x.size === size && x.op === op && x.impl === "raw");
        rows.push([
          fmtSize(size),
          LABELS[impl],
          fmtInt(c.opsPerSec),
          fmtNum(c.p50Us),
          fmtNum(c.p99Us),
          impl === "raw" ? "1 (floor)" : `${fmtRatio(c.vsRaw)} (${fmtRange(c.vsRawRange)})`,
          impl === "raw" || !raw ? "" : fmtRatio(c.p50Us / raw.p50Us),
          impl === "kms" && esdkRatio !== undefined ? `${fmtRatio(esdkRatio)} faster` : "",
        ]);
      }
    }
    parts.push(`### Warm ${op}\n\n${table(["size", "implementation", "ops/s", "p50 µs", "p99 µs", "time per op vs bare (range)", "p50 vs bare", "@kms vs ESDK"], rows, ["r", "l", "r", "r", "r", "r", "r", "r"])}`);
  }
  parts.push(
    `Over the timed runs, the ESDK's caching CMM fetched ${fmtInt(warm.esdkBackingCalls)} materials from its keyring and @kms made ${fmtInt(warm.kmsProviderCalls)} KMS calls: both measured paths are cache hits.`,
  );
  return parts.join("\n\n");
}

function stampedeSection(stampede: StampedeResult): string {
  const rows = stampede.rows.map((r) => [
    r.op,
    fmtInt(r.concurrency),
    LABELS[r.impl],
    r.kmsCallsRange[0] === r.kmsCallsRange[1] ? fmtInt(r.kmsCalls) : `${fmtInt(r.kmsCalls)} (${fmtInt(r.kmsCallsRange[0])}–${fmtInt(r.kmsCallsRange[1])})`,
    stampede.runs > 1 ? `${fmtMs(r.timeMs)} (${fmtNum(r.timeMsRange[0])}–${fmtNum(r.timeMsRange[1])} ms)` : fmtMs(r.timeMs),
  ]);
  return table(["operation", "concurrent first requests", "implementation", "KMS calls", "time to serve all (range over runs)"], rows, ["l", "r", "l", "r", "r"]);
}

function cacheSection(cache: CacheResult, rate: number): string {
  const sorted = cache.rows.slice().sort((a, b) => (a.rate === rate ? 0 : 1) - (b.rate === rate ? 0 : 1) || a.rate - b.rate || a.capacity - b.capacity);
  const rows = sorted.map((r) => [
    `${fmtInt(r.capacity)}${r.capacity === cache.defaultCapacity ? " (default)" : ""}`,
    r.rate === 0 ? "frozen clock (no expiry)" : `${fmtInt(r.rate)} req/s`,
    fmtPct(r.hitRate),
    fmtPct(r.steadyHitRate),
    fmtNum(r.steadyKmsCallsPer1000),
    r.rate === 0 ? "–" : fmtUsd(r.monthlyCostUsd),
    String(r.seeds),
  ]);
  return table(["encrypt-cache capacity", "simulated traffic", "hit rate, whole run", "hit rate, steady state", "KMS calls / 1,000 requests (steady)", "KMS request cost / month", "seeds"], rows);
}

function memorySection(memory: MemoryResult): string {
  const rows = memory.samples.map((s) => [fmtInt(s.ops), fmtNum(s.rssMiB), fmtNum(s.heapUsedMiB), fmtNum(s.externalMiB), fmtInt(s.encryptEntries), fmtInt(s.decryptEntries)]);
  return table(["operations", "RSS MiB", "heap used MiB", "external MiB", "encrypt-cache entries", "decrypt-cache entries"], rows);
}

export function renderReport(results: BenchResults, options: { chartFile?: string } = {}): string {
  const m = results.machine;
  const out: string[] = [];
  out.push("<!-- Generated by `pnpm bench` (bench/src/run.mjs) from one run: do not edit by hand, rerun it. -->");
  out.push("# Benchmarks: @kms next to bare AES-GCM and the AWS Encryption SDK");
  out.push(
    [
      `Generated by \`pnpm bench\` on ${m.date}${m.commit ? ` at commit \`${m.commit}\`` : ""}, in ${fmtNum(results.wallSeconds / 60)} minutes.`,
      "To rerun: `pnpm bench` at the repository root (it builds what it needs, then runs the `bench/` workspace and rewrites this page and",
      "[benchmarks.svg](benchmarks.svg)). All five scenarios run in one run, on the same machine, on the same data; each figure is the median",
      "of several runs (rounds), with the range over those runs in brackets where it matters. See [bench/README.md](../bench/README.md)",
      "for the settings.",
    ].join("\n"),
  );
  if (options.chartFile) out.push(`![Benchmark chart: warm operations/s by size, KMS calls in a cold stampede, cache hit rate by capacity](${options.chartFile})`);

  out.push("## Machine and versions");
  const versionRows = [
    ["CPU", `${m.cpuModel} (${m.cores} cores)`],
    ["memory", `${fmtNum(m.ramGiB)} GiB`],
    ["OS", m.os],
    ["Node.js", `${m.node} (OpenSSL ${m.openssl})`],
    ...(m.loadAverage ? [["load average (1 min), start / end of the run", loadText(m.loadAverage, m.cores)]] : []),
    ...Object.entries(m.packages).map(([name, version]) => [name, version]),
  ];
  out.push(table(["", ""], versionRows, ["l", "l"]));
  const settings = Object.entries(results.settings);
  if (settings.length > 0) out.push(`Run settings: ${settings.map(([k, v]) => `${k} = ${v}`).join("; ")}.`);

  out.push("## Targets");
  const targets = targetRows(results);
  out.push(table(["target", "measured", "verdict"], targets.map((t) => [t.target, t.measured, verdict(t.pass)]), ["l", "l", "l"]));
  const errors = Object.entries(results.errors);
  if (errors.length > 0) out.push(`**Scenarios that failed to run:** ${errors.map(([name, message]) => `${name} (${message.split("\n")[0]})`).join("; ")}.`);

  if (results.warm) {
    out.push("## 1. Warm cache: encrypt and decrypt");
    out.push(
      [
        "The same plaintexts through three implementations, each with its keys already in hand (a warm cache):",
        "",
        "- **bare node:crypto AES-256-GCM**, the floor: one `createCipheriv` per message with an IV from a pooled CSPRNG block, an AAD naming",
        "  the tenant and context, one output buffer IV ‖ ciphertext ‖ tag. What hand-rolled code does at best, and synchronous (no promise).",
        "- **@kms**: `kms.encrypt` / `kms.decrypt` of `createKms` (local provider) with both data-key caches warm: the whole client, envelope",
        "  format, key commitment and tenant binding included.",
        `- **AWS Encryption SDK** (\`@aws-crypto/client-node\`): \`encrypt\` / \`decrypt\` with a raw AES keyring behind \`NodeCachingMaterialsManager\``,
        `  (local LRU cache), suite \`${ESDK_SUITE_NAME}\` (committing, unsigned: the closest to the @kms envelope; the SDK's default suite adds an`,
        "  ECDSA signature per message and would be slower still).",
        "",
        `Each operation is timed on its own (\`process.hrtime\`). Rounds interleave the three implementations; ${results.warm.rounds} rounds. ops/s is the`,
        "timed work's throughput, p50/p99 the per-operation latency; \"time per op vs bare\" divides the mean time per operation by the floor's in",
        "the same round (1.00 = as fast as bare AES-GCM), \"p50 vs bare\" the median latencies (less moved by other processes' interruptions);",
        "\"@kms vs ESDK\" divides the ESDK's mean time per operation by ours, round by round.",
      ].join("\n"),
    );
    out.push(warmSection(results.warm));
  }

  if (results.stampede) {
    const s = results.stampede;
    out.push("## 2. Cold path and stampede");
    out.push(
      [
        `N concurrent first requests (1 KiB) for one tenant, each side starting cold (a new client), against the AWS KMS emulator of`,
        `\`@kms/testkit\` (AWS's JSON protocol, SigV4 verified, the real \`@aws-sdk/client-kms\`) with ${s.latencyMs} ms of latency injected into every`,
        "request. The emulator runs in a process of its own and its request log counts the KMS calls. @kms: `createKms` with the `awsKms`",
        "provider. ESDK: `KmsKeyringNode` behind `NodeCachingMaterialsManager`, SDK defaults otherwise (its HTTP agent keeps 50 sockets,",
        "so the rest of its requests queue; the SDK warns about it). Decrypt: N concurrent decrypts of one envelope written beforehand by",
        "another client, up to 1,000 (10,000 cold ESDK decrypts take about half a minute a run). " +
          `${s.runs} runs each; the time is from the first request to the last answer.`,
      ].join("\n"),
    );
    out.push(stampedeSection(s));
  }

  if (results.cache) {
    const c = results.cache;
    const rate = primaryRate(results);
    out.push("## 3. Cache effectiveness");
    out.push(
      [
        `${fmtInt(c.tenants)} tenants; ${fmtInt(c.operations)} encrypts whose tenants are drawn from a Zipf distribution (s = ${c.zipfS}, seeded), through`,
        "`createKms` (an in-memory provider that counts its calls; the embedded `local` one reads its key file on every call) with the",
        "encrypt-cache capacity shown and every other setting at its default (max age 5 minutes,",
        "10 % jitter). The client's clock is simulated: it moves by 1/rate seconds per request, so entries expire as they would at that traffic;",
        "the frozen-clock row isolates what the capacity alone does. Every cache miss is one KMS call (`GenerateDataKey`).",
        "",
        `- **hit rate, whole run** counts the cold start (each tenant's first request is a miss); **steady state** leaves out the first`,
        `  ${fmtInt(c.warmupOps)} requests.`,
        `- **KMS request cost / month** is what the steady-state calls per request cost at AWS's list price (${fmtUsd(c.pricePer10k)} per 10,000 requests,`,
        `  [COST.md](COST.md)) if that traffic ran for a whole month (30 days: requests = rate × ${fmtInt(SECONDS_PER_MONTH)} s) on **one** instance;`,
        "  multiply by the instances that each keep their own cache. The free allowance (20,000 requests a month) is left out.",
        `- The capacity sweep runs at ${fmtInt(rate)} requests/s: ${fmtInt(c.operations)} requests then span ${fmtNum(c.operations / rate / 60)} simulated minutes, several`,
        "  cache lifetimes, so refreshes at max age are counted, not only capacity misses.",
        "- Each row is the median over the seeds shown (independent request sequences); the default capacity's rows, which decide a",
        "  target, run three.",
      ].join("\n"),
    );
    out.push(cacheSection(c, rate));
    out.push(
      [
        "How to read it: below the tenant count, capacity misses dominate (an LRU over Zipf traffic keeps the hot tenants); at the default",
        "capacity every tenant fits (so a larger capacity would change nothing here), and what is left is the first request of each tenant and, at real traffic, one refresh per tenant per max",
        "age. That refresh term depends on each tenant's request rate, not on the capacity: the long tail of a Zipf distribution sees its keys",
        "expire between requests. A longer `cache.encrypt.maxAgeMs`, or the shared Redis tier across instances, is what lowers it.",
      ].join("\n"),
    );
  }

  if (results.server) {
    const s = results.server;
    out.push("## 4. Reference server");
    out.push(
      [
        `\`apps/server\` (\`dist/main.js\`, local provider, warm cache, request logging on as by default) under autocannon: ${s.connections} connections,`,
        `1 KiB payloads, 1 s of untimed load on each route first, then ${s.seconds} s per measurement, median of ${s.rounds} interleaved rounds (the`,
        "server's own `pnpm --filter @kms/server bench` runs 6 s × 5 rounds; fewer and shorter here to keep the whole run within 10 minutes).",
        "The no-op route is the same server parsing the same body and checking the same tenant token without encrypting: \"vs no-op\" is the",
        "median of the rounds' request-rate ratios. autocannon runs in the harness's process, on the same 2 cores as the server.",
      ].join("\n"),
    );
    out.push(
      table(
        ["route", "req/s", "p50 ms", "p99 ms", "vs no-op (range over rounds)"],
        s.cases.map((c) => [c.name, fmtInt(c.rps), fmtNum(c.p50Ms), fmtNum(c.p99Ms), c.vsNoopRange ? `${fmtPct(c.vsNoop, 0)} (${fmtPct(c.vsNoopRange[0], 0)}–${fmtPct(c.vsNoopRange[1], 0)})` : fmtPct(c.vsNoop, 0)]),
      ),
    );
  }

  if (results.memory) {
    const mem = results.memory;
    const { growth } = memoryVerdict(mem);
    out.push("## 5. Memory");
    out.push(
      [
        `${fmtInt(mem.operations)} operations over ${fmtInt(mem.tenants)} tenants (uniform), alternately an encrypt of 1 KiB and the decrypt of its envelope,`,
        "through `createKms` (the in-memory provider of scenario 3, default caches: 10,000 entries per side), in a process of its own run",
        "with `--expose-gc`. The clock is simulated at 1,000 requests/s, so data keys expire and are replaced throughout (both caches keep",
        `taking new entries). Memory is read after a forced GC. Heap ${growth}.`,
        "",
        rssText(mem),
      ].join("\n"),
    );
    out.push(memorySection(mem));
  }

  out.push("## How these figures are made");
  out.push(
    [
      "- One command, `pnpm bench` at the root: it builds `@kms/bench` and what it depends on, then runs `bench/src/run.mjs`, which runs each",
      "  scenario in a fresh Node.js process (scenario 4 starts the server as its own process) and writes this page and the chart.",
      "- Medians: each figure is the median of the rounds or runs stated in its section; ratios are medians of each round's own ratio",
      "  (implementations measured back to back in a round share the machine's state).",
      "- The machine is shared and has 2 cores: absolute figures move by 10–20 % between runs; the ratios move less. Compare runs on one machine.",
      "- Nothing here reaches a cloud: the KMS is the `@kms/testkit` AWS KMS emulator (scenario 2), the embedded local provider (1, 4) or",
      "  an in-memory provider (3, 5), so KMS latency is injected, not measured.",
    ].join("\n"),
  );
  return `${out.join("\n\n")}\n`;
}

