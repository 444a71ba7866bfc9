import { describe, expect, it } from "@jest/globals";
import { KmsConfigError, ManualClock } from "@kms/core";
import { createRotationScheduler, embeddedLocks, kmsEventOf, type RotationEvent, type RotationSchedulerOptions, type TenantKey } from "../src";
import { DAY_MS, addKey, collect, fakeRotationProvider, memoryEvidenceLog, rotationPairs } from "./scheduler-fakes";

/** Deterministic [0, 1) numbers (mulberry32). */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function setup(overrides: Partial<RotationSchedulerOptions> = {}) {
  const clock = new ManualClock();
  const provider = fakeRotationProvider(clock);
  const evidence = memoryEvidenceLog(clock);
  const events: RotationEvent[] = [];
  const tenants: TenantKey[] = [];
  const scheduler = createRotationScheduler({
    providers: { fake: provider },
    tenants,
    evidence,
    clock,
    random: () => 0.5,
    actor: "scheduler@test",
    onEvent: (event) => events.push(event),
    ...overrides,
  });
  const addTenant = (tenantId: string, ageMs: number, extra: Partial<TenantKey> = {}) => {
    addKey(provider, clock, `key-${tenantId}`, ageMs);
    tenants.push({ tenantId, provider: "fake", keyId: `key-${tenantId}`, ...extra });
  };
  return { clock, provider, evidence, events, tenants, scheduler, addTenant };
}

const types = (records: { type: string }[]) => records.map((r) => r.type);

