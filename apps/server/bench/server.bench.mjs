// The reference server under load: autocannon against the real server process (dist/main.js) on
// the local provider with a warm cache, 1 KiB payloads, 64 connections. Encrypt and decrypt are
// measured next to a no-op route of the same server (POST /v1/tenants/:tenantId/noop, enabled by
// KMS_BENCH_NOOP_ROUTE), in the same run; rounds are interleaved, each figure is the median over the
// rounds, and each ratio the median of the rounds' own ratios (a round's routes ran back to back, so
// the machine's drift cancels out). Run with `pnpm bench` (after a build).
//
// Environment: BENCH_SECONDS (per measurement, default 6), BENCH_ROUNDS (default 5),
// BENCH_CONNECTIONS (default 64).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";

/* global fetch */

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const PAYLOAD_BYTES = 1024;
/** The issue's target: encrypt serves at least this fraction of the no-op route's requests/s. */
const TARGET_RATIO = 0.6;
const TOKEN = randomBytes(24).toString("base64url");
const TENANT = "bench-tenant";

const dir = mkdtempSync(join(tmpdir(), "kms-server-bench-"));

/** Starts dist/main.js on an ephemeral port; resolves with its URL once it listens. */
function startServer() {
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

function load(url, { method = "GET", path, body }) {
  const headers = body === undefined ? {} : { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  return new Promise((resolve, reject) => {
    autocannon(
      { url: `${url}${path}`, method, headers, body, connections: CONNECTIONS, duration: SECONDS, pipelining: 1 },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];

const { child, url } = await startServer();
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
    { name: "GET /health/live", path: "/health/live" },
  ];
  const runs = new Map(cases.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const result = await load(url, c);
      const failed = result.non2xx + result.errors + result.timeouts;
      if (failed > 0) throw new Error(`${c.name}: ${failed} of ${result.requests.total} requests failed`);
      runs.get(c.name).push(result);
    }
  }

  console.log(`\nreference server, local provider, warm cache: ${CONNECTIONS} connections, ${SECONDS} s per run, median of ${ROUNDS} rounds`);
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}\n`);
  console.log(`${"route".padEnd(26)}${"req/s".padStart(10)}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}${"vs no-op".padStart(10)}`);
  const noopRuns = runs.get(cases[0].name);
  const ratios = {};
  const spreads = {};
  for (const c of cases) {
    const results = runs.get(c.name);
    const rps = median(results.map((r) => r.requests.average));
    const perRound = results.map((r, round) => r.requests.average / noopRuns[round].requests.average);
    ratios[c.name] = median(perRound);
    spreads[c.name] = [Math.min(...perRound), Math.max(...perRound)];
    const p50 = median(results.map((r) => r.latency.p50));
    const p99 = median(results.map((r) => r.latency.p99));
    console.log(
      `${c.name.padEnd(26)}${rps.toFixed(0).padStart(10)}${p50.toFixed(1).padStart(9)}${p99.toFixed(1).padStart(9)}${`${(100 * ratios[c.name]).toFixed(0)} %`.padStart(10)}`,
    );
  }
  const encryptRatio = ratios[cases[1].name];
  const [low, high] = spreads[cases[1].name].map((r) => (100 * r).toFixed(0));
  const verdict = encryptRatio >= TARGET_RATIO ? "met" : "NOT met";
  console.log(`\ntarget: encrypt ≥ ${TARGET_RATIO * 100} % of the no-op route's requests/s: ${verdict} (${(100 * encryptRatio).toFixed(0)} %; rounds ${low} to ${high} %)`);
  if (encryptRatio < TARGET_RATIO) process.exitCode = 1;
} finally {
  child.kill("SIGTERM");
  await new Promise((resolve) => child.once("exit", resolve));
  rmSync(dir, { recursive: true, force: true });
}
