// What observability costs on the hot path: warm-cache kms.encrypt / kms.decrypt of 1 KiB, bare vs
// with `registerKmsMetrics` and a registered OpenTelemetry SDK (no exporter). Target: the encrypt
// path within 1.2× of bare.
//
//   cd packages/metrics && pnpm build && node bench/overhead.bench.mjs
//
// The tracer provider is process-wide, so each round measures the bare client with no provider
// registered, then registers one and measures the observed client; each case keeps its best round
// (BENCH_ROUNDS, default 9).
import crypto from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { measure, printTable } from "../../core/bench/harness.mjs";

const require = createRequire(import.meta.url);
const core = require("@kms/core");
const { registerKmsMetrics } = require("../dist/index.js");
const { Registry } = require("prom-client");
const { trace, context } = require("@opentelemetry/api");
const { NodeTracerProvider } = require("@opentelemetry/sdk-trace-node");

console.log(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "unknown cpu"}`);

const dir = mkdtempSync(join(os.tmpdir(), "kms-bench-"));
const newKms = () =>
  core.createKms({
    registry: [core.localKms],
    config: { providers: { local: { path: join(dir, "keys.json") } }, tenants: { defaultKey: { provider: "local", keyId: "bench" } } },
  });
const bare = newKms();
const observed = newKms();
registerKmsMetrics(observed, { registry: new Registry() });
const tracerProvider = new NodeTracerProvider();
const tracing = (on) => {
  if (on) tracerProvider.register();
  else {
    trace.disable();
    context.disable();
  }
};

const contextPairs = { purpose: "bench", region: "eu-west-1" };
const plaintext = crypto.randomBytes(1024);
const ops = 20_000;
const rounds = Number(process.env.BENCH_ROUNDS ?? 9);

try {
  const clients = [
    { label: "bare", kms: bare, traced: false },
    { label: "metrics + tracing", kms: observed, traced: true },
  ];
  const best = new Map();
  for (const c of clients) c.envelope = await c.kms.encrypt("tenant-a", plaintext, contextPairs);
  for (let r = 0; r < rounds; r++) {
    for (const c of clients) {
      tracing(c.traced);
      for (const [op, fn] of [
        ["encrypt", () => c.kms.encrypt("tenant-a", plaintext, contextPairs)],
        ["decrypt", () => c.kms.decrypt("tenant-a", c.envelope, contextPairs)],
      ]) {
        const name = `${op}, ${c.label}`;
        const result = await measure(name, fn, ops);
        if (!(best.get(name)?.meanUs < result.meanUs)) best.set(name, { ...result, ...(c.traced ? { baseline: `${op}, bare` } : {}) });
      }
    }
  }
  tracing(false);
  const results = [...best.values()];
  printTable("warm cache, 1 KiB: bare vs metrics + tracing registered (no exporter)", results);
  const ratio = (op) => best.get(`${op}, metrics + tracing`).meanUs / best.get(`${op}, bare`).meanUs;
  console.log(`\nencrypt ${ratio("encrypt").toFixed(2)}× (target ≤ 1.20×), decrypt ${ratio("decrypt").toFixed(2)}×`);
} finally {
  await tracerProvider.shutdown();
  await bare.close();
  await observed.close();
  rmSync(dir, { recursive: true, force: true });
}