describe("rotation scheduler", () => {
  it("one pass over 10,000 tenants with random key ages rotates exactly the due keys, once", async () => {
    const { provider, evidence, scheduler, addTenant } = setup({ concurrency: 16 });
    const random = seeded(6);
    const due = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const ageMs = Math.floor(random() * 180 * DAY_MS);
      // Every tenth tenant has a 30-day cryptoperiod of its own.
      const cryptoperiodMs = i % 10 === 0 ? 30 * DAY_MS : undefined;
      addTenant(`t${i}`, ageMs, cryptoperiodMs === undefined ? {} : { cryptoperiodMs });
      if (ageMs >= (cryptoperiodMs ?? 90 * DAY_MS)) due.add(`key-t${i}`);
    }
    expect(due.size).toBeGreaterThan(4000);
    expect(due.size).toBeLessThan(6000);

    const summary = await scheduler.runOnce();
    expect(summary).toEqual({ examined: 10_000, due: due.size, rotated: due.size, skipped: 0, failed: 0, deferred: 0, recovered: 0 });
    expect(new Set(provider.rotations.keys())).toEqual(due);
    expect([...provider.rotations.values()].every((n) => n === 1)).toBe(true);
    expect(evidence.all).toHaveLength(2 * due.size);
    expect(evidence.all.filter((r) => r.type === "key.rotated").every((r) => r.previousVersion === "1" && r.keyVersion === "2")).toBe(true);
    expect(scheduler.keyAges().overdue).toBe(0);

    const again = await scheduler.runOnce();
    expect(again).toEqual({ examined: 10_000, due: 0, rotated: 0, skipped: 0, failed: 0, deferred: 0, recovered: 0 });
    expect(evidence.all).toHaveLength(2 * due.size);
  });

  it("records the rotation before and after, with the fencing token, and reports it", async () => {
    const { provider, evidence, events, scheduler, addTenant } = setup();
    addTenant("a", 91 * DAY_MS);
    addTenant("b", 89 * DAY_MS);
    await scheduler.runOnce();
    expect(provider.rotations).toEqual(new Map([["key-a", 1]]));
    expect(evidence.all.map(({ seq, type, tenantId, provider: p, keyId, keyVersion, previousVersion, actor, outcome, details }) => ({ seq, type, tenantId, p, keyId, keyVersion, previousVersion, actor, outcome, details }))).toEqual([
      { seq: 1, type: "key.rotation-started", tenantId: "a", p: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "scheduler@test", outcome: "success", details: { fencingToken: 1 } },
      { seq: 2, type: "key.rotated", tenantId: "a", p: "fake", keyId: "key-a", keyVersion: "2", previousVersion: "1", actor: "scheduler@test", outcome: "success", details: { fencingToken: 1 } },
    ]);
    const rotated = events.find((e) => e.type === "rotation.succeeded");
    expect(rotated).toEqual({ type: "rotation.succeeded", tenantId: "a", provider: "fake", keyId: "key-a", previousVersion: "1", currentVersion: "2", recovered: false, durationMs: 0 });
    expect(kmsEventOf(rotated!)).toEqual({ type: "kms.operation", provider: "fake", operation: "rotateKey", outcome: "success", attempts: 1, durationMs: 0 });
    expect(events.at(-1)).toEqual({ type: "pass.completed", summary: { examined: 2, due: 1, rotated: 1, skipped: 0, failed: 0, deferred: 0, recovered: 0 } });
  });

  it("rotates a key shared by several tenants once", async () => {
    const { provider, tenants, scheduler, addTenant } = setup({ concurrency: 4 });
    addTenant("a", 100 * DAY_MS);
    tenants.push({ tenantId: "b", provider: "fake", keyId: "key-a" }, { tenantId: "c", provider: "fake", keyId: "key-a" });
    const summary = await scheduler.runOnce();
    expect(provider.rotations).toEqual(new Map([["key-a", 1]]));
    expect(summary.rotated).toBe(1);
    expect(summary.rotated + summary.skipped).toBe(summary.due);
  });

  it("reads tenants from an async iterable function afresh on each pass, with bounded concurrency", async () => {
    const clock = new ManualClock();
    const provider = fakeRotationProvider(clock);
    let inFlight = 0;
    let maxInFlight = 0;
    const describe = provider.describeKey.bind(provider);
    provider.describeKey = async (keyId) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((resolve) => setImmediate(resolve));
      inFlight--;
      return describe(keyId);
    };
    for (let i = 0; i < 50; i++) addKey(provider, clock, `k${i}`, 95 * DAY_MS);
    let reads = 0;
    const scheduler = createRotationScheduler({
      providers: { fake: provider },
      tenants: async function* () {
        reads++;
        for (let i = 0; i < 50; i++) yield { tenantId: `t${i}`, provider: "fake", keyId: `k${i}` };
      },
      evidence: memoryEvidenceLog(clock),
      clock,
      concurrency: 3,
    });
    expect((await scheduler.runOnce()).rotated).toBe(50);
    expect((await scheduler.runOnce()).examined).toBe(50);
    expect(reads).toBe(2);
    expect(maxInFlight).toBe(3);
  });

  it("retries a failed rotation with exponential backoff and full jitter, then succeeds", async () => {
    const { clock, provider, evidence, events, scheduler, addTenant } = setup({ backoff: { baseMs: 60_000, maxMs: 200_000 } });
    addTenant("a", 91 * DAY_MS);
    provider.failRotations("key-a", "KMS_THROTTLED", 3);
    const start = clock.now();

    expect((await scheduler.runOnce()).failed).toBe(1);
    expect(evidence.all.map(({ type, errorCode, requestId, outcome }) => ({ type, errorCode, requestId, outcome }))).toEqual([
      { type: "key.rotation-started", errorCode: undefined, requestId: undefined, outcome: "success" },
      { type: "key.rotation-failed", errorCode: "KMS_THROTTLED", requestId: "req-fail", outcome: "failure" },
    ]);
    const failed = events.filter((e) => e.type === "rotation.failed");
    // random() = 0.5: half of 60 s.
    expect(failed).toEqual([{ type: "rotation.failed", tenantId: "a", provider: "fake", keyId: "key-a", code: "KMS_THROTTLED", attempt: 1, retryAt: new Date(start + 30_000), durationMs: 0 }]);
    expect(kmsEventOf(failed[0]!)).toEqual({ type: "kms.operation", provider: "fake", operation: "rotateKey", outcome: "error", code: "KMS_THROTTLED", attempts: 1, durationMs: 0 });
    expect(await scheduler.status("a")).toMatchObject({ lastError: { code: "KMS_THROTTLED", at: new Date(start) }, overdue: true });

    await clock.advance(29_999);
    expect(await scheduler.runOnce()).toMatchObject({ deferred: 1, failed: 0, rotated: 0 });
    await clock.advance(1);
    expect((await scheduler.runOnce()).failed).toBe(1); // 2nd failure: half of 120 s
    await clock.advance(60_000);
    expect((await scheduler.runOnce()).failed).toBe(1); // 3rd failure: half of min(200 s, 240 s)
    expect(events.filter((e) => e.type === "rotation.failed").map((e) => (e.type === "rotation.failed" ? [e.attempt, e.retryAt.getTime() - clock.now()] : []))).toEqual([
      [1, 30_000 - 90_000],
      [2, 60_000 - 60_000],
      [3, 100_000],
    ]);
    await clock.advance(100_000);
    expect((await scheduler.runOnce()).rotated).toBe(1);
    expect(provider.rotations.get("key-a")).toBe(4);
    expect(await scheduler.status("a")).toMatchObject({ currentVersion: "2", overdue: false });
    expect((await scheduler.status("a"))!.lastError).toBeUndefined();
  });

  it("reports a key it cannot describe and a tenant entry naming no known provider, and goes on", async () => {
    const { events, tenants, scheduler, addTenant } = setup();
    addTenant("ok", 100 * DAY_MS);
    tenants.push({ tenantId: "missing", provider: "fake", keyId: "no-such-key" }, { tenantId: "other", provider: "nope", keyId: "k" });
    expect(await scheduler.runOnce()).toEqual({ examined: 3, due: 1, rotated: 1, skipped: 0, failed: 2, deferred: 0, recovered: 0 });
    expect(events.filter((e) => e.type === "rotation.failed").map((e) => (e.type === "rotation.failed" ? `${e.tenantId}:${e.code}` : ""))).toEqual([
      "missing:KMS_KEY_NOT_FOUND",
      "other:KMS_PROVIDER_UNKNOWN",
    ]);
  });

  it("leaves a key whose lease another holder has", async () => {
    const clock = new ManualClock();
    const locks = embeddedLocks({ clock });
    const { provider, evidence, scheduler, addTenant } = setup({ locks, clock });
    addTenant("a", 100 * DAY_MS);
    const held = await locks.tryAcquire("fake:key-a", 60_000);
    expect(await scheduler.runOnce()).toMatchObject({ due: 1, skipped: 1, rotated: 0 });
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all).toHaveLength(0);
    await held!.release();
    expect((await scheduler.runOnce()).rotated).toBe(1);
  });

  it("reports a lock store that fails, and does not rotate without the lease", async () => {
    const { provider, events, scheduler, addTenant } = setup({
      locks: { tryAcquire: () => Promise.reject(new Error("connection refused")), close: async () => {} },
    });
    addTenant("a", 100 * DAY_MS);
    expect(await scheduler.runOnce()).toMatchObject({ due: 1, failed: 1, rotated: 0 });
    expect(provider.rotations.size).toBe(0);
    expect(events[0]).toMatchObject({ type: "rotation.failed", code: "KMS_PROVIDER_ERROR", attempt: 1 });
  });

  it("records a rotation seen after rotating that was not its own", async () => {
    const { clock, provider, evidence, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    const rotate = provider.rotateKey.bind(provider);
    provider.rotateKey = async (keyId) => {
      const result = await rotate(keyId);
      provider.keys.get(keyId)!.version++; // a stale holder rotates right after
      provider.keys.get(keyId)!.rotatedAt = clock.now();
      return result;
    };
    await scheduler.runOnce();
    expect(evidence.all.at(-1)).toMatchObject({ type: "key.rotated", previousVersion: "1", keyVersion: "2", details: { fencingToken: 1, concurrentRotation: true } });
    expect((await scheduler.status("a"))!.currentVersion).toBe("3");
  });

  it("status and keyAges report ages, due dates and overdue keys", async () => {
    const { clock, scheduler, addTenant } = setup();
    addTenant("young", 10 * DAY_MS);
    addTenant("old", 120 * DAY_MS, { cryptoperiodMs: 365 * DAY_MS });
    await scheduler.runOnce();
    expect(await scheduler.status("old")).toEqual({
      tenantId: "old",
      provider: "fake",
      keyId: "key-old",
      currentVersion: "1",
      lastRotatedAt: new Date(clock.now() - 120 * DAY_MS),
      nextDueAt: new Date(clock.now() + 245 * DAY_MS),
      ageMs: 120 * DAY_MS,
      cryptoperiodMs: 365 * DAY_MS,
      overdue: false,
    });
    await clock.advance(81 * DAY_MS);
    expect(await scheduler.status("young")).toMatchObject({ ageMs: 91 * DAY_MS, overdue: true });
    expect(scheduler.keyAges()).toEqual({ oldestKeyAgeSeconds: (201 * DAY_MS) / 1000, overdue: 1 });
    expect(await scheduler.status("nobody")).toBeUndefined();
  });

  it("status of a tenant not seen yet reads the source and describes its key", async () => {
    const { provider, scheduler, addTenant } = setup();
    addTenant("a", 5 * DAY_MS);
    expect(await scheduler.status("a")).toMatchObject({ currentVersion: "1", ageMs: 5 * DAY_MS, overdue: false });
    expect(provider.describeCalls).toBe(1);
  });

  it("start() runs passes on the interval, sooner for a retry, and stop() ends them", async () => {
    const { clock, provider, events, scheduler, addTenant } = setup({ intervalMs: 600_000, backoff: { baseMs: 100_000 } });
    addTenant("a", 100 * DAY_MS);
    provider.failRotations("key-a", "KMS_UNAVAILABLE");
    const passes = () => events.filter((e) => e.type === "pass.completed").length;
    scheduler.start();
    scheduler.start(); // already running: no second loop
    await clock.advance(0);
    expect(passes()).toBe(1);
    expect(provider.rotations.get("key-a")).toBe(1);
    await clock.advance(49_999);
    expect(passes()).toBe(1);
    await clock.advance(1); // the retry is due at 50 s, before the 10-minute interval
    expect(passes()).toBe(2);
    expect(provider.rotations.get("key-a")).toBe(2);
    await clock.advance(600_000);
    expect(passes()).toBe(3);
    await scheduler.stop();
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(10 * 600_000);
    expect(passes()).toBe(3);
  });

  it("refuses bad options, listing every problem", () => {
    const clock = new ManualClock();
    let error: unknown;
    try {
      createRotationScheduler({ providers: {}, tenants: [], evidence: {} as never, concurrency: 0, cryptoperiodMs: -1, backoff: { maxMs: 1.5 }, clock });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KmsConfigError);
    expect((error as KmsConfigError).issues.map((i) => i.path)).toEqual(["providers", "evidence", "cryptoperiodMs", "concurrency", "backoff.maxMs"]);
    expect((error as KmsConfigError).code).toBe("KMS_CONFIG_INVALID");
  });
});

