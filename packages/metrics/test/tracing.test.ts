// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { type IncomingMessage, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@jest/globals";
import { awsKms } from "@kms/aws";
import { type KmsClient, createKms } from "@kms/core";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { setupTracing } from "../src";

const emulator = new AwsKmsEmulator();
const clients: KmsClient[] = [];

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function newKms(): KmsClient {
  const alias = `alias/tracing-${randomUUID()}`;
  emulator.createKey({ alias });
  const { region, endpoint, credentials } = emulator.clientConfig();
  const kms = createKms({
    registry: [awsKms],
    config: { providers: { "aws-kms": { region, endpoint, credentials } }, tenants: { defaultKey: { provider: "aws-kms", keyId: alias } } },
    env: {},
  });
  clients.push(kms);
  return kms;
}

describe("setupTracing", () => {
  it("exports core's spans: lookups with their KMS operation as child, under the app's span, no secrets", async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = setupTracing({ exporter, serviceName: "billing" });
    try {
      const kms = newKms();
      const plaintext = "4111 1111 1111 1111";
      const request = trace.getTracer("app").startSpan("POST /v1/tenants/:id/encrypt");
      const envelope = await context.with(trace.setSpan(context.active(), request), () => kms.encrypt("tenant-secretive", plaintext, { ssn: "123-45-6789" }));
      request.end();
      await kms.decrypt("tenant-secretive", envelope, { ssn: "123-45-6789" });
      await kms.decrypt("tenant-secretive", envelope, { ssn: "123-45-6789" }); // a hit outside any trace: no span
      const read = trace.getTracer("app").startSpan("GET /records/:id");
      await context.with(trace.setSpan(context.active(), read), () => kms.decrypt("tenant-secretive", envelope, { ssn: "123-45-6789" }));
      read.end();

      const spans = exporter.getFinishedSpans();
      const nameOf = new Map(spans.map((s) => [s.spanContext().spanId, s.name]));
      expect(spans.map((s) => [s.name, s.parentSpanContext === undefined ? "-" : nameOf.get(s.parentSpanContext.spanId), s.attributes])).toEqual([
        ["kms.generateDataKey", "kms.cache.lookup", { "kms.provider": "aws-kms", "kms.operation": "generateDataKey", "kms.outcome": "success", "kms.attempts": 1 }],
        ["kms.cache.lookup", "POST /v1/tenants/:id/encrypt", { "kms.cache.side": "encrypt", "kms.provider": "aws-kms", "kms.cache.hit": false }],
        ["POST /v1/tenants/:id/encrypt", "-", {}],
        ["kms.unwrapDataKey", "kms.cache.lookup", { "kms.provider": "aws-kms", "kms.operation": "unwrapDataKey", "kms.outcome": "success", "kms.attempts": 1 }],
        ["kms.cache.lookup", "-", { "kms.cache.side": "decrypt", "kms.provider": "aws-kms", "kms.cache.hit": false }],
        ["kms.cache.lookup", "GET /records/:id", { "kms.cache.side": "decrypt", "kms.provider": "aws-kms", "kms.cache.hit": true }],
        ["GET /records/:id", "-", {}],
      ]);
      // Children end inside their parents, on the same trace.
      const [kmsCall, lookup, root] = spans;
      expect(kmsCall!.spanContext().traceId).toBe(root!.spanContext().traceId);
      expect(lookup!.spanContext().traceId).toBe(root!.spanContext().traceId);
      expect(spans.every((s) => s.resource.attributes["service.name"] === "billing")).toBe(true);

      const recorded = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
      for (const secret of ["tenant-secretive", "4111", "123-45-6789", "alias/tracing", envelope.toString("base64").slice(0, 12)]) {
        expect(recorded).not.toContain(secret);
      }
    } finally {
      await tracing.shutdown();
    }
    // After shutdown nothing is recorded any more.
    expect(trace.getTracer("x").startSpan("after").isRecording()).toBe(false);
  });

  // The OTLP exporter loads node:http with a dynamic import(), which jest's module sandbox cannot run:
  // this case runs the built package (turbo builds it before the tests) in a plain Node process.
  it("sends spans over OTLP/HTTP to the configured endpoint", async () => {
    const received: { url: string; body: string }[] = [];
    const collector = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({ url: req.url ?? "", body: Buffer.concat(chunks).toString("utf8") });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as AddressInfo;
    const dir = mkdtempSync(join(tmpdir(), "kms-otlp-"));
    const script = `
      const { createKms, localKms } = require("@kms/core");
      const { setupTracing } = require("./dist/index.js");
      (async () => {
        const tracing = setupTracing({ otlpUrl: process.env.OTLP_URL, serviceName: "billing" });
        const kms = createKms({
          registry: [localKms],
          config: { providers: { local: { path: process.env.KEYS } }, tenants: { defaultKey: { provider: "local", keyId: "app" } } },
          env: {},
        });
        await kms.encrypt("tenant-a", "exported");
        await kms.close();
        await tracing.shutdown(); // flushes the batch
      })().catch((error) => { console.error(error); process.exit(1); });`;
    try {
      const child = spawn(process.execPath, ["-e", script], {
        cwd: join(__dirname, ".."),
        env: { ...process.env, OTLP_URL: `http://127.0.0.1:${port}/v1/traces`, KEYS: join(dir, "keys.json") },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect(stderr).toBe("");
      expect(code).toBe(0);
    } finally {
      await new Promise<void>((resolve) => collector.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
    expect(received.map((r) => r.url)).toEqual(["/v1/traces"]);
    const body = JSON.parse(received[0]!.body) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] };
    const names = body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((span) => span.name)));
    expect(names.sort()).toEqual(["kms.cache.lookup", "kms.generateDataKey"]);
    expect(received[0]!.body).toContain('"billing"');
    expect(received[0]!.body).not.toContain("tenant-a");
  });

  it("refuses an exporter that is not one", () => {
    expect(() => setupTracing({ exporter: "zipkin" as never })).toThrow(TypeError);
    expect(() => setupTracing({ exporter: {} as never })).toThrow(TypeError);
  });
});
