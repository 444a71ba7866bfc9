// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@jest/globals";
import { awsKms } from "@kms/aws";
import { type KmsClient, type KmsConfigInput, type KmsEvent, type KmsEventListener, ManualClock, createKms, isKmsError } from "@kms/core";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { Registry } from "prom-client";
import { registerKmsMetrics } from "../src";

const emulator = new AwsKmsEmulator();
const clients: KmsClient[] = [];

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

afterEach(async () => {
  emulator.clearFaults();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** A client on the AWS emulator (through the real SDK) on a manual clock, and a fresh registry. */
function setUp(resilience: KmsConfigInput["resilience"] = {}) {
  const alias = `alias/metrics-${randomUUID()}`;
  emulator.createKey({ alias });
  const clock = new ManualClock();
  const { region, endpoint, credentials } = emulator.clientConfig();
  const kms = createKms({
    registry: [awsKms],
    config: {
      providers: { "aws-kms": { region, endpoint, credentials } },
      tenants: { defaultKey: { provider: "aws-kms", keyId: alias } },
      resilience,
    },
    env: {},
    clock,
    random: () => 1,
  });
  clients.push(kms);
  const registry = new Registry();
  const metrics = registerKmsMetrics(kms, { registry });
  emulator.resetLog();
  return { kms, clock, registry, metrics };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isKmsError(error)) return error.code;
    throw error;
  }
  throw new Error("expected a KmsError");
}

/** Waits (in real time) until the emulator has answered `n` requests. */
async function answered(n: number): Promise<void> {
  while (emulator.count() < n) await new Promise((resolve) => setTimeout(resolve, 2));
}

/** The exposition's sample lines for `metric`, sorted, without comments. */
async function samples(registry: Registry, metric: string): Promise<string[]> {
  const text = await registry.metrics();
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
    .sort();
}