describe("recovery after a crash", () => {
  it("a started rotation the provider shows done is recorded as rotated, not rotated again", async () => {
    const { clock, provider, evidence, events, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    await evidence.append({ type: "key.rotation-started", tenantId: "a", provider: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "scheduler@old", outcome: "success" });
    provider.keys.set("key-a", { version: 2, createdAt: 0, rotatedAt: clock.now() }); // the crashed process's rotateKey

    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, due: 0, rotated: 0 });
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all.at(-1)).toMatchObject({ type: "key.rotated", tenantId: "a", previousVersion: "1", keyVersion: "2", outcome: "success", details: { recovered: true } });
    expect(events[0]).toMatchObject({ type: "rotation.succeeded", recovered: true, currentVersion: "2" });
    expect((await scheduler.runOnce()).recovered).toBe(0); // recovery runs when needed, not every pass
  });

  it("a started rotation that did not happen is closed and the key rotated once", async () => {
    const { provider, evidence, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    await evidence.append({ type: "key.rotation-started", tenantId: "a", provider: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "scheduler@old", outcome: "success" });

    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, due: 1, rotated: 1 });
    expect(provider.rotations.get("key-a")).toBe(1);
    expect(types(evidence.all)).toEqual(["key.rotation-started", "key.rotation-failed", "key.rotation-started", "key.rotated"]);
    expect(evidence.all[1]).toMatchObject({ outcome: "failure", previousVersion: "1", details: { recovered: true, interrupted: true } });
  });

  it("leaves a started rotation whose lease is held to its holder", async () => {
    const clock = new ManualClock();
    const locks = embeddedLocks({ clock });
    const { provider, evidence, scheduler, addTenant } = setup({ clock, locks });
    addTenant("a", 100 * DAY_MS);
    await evidence.append({ type: "key.rotation-started", tenantId: "a", provider: "fake", keyId: "key-a", previousVersion: "1", actor: "other", outcome: "success" });
    const held = await locks.tryAcquire("fake:key-a", 60_000);
    expect(await scheduler.runOnce()).toMatchObject({ recovered: 0, skipped: 1 });
    expect(evidence.all).toHaveLength(1);
    await held!.release();
    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, rotated: 1 });
    expect(provider.rotations.get("key-a")).toBe(1);
  });

  it("two interrupted starts of one key: each gets its outcome, the latest first, from what the key's next start found", async () => {
    const { clock, provider, evidence, events, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    const started = { type: "key.rotation-started", tenantId: "a", provider: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "scheduler@old", outcome: "success" } as const;
    await evidence.append(started); // killed before rotateKey
    await evidence.append(started); // killed after rotateKey
    provider.keys.set("key-a", { version: 2, createdAt: 0, rotatedAt: clock.now() });

    expect(await scheduler.runOnce()).toMatchObject({ recovered: 2, due: 0, rotated: 0 });
    expect(provider.rotations.size).toBe(0);
    const base = { tenantId: "a", provider: "fake", keyId: "key-a", actor: "scheduler@test", previousVersion: "1" };
    expect(evidence.all.slice(2)).toMatchObject([
      { ...base, seq: 3, type: "key.rotated", keyVersion: "2", outcome: "success", details: { recovered: true } },
      { ...base, seq: 4, type: "key.rotation-failed", outcome: "failure", details: { recovered: true, interrupted: true } },
    ]);
    expect(rotationPairs(evidence.all)).toEqual([[1, 4], [2, 3]]);
    expect(events.filter((e) => e.type === "rotation.succeeded")).toEqual([{ type: "rotation.succeeded", tenantId: "a", provider: "fake", keyId: "key-a", previousVersion: "1", currentVersion: "2", recovered: true, durationMs: 0 }]);
    expect((await scheduler.runOnce()).recovered).toBe(0);
  });

  it("a start left open before another holder rotated the key is resolved from that rotation's start, not the key's version now", async () => {
    const { provider, evidence, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    const base = { tenantId: "a", provider: "fake", keyId: "key-a", outcome: "success" } as const;
    // Killed after rotateKey (1 → 2); then a holder that did not recover first rotated 2 → 3.
    await evidence.append({ ...base, type: "key.rotation-started", keyVersion: "1", previousVersion: "1", actor: "scheduler@old" });
    await evidence.append({ ...base, type: "key.rotation-started", keyVersion: "2", previousVersion: "2", actor: "admin:alice", details: { onDemand: true } });
    await evidence.append({ ...base, type: "key.rotated", keyVersion: "3", previousVersion: "2", actor: "admin:alice", details: { onDemand: true } });
    provider.keys.set("key-a", { version: 3, createdAt: 0, rotatedAt: 0 }); // and due again

    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, due: 1, rotated: 1 });
    expect(evidence.all[3]).toMatchObject({ ...base, seq: 4, type: "key.rotated", previousVersion: "1", keyVersion: "2", actor: "scheduler@test", details: { recovered: true } });
    expect(types(evidence.all.slice(4))).toEqual(["key.rotation-started", "key.rotated"]);
    expect(rotationPairs(evidence.all)).toEqual([[1, 4], [2, 3], [5, 6]]);
  });

  it("an outcome the evidence log failed to take is recovered at the next pass", async () => {
    const { provider, evidence, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    evidence.failNext("key.rotated");
    expect(await scheduler.runOnce()).toMatchObject({ rotated: 0, failed: 1 });
    expect(types(evidence.all)).toEqual(["key.rotation-started"]);
    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, rotated: 0 });
    expect(provider.rotations.get("key-a")).toBe(1);
    expect(types(await collect(evidence.records()))).toEqual(["key.rotation-started", "key.rotated"]);
  });

  it("does not rotate when the start record cannot be written", async () => {
    const { provider, evidence, scheduler, addTenant } = setup();
    addTenant("a", 100 * DAY_MS);
    evidence.failNext("key.rotation-started");
    expect(await scheduler.runOnce()).toMatchObject({ failed: 1, rotated: 0 });
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all).toHaveLength(0);
  });
});
