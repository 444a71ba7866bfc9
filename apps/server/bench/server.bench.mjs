// The reference server under load: autocannon against the real server process (dist/main.js) on
// the local provider with a warm cache, 1 KiB payloads, 64 connections. Encrypt and decrypt are
// measured next to a no-op route of the same server (POST /v1/tenants/:tenantId/noop, enabled by
// KMS_BENCH_NOOP_ROUTE), in the same run; rounds are interleaved, each figure is the median over the
// rounds, and each ratio the median of the rounds' own ratios (a round's routes ran back to back, so
// the machine's drift cancels out). Run with `pnpm bench` (after a build).
//
// Environment: BENCH_SECONDS (per measurement, default 6), BENCH_ROUNDS (default 5),
// BENCH_CONNECTIONS (default 64).
//
// Also importable: `runServerBench({ seconds, rounds, connections, log })` resolves with the figures
// (the @kms/bench harness, bench/, puts them in docs/BENCHMARKS.md).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";

/* global fetch */

const PAYLOAD_BYTES = 1024;
/** The issue's target: encrypt serves at least this fraction of the no-op route's requests/s. */
const TARGET_RATIO = 0.6;
const TOKEN = randomBytes(24).toString("base64url");
const TENANT = "bench-tenant";

/** Starts dist/main.js on an ephemeral port; resolves with its URL once it listens. */
function startServer(dir) {
  const child = spawn(process.execPath, [join(import.meta.dirname, "..", "dist", "main.js")], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "development",
      PORT: "0",
      KMS_LOCAL_KEY_STORE: join(dir, "local-keys.json"),
      KMS_EVIDENCE_FILE: join(dir, "evidence.jsonl"),
      KMS_TENANT_TOKENS: JSON.stringify({ [TENANT]: TOKEN }),
      KMS_ADMIN_TOKEN: randomBytes(24).toString("base64url"),
      // The server's default: every request is logged (to a pipe this script drains).
      LOG_LEVEL: "info",
      KMS_BENCH_NOOP_ROUTE: "true",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let buffered = "";
    const onData = (chunk) => {
      buffered += chunk;
      for (const line of buffered.split("\n")) {
        const match = /"msg":"listening on (http:\/\/127\.0\.0\.1:\d+)"/.exec(line);
        if (match) {
          child.stdout.off("data", onData);
          child.stdout.resume(); // keep draining the access log
          resolve({ child, url: match[1] });
          return;
        }
      }
      buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the server exited (${code}) before listening`)));
  });
}

async function post(url, path, body) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

function load(url, { method = "GET", path, body }, { connections, seconds }) {
  const headers = body === undefined ? {} : { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  return new Promise((resolve, reject) => {
    autocannon(
      { url: `${url}${path}`, method, headers, body, connections, duration: seconds, pipelining: 1 },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * Runs the benchmark and resolves with { seconds, rounds, connections, cases: [{ name, rps, p50Ms,
 * p99Ms, vsNoop, vsNoopRange }], targetRatio, encryptRatio }. `withHealthRoute: false` skips the
 * GET /health/live case; `warmupSeconds` puts untimed load on each route first; `log` receives the
 * printed report.
 */
export async function runServerBench({
  seconds = Number(process.env.BENCH_SECONDS ?? 6),
  rounds = Number(process.env.BENCH_ROUNDS ?? 5),
  connections = Number(process.env.BENCH_CONNECTIONS ?? 64),
  withHealthRoute = true,
  warmupSeconds = 0,
  log = console.log,
} = {}) {
  const dir = mkdtempSync(join(tmpdir(), "kms-server-bench-"));
  const { child, url } = await startServer(dir);
  try {
    const plaintext = randomBytes(PAYLOAD_BYTES).toString("base64");
    const context = { table: "notes" };
    // Warm both caches: the encrypt key of (tenant, context) and the decrypt entry of its data key.
    const { ciphertext } = await post(url, `/v1/tenants/${TENANT}/encrypt`, { plaintext, context });
    const decrypted = await post(url, `/v1/tenants/${TENANT}/decrypt`, { ciphertext, context });
    if (decrypted.plaintext !== plaintext) throw new Error("the warm-up round trip did not return the plaintext");

    const cases = [
      { name: "no-op (POST …/noop)", method: "POST", path: `/v1/tenants/${TENANT}/noop`, body: JSON.stringify({ plaintext, context }) },
      { name: "encrypt 1 KiB", method: "POST", path: `/v1/tenants/${TENANT}/encrypt`, body: JSON.stringify({ plaintext, context }) },
      { name: "decrypt 1 KiB", method: "POST", path: `/v1/tenants/${TENANT}/decrypt`, body: JSON.stringify({ ciphertext, context }) },
      ...(withHealthRoute ? [{ name: "GET /health/live", path: "/health/live" }] : []),
    ];
    // Optional untimed load on every route first, so that no route's first round pays for the JIT.
    if (warmupSeconds > 0) for (const c of cases) await load(url, c, { connections, seconds: warmupSeconds });
    const runs = new Map(cases.map((c) => [c.name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) {
        const result = await load(url, c, { connections, seconds });
        const failed = result.non2xx + result.errors + result.timeouts;
        if (failed > 0) throw new Error(`${c.name}: ${failed} of ${result.requests.total} requests failed`);
        runs.get(c.name).push(result);
      }
    }

    log(`\nreference server, local provider, warm cache: ${connections} connections, ${seconds} s per run, median of ${rounds} rounds`);
    log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}\n`);
    log(`${"route".padEnd(26)}${"req/s".padStart(10)}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}${"vs no-op".padStart(10)}`);
    const noopRuns = runs.get(cases[0].name);
    const ratios = {};
    const spreads = {};
    const figures = [];
    for (const c of cases) {
      const results = runs.get(c.name);
      const rps = median(results.map((r) => r.requests.average));
      const perRound = results.map((r, round) => r.requests.average / noopRuns[round].requests.average);
      ratios[c.name] = median(perRound);
      spreads[c.name] = [Math.min(...perRound), Math.max(...perRound)];
      const p50 = median(results.map((r) => r.latency.p50));
      const p99 = median(results.map((r) => r.latency.p99));
      figures.push({ name: c.name, rps, p50Ms: p50, p99Ms: p99, vsNoop: ratios[c.name], vsNoopRange: spreads[c.name] });
      log(
        `${c.name.padEnd(26)}${rps.toFixed(0).padStart(10)}${p50.toFixed(1).padStart(9)}${p99.toFixed(1).padStart(9)}${`${(100 * ratios[c.name]).toFixed(0)} %`.padStart(10)}`,
      );
    }
    const encryptRatio = ratios[cases[1].name];
    const [low, high] = spreads[cases[1].name].map((r) => (100 * r).toFixed(0));
    const verdict = encryptRatio >= TARGET_RATIO ? "met" : "NOT met";
    log(`\ntarget: encrypt ≥ ${TARGET_RATIO * 100} % of the no-op route's requests/s: ${verdict} (${(100 * encryptRatio).toFixed(0)} %; rounds ${low} to ${high} %)`);
    return { seconds, rounds, connections, cases: figures, targetRatio: TARGET_RATIO, encryptRatio };
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

// Run as a script (`node bench/server.bench.mjs`), not when imported.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === import.meta.filename) {
  const { encryptRatio } = await runServerBench();
  if (encryptRatio < TARGET_RATIO) process.exitCode = 1;
}