describe("registerKmsMetrics against AWS KMS (emulated, through the real SDK)", () => {
  it("counts hits, misses, provider calls by outcome, retries, API calls and circuit state exactly", async () => {
    const { kms, clock, registry } = setUp({
      retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
      circuitBreaker: { failureThreshold: 2, resetAfterMs: 1000 },
    });
    // 1. Three encrypts for tenant a: one miss (GenerateDataKey), two hits. Two decrypts: one miss
    //    (Decrypt), one hit.
    const envelope = await kms.encrypt("tenant-a", "one");
    await kms.encrypt("tenant-a", "two");
    await kms.encrypt("tenant-a", "three");
    await kms.decrypt("tenant-a", envelope);
    await kms.decrypt("tenant-a", envelope);
    // 2. Tenant b's first key is throttled twice, then succeeds: 3 attempts, 2 retries.
    emulator.inject("GenerateDataKey", { kind: "throttle" }, { times: 2 });
    const throttled = kms.encrypt("tenant-b", "after the throttling");
    await answered(3);
    await clock.advance(100);
    await answered(4);
    await clock.advance(200);
    await throttled;
    // 3. An outage (503): tenant c's first attempt fails, its retry fails too and opens the circuit
    //    (threshold 2), so it ends as KMS_CIRCUIT_OPEN; tenant d then fails fast, reaching nothing.
    emulator.inject("*", { kind: "serverError", status: 503 });
    const outage = codeOf(kms.encrypt("tenant-c", "x"));
    await answered(6);
    await clock.advance(100);
    expect(await outage).toBe("KMS_CIRCUIT_OPEN");
    expect(await codeOf(kms.encrypt("tenant-d", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect(emulator.counts()).toEqual({ GenerateDataKey: 6, Decrypt: 1 });

    expect(await samples(registry, "kms_cache_requests_total")).toEqual([
      'kms_cache_requests_total{cache="decrypt",result="hit"} 1',
      'kms_cache_requests_total{cache="decrypt",result="miss"} 1',
      'kms_cache_requests_total{cache="encrypt",result="hit"} 2',
      'kms_cache_requests_total{cache="encrypt",result="miss"} 4',
    ]);
    expect(await samples(registry, "kms_provider_requests_total")).toEqual([
      'kms_provider_requests_total{provider="aws-kms",operation="generateDataKey",outcome="error",error_code="KMS_CIRCUIT_OPEN"} 2',
      'kms_provider_requests_total{provider="aws-kms",operation="generateDataKey",outcome="success"} 2',
      'kms_provider_requests_total{provider="aws-kms",operation="unwrapDataKey",outcome="success"} 1',
    ]);
    // Tenant b's attempts 2 and 3, tenant c's attempt 2.
    expect(await samples(registry, "kms_provider_retries_total")).toEqual([
      'kms_provider_retries_total{provider="aws-kms",operation="generateDataKey"} 3',
    ]);
    expect(await samples(registry, "kms_api_calls_total")).toEqual([
      'kms_api_calls_total{provider="aws-kms",operation="generateDataKey"} 6',
      'kms_api_calls_total{provider="aws-kms",operation="unwrapDataKey"} 1',
    ]);
    expect(await samples(registry, "kms_circuit_breaker_state")).toEqual(['kms_circuit_breaker_state{provider="aws-kms"} 2']);
    expect(await samples(registry, "kms_cache_entries")).toEqual([
      'kms_cache_entries{cache="decrypt"} 1',
      'kms_cache_entries{cache="encrypt"} 2',
    ]);
    expect(await samples(registry, "kms_bulkhead_queue_depth")).toEqual(['kms_bulkhead_queue_depth{provider="aws-kms"} 0']);
    expect(await samples(registry, "kms_bulkhead_rejections_total")).toEqual([]);
    // Three fresh hits were timed. Provider durations come from the manual clock: b waited 100 + 200 ms
    // of backoff, c 100 ms.
    expect(await samples(registry, "kms_cache_lookup_duration_seconds_count")).toEqual([
      'kms_cache_lookup_duration_seconds_count{cache="decrypt"} 1',
      'kms_cache_lookup_duration_seconds_count{cache="encrypt"} 2',
    ]);
    expect(await samples(registry, "kms_provider_request_duration_seconds_sum")).toEqual([
      'kms_provider_request_duration_seconds_sum{provider="aws-kms",operation="generateDataKey"} 0.4',
      'kms_provider_request_duration_seconds_sum{provider="aws-kms",operation="unwrapDataKey"} 0',
    ]);

    // The circuit closes after recovery: the gauge follows the client's state at scrape time.
    emulator.clearFaults();
    await clock.advance(1000);
    expect(await samples(registry, "kms_circuit_breaker_state")).toEqual(['kms_circuit_breaker_state{provider="aws-kms"} 1']);
    await kms.encrypt("tenant-f", "back");
    expect(await samples(registry, "kms_circuit_breaker_state")).toEqual(['kms_circuit_breaker_state{provider="aws-kms"} 0']);
  });

  it("writes an exposition promtool accepts (check metrics)", async () => {
    const { kms, registry } = setUp();
    await kms.decrypt("tenant-a", await kms.encrypt("tenant-a", "x"));
    await kms.encrypt("tenant-a", "y");
    const run = spawnSync("promtool", ["check", "metrics"], { input: await registry.metrics(), encoding: "utf8" });
    expect(run.error).toBeUndefined();
    expect(`${run.stdout}${run.stderr}`).toBe("");
    expect(run.status).toBe(0);
  });

  it("never puts a tenant id, key id, plaintext or key material in a metric by default", async () => {
    const { kms, registry } = setUp();
    const plaintext = "4111 1111 1111 1111";
    const envelope = await kms.encrypt("tenant-secretive", plaintext, { record: "r-123" });
    await kms.decrypt("tenant-secretive", envelope, { record: "r-123" });
    const text = await registry.metrics();
    for (const value of ["tenant-secretive", "4111", "r-123", "alias/metrics", envelope.toString("base64").slice(0, 16)]) expect(text).not.toContain(value);
  });
});

describe("registerKmsMetrics options", () => {
  /** A source of events and state without a KMS: the metrics only read these three. */
  function fakeSource() {
    let listener: KmsEventListener = () => {};
    return {
      emit: (event: KmsEvent) => listener(event),
      onEvent(fn: KmsEventListener) {
        listener = fn;
        return () => {
          listener = () => {};
        };
      },
      cacheStats: () => ({ encrypt: { entries: 0, hits: 0, misses: 0 }, decrypt: { entries: 0, hits: 0, misses: 0 } }),
      providerStats: () => ({}),
    };
  }

  it("labels cache requests by tenant only when asked, for at most maxTenants tenants", async () => {
    const source = fakeSource();
    const registry = new Registry();
    registerKmsMetrics(source, { registry, tenantLabel: { maxTenants: 2 } });
    for (const tenantId of ["a", "b", "c", "d", "a"]) source.emit({ type: "cache.miss", side: "encrypt", tenantId, provider: "p", coalesced: false });
    expect(await samples(registry, "kms_cache_requests_total")).toEqual([
      'kms_cache_requests_total{cache="encrypt",result="miss",tenant="a"} 2',
      'kms_cache_requests_total{cache="encrypt",result="miss",tenant="b"} 1',
      'kms_cache_requests_total{cache="encrypt",result="miss",tenant="other"} 2',
    ]);
  });

  it("counts rotations by outcome and bulkhead rejections from operation events", async () => {
    const source = fakeSource();
    const registry = new Registry();
    registerKmsMetrics(source, { registry });
    const op = { type: "kms.operation", provider: "vault", attempts: 1, durationMs: 5 } as const;
    source.emit({ ...op, operation: "rotateKey", outcome: "success" });
    source.emit({ ...op, operation: "rotateKey", outcome: "error", code: "KMS_ACCESS_DENIED" });
    source.emit({ ...op, operation: "unwrapDataKey", outcome: "error", code: "KMS_OVERLOADED", attempts: 0, durationMs: 0 });
    expect(await samples(registry, "kms_rotation_runs_total")).toEqual([
      'kms_rotation_runs_total{provider="vault",outcome="failure"} 1',
      'kms_rotation_runs_total{provider="vault",outcome="success"} 1',
    ]);
    expect(await samples(registry, "kms_bulkhead_rejections_total")).toEqual(['kms_bulkhead_rejections_total{provider="vault"} 1']);
  });

  it("observe() counts events from another source (the rotation scheduler's rotations)", async () => {
    const registry = new Registry();
    const metrics = registerKmsMetrics(fakeSource(), { registry });
    metrics.observe({ type: "kms.operation", provider: "aws-kms", operation: "rotateKey", outcome: "success", attempts: 1, durationMs: 40 });
    expect(await samples(registry, "kms_rotation_runs_total")).toEqual(['kms_rotation_runs_total{provider="aws-kms",outcome="success"} 1']);
  });

  it("reads key ages from a rotation source at scrape time, and registers no key-age gauge without one", async () => {
    const source = fakeSource();
    const without = new Registry();
    registerKmsMetrics(source, { registry: without });
    expect(await samples(without, "kms_keys_rotation_overdue")).toEqual([]);
    const registry = new Registry();
    let ages = { oldestKeyAgeSeconds: 86_400, overdue: 0 };
    registerKmsMetrics(fakeSource(), { registry, rotation: { keyAges: async () => ages } });
    expect(await samples(registry, "kms_keys_rotation_overdue")).toEqual(["kms_keys_rotation_overdue 0"]);
    ages = { oldestKeyAgeSeconds: 91 * 86_400, overdue: 3 };
    expect(await samples(registry, "kms_keys_rotation_overdue")).toEqual(["kms_keys_rotation_overdue 3"]);
    expect(await samples(registry, "kms_key_oldest_age_seconds")).toEqual(["kms_key_oldest_age_seconds 7862400"]);
  });

  it("counts shared-tier lookups by cache and outcome, and integrity failures by tier (local when the event names none)", async () => {
    const source = fakeSource();
    const registry = new Registry();
    registerKmsMetrics(source, { registry });
    for (const outcome of ["miss", "hit", "hit", "integrity-failure"] as const) source.emit({ type: "cache.shared.lookup", side: "encrypt", outcome });
    source.emit({ type: "cache.shared.lookup", side: "decrypt", outcome: "hit" });
    // The tier's integrity failure comes with its own event; an unwrapped key not matching its
    // envelope (in-process) names tier local, and events from before tiers existed name none.
    source.emit({ type: "cache.integrity-failure", side: "encrypt", provider: "aws-kms", tier: "shared" });
    source.emit({ type: "cache.integrity-failure", side: "decrypt", provider: "aws-kms", tier: "local" });
    source.emit({ type: "cache.integrity-failure", side: "decrypt", provider: "aws-kms" });
    expect(await samples(registry, "kms_shared_cache_requests_total")).toEqual([
      'kms_shared_cache_requests_total{cache="decrypt",outcome="hit"} 1',
      'kms_shared_cache_requests_total{cache="encrypt",outcome="hit"} 2',
      'kms_shared_cache_requests_total{cache="encrypt",outcome="integrity-failure"} 1',
      'kms_shared_cache_requests_total{cache="encrypt",outcome="miss"} 1',
    ]);
    expect(await samples(registry, "kms_cache_integrity_failures_total")).toEqual([
      'kms_cache_integrity_failures_total{cache="decrypt",tier="local"} 2',
      'kms_cache_integrity_failures_total{cache="encrypt",tier="shared"} 1',
    ]);
  });

  it("kms_shared_cache_up: no sample without a sign of a shared tier, 1 with sharedCache, then follows the tier's state events", async () => {
    // No shared tier (or not told, and no event yet): no sample, so `== 0` alerts cannot fire.
    const without = fakeSource();
    const none = new Registry();
    registerKmsMetrics(without, { registry: none });
    expect(await samples(none, "kms_shared_cache_up")).toEqual([]);
    without.emit({ type: "cache.hit", side: "encrypt", tenantId: "a", provider: "p", stale: false });
    expect(await samples(none, "kms_shared_cache_up")).toEqual([]);
    // Not told, but the tier answers a lookup: it is up.
    without.emit({ type: "cache.shared.lookup", side: "decrypt", outcome: "miss" });
    expect(await samples(none, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 1"]);

    // Told: 1 from registration (a tier starts up), 0 while degraded, 1 again when it recovers.
    const source = fakeSource();
    const registry = new Registry();
    registerKmsMetrics(source, { registry, sharedCache: true });
    expect(await samples(registry, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 1"]);
    source.emit({ type: "cache.shared.state", from: "up", to: "degraded" });
    expect(await samples(registry, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 0"]);
    // A lookup answered before the failure but reported after it does not hide the degradation.
    source.emit({ type: "cache.shared.lookup", side: "encrypt", outcome: "hit" });
    expect(await samples(registry, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 0"]);
    source.emit({ type: "cache.shared.state", from: "degraded", to: "up" });
    expect(await samples(registry, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 1"]);

    // Not told, and the first sign is a failure: 0.
    const late = fakeSource();
    const lateRegistry = new Registry();
    registerKmsMetrics(late, { registry: lateRegistry });
    late.emit({ type: "cache.shared.state", from: "up", to: "degraded" });
    expect(await samples(lateRegistry, "kms_shared_cache_up")).toEqual(["kms_shared_cache_up 0"]);
  });

  it("unregister() stops counting and removes exactly its own metrics", async () => {
    const source = fakeSource();
    const registry = new Registry();
    const metrics = registerKmsMetrics(source, { registry, prefix: "app_kms_" });
    const other = registerKmsMetrics(fakeSource(), { registry });
    metrics.unregister();
    expect(registry.getMetricsAsArray().every((m) => m.name.startsWith("kms_"))).toBe(true);
    expect(registry.getMetricsAsArray()).toHaveLength(16);
    source.emit({ type: "cache.miss", side: "encrypt", tenantId: "a", provider: "p", coalesced: false });
    other.unregister();
    expect(registry.getMetricsAsArray()).toEqual([]);
  });

  it("refuses a bad tenantLabel.maxTenants or prefix", () => {
    expect(() => registerKmsMetrics(fakeSource(), { registry: new Registry(), tenantLabel: { maxTenants: 0 } })).toThrow(RangeError);
    expect(() => registerKmsMetrics(fakeSource(), { registry: new Registry(), prefix: "kms-" })).toThrow(RangeError);
  });
});
