/**
 * Cache lookups and KMS operations as OpenTelemetry spans: names, parent/child structure, attributes,
 * and no tenant id, key, plaintext or context value in any of them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { isKmsError } from "../src/errors";
import { fakeKms } from "./support/kms";

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(tracerProvider);
});

afterAll(async () => {
  await tracerProvider.shutdown();
  trace.disable();
  context.disable();
});

beforeEach(() => exporter.reset());

/** Each finished span as `name` plus its attributes, with `parent` naming its parent span (or "-"). */
function tree(): { name: string; parent: string; attributes: ReadableSpan["attributes"]; error?: string }[] {
  const spans = exporter.getFinishedSpans();
  const nameOf = new Map(spans.map((s) => [s.spanContext().spanId, s.name]));
  return spans.map((s) => ({
    name: s.name,
    parent: s.parentSpanContext === undefined ? "-" : (nameOf.get(s.parentSpanContext.spanId) ?? "(outside)"),
    attributes: s.attributes,
    ...(s.status.code === SpanStatusCode.ERROR ? { error: s.status.message } : {}),
  }));
}

describe("spans", () => {
  it("a cold encrypt is a lookup miss with the KMS operation as its child; a warm one is a hit span only inside a trace", async () => {
    const { kms } = fakeKms();
    await kms.encrypt("tenant-a", "first");
    await kms.encrypt("tenant-a", "second, outside any trace: no span");
    const request = trace.getTracer("app").startSpan("POST /encrypt");
    await context.with(trace.setSpan(context.active(), request), () => kms.encrypt("tenant-a", "third, in a request"));
    request.end();
    expect(tree()).toEqual([
      {
        name: "kms.generateDataKey",
        parent: "kms.cache.lookup",
        attributes: { "kms.provider": "fake", "kms.operation": "generateDataKey", "kms.outcome": "success", "kms.attempts": 1 },
      },
      { name: "kms.cache.lookup", parent: "-", attributes: { "kms.cache.side": "encrypt", "kms.provider": "fake", "kms.cache.hit": false } },
      { name: "kms.cache.lookup", parent: "POST /encrypt", attributes: { "kms.cache.side": "encrypt", "kms.provider": "fake", "kms.cache.hit": true } },
      { name: "POST /encrypt", parent: "-", attributes: {} },
    ]);
  });

  it("nests under the application's own span, and marks coalesced misses (one KMS call)", async () => {
    const { kms, provider } = fakeKms();
    const envelope = await kms.encrypt("tenant-a", "x");
    exporter.reset();
    const request = trace.getTracer("app").startSpan("POST /decrypt");
    await context.with(trace.setSpan(context.active(), request), () => Promise.all([kms.decrypt("tenant-a", envelope), kms.decrypt("tenant-a", envelope)]));
    request.end();
    expect(provider.calls.unwrapDataKey).toBe(1);
    expect(tree()).toEqual([
      expect.objectContaining({ name: "kms.unwrapDataKey", parent: "kms.cache.lookup" }),
      { name: "kms.cache.lookup", parent: "POST /decrypt", attributes: { "kms.cache.side": "decrypt", "kms.provider": "fake", "kms.cache.hit": false } },
      {
        name: "kms.cache.lookup",
        parent: "POST /decrypt",
        attributes: { "kms.cache.side": "decrypt", "kms.provider": "fake", "kms.cache.hit": false, "kms.cache.coalesced": true },
      },
      expect.objectContaining({ name: "POST /decrypt", parent: "-" }),
    ]);
  });

  it("records a failed lookup's error code, and a stale hit served while the KMS is down", async () => {
    const { kms, provider, clock } = fakeKms({ cache: { encrypt: { maxAgeMs: 1000 }, decrypt: { maxAgeMs: 1000 }, hardMaxAgeMs: 5000, jitter: 0 } });
    await kms.encrypt("tenant-a", "x");
    provider.fail("KMS_ACCESS_DENIED", 1);
    await expect(kms.encrypt("tenant-b", "x")).rejects.toMatchObject({ code: "KMS_ACCESS_DENIED" });
    provider.fail("KMS_UNAVAILABLE");
    await clock.advance(1000);
    await kms.encrypt("tenant-a", "served stale");
    const lookups = tree().filter((s) => s.name === "kms.cache.lookup");
    expect(lookups.slice(1)).toEqual([
      {
        name: "kms.cache.lookup",
        parent: "-",
        attributes: { "kms.cache.side": "encrypt", "kms.provider": "fake", "kms.cache.hit": false, "kms.error.code": "KMS_ACCESS_DENIED" },
        error: "KMS_ACCESS_DENIED",
      },
      {
        name: "kms.cache.lookup",
        parent: "-",
        attributes: { "kms.cache.side": "encrypt", "kms.provider": "fake", "kms.cache.hit": false, "kms.cache.stale": true },
      },
    ]);
  });

  it("carries no tenant id, key material, plaintext or context value", async () => {
    const { kms, provider } = fakeKms();
    const envelope = await kms.encrypt("tenant-secretive", "4111 1111 1111 1111", { ssn: "123-45-6789" });
    await kms.decrypt("tenant-secretive", envelope, { ssn: "123-45-6789" });
    await kms.decrypt("tenant-secretive", envelope, { ssn: "000-00-0000" }).catch((error: unknown) => {
      if (!isKmsError(error)) throw error;
    });
    const recorded = JSON.stringify(exporter.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events })));
    for (const secret of ["tenant-secretive", "4111", "123-45-6789", "000-00-0000", envelope.toString("base64").slice(0, 12)]) {
      expect(recorded).not.toContain(secret);
    }
    for (const key of provider.issuedKeys) for (const encoding of ["hex", "base64"] as const) expect(recorded).not.toContain(key.toString(encoding));
  });
});
