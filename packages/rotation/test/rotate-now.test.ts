/**
 * `rotateKeyNow`: one key, now, under the scheduler's lease and with the scheduler's records, so
 * crash recovery and `verifyEvidence` treat it like a scheduled rotation.
 */
import { describe, expect, it } from "@jest/globals";
import { KmsError, ManualClock } from "@kms/core";
import { createEvidenceLog, createRotationScheduler, embeddedLocks, memoryEvidenceStore, rotateKeyNow, verifyEvidence, type RotateKeyNowOptions, type RotationEvent } from "../src";
import type { EvidenceRecord } from "../src/types";
import { DAY_MS, addKey, collect, fakeRotationProvider, memoryEvidenceLog, rotationPairs } from "./scheduler-fakes";

const TENANT = { tenantId: "acme", provider: "fake", keyId: "key-a" };

function setup() {
  const clock = new ManualClock();
  const provider = fakeRotationProvider(clock);
  const evidence = memoryEvidenceLog(clock);
  const locks = embeddedLocks({ clock });
  const events: RotationEvent[] = [];
  const options: RotateKeyNowOptions = { providers: { fake: provider }, tenant: TENANT, evidence, locks, actor: "admin:alice", clock, onEvent: (e) => events.push(e) };
  return { clock, provider, evidence, locks, events, options };
}

const fields = ({ seq, type, tenantId, provider, keyId, keyVersion, previousVersion, actor, outcome, errorCode, requestId, details }: EvidenceRecord) =>
  ({ seq, type, tenantId, provider, keyId, keyVersion, previousVersion, actor, outcome, errorCode, requestId, details });

describe("rotateKeyNow", () => {
  it("rotates a key a second old, recording start then outcome as the scheduler does, marked on demand", async () => {
    const { clock, provider, evidence, events, options } = setup();
    addKey(provider, clock, "key-a", 1_000);
    expect(await rotateKeyNow(options)).toEqual({ status: "rotated", previousVersion: "1", currentVersion: "2" });
    expect(provider.rotations).toEqual(new Map([["key-a", 1]]));
    const base = { tenantId: "acme", provider: "fake", keyId: "key-a", actor: "admin:alice", outcome: "success", errorCode: undefined, requestId: undefined, details: { fencingToken: 1, onDemand: true } };
    expect(evidence.all.map(fields)).toEqual([
      { ...base, seq: 1, type: "key.rotation-started", keyVersion: "1", previousVersion: "1" },
      { ...base, seq: 2, type: "key.rotated", keyVersion: "2", previousVersion: "1" },
    ]);
    expect(events).toEqual([{ type: "rotation.succeeded", tenantId: "acme", provider: "fake", keyId: "key-a", previousVersion: "1", currentVersion: "2", recovered: false, durationMs: 0 }]);
  });

  it("rotates a key whose provider reports no dates (which the scheduler never finds due)", async () => {
    const { clock, provider, evidence, options } = setup();
    addKey(provider, clock, "key-a", 0);
    const describe = provider.describeKey.bind(provider);
    provider.describeKey = async (keyId) => {
      const { keyId: id, enabled, currentVersion } = await describe(keyId);
      return { keyId: id, enabled, currentVersion };
    };
    expect(await createRotationScheduler({ providers: { fake: provider }, tenants: [TENANT], evidence, clock, cryptoperiodMs: 1 }).runOnce()).toMatchObject({ due: 0, rotated: 0 });
    expect(await rotateKeyNow(options)).toEqual({ status: "rotated", previousVersion: "1", currentVersion: "2" });
    expect(evidence.all.map((r) => r.type)).toEqual(["key.rotation-started", "key.rotated"]);
  });

  it("writes records the evidence log accepts, in a chain that verifies", async () => {
    const { clock, provider, options } = setup();
    const evidence = createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: Buffer.alloc(32, 7), clock });
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    provider.failRotations("key-a", "KMS_THROTTLED");
    await expect(rotateKeyNow({ ...options, evidence })).rejects.toMatchObject({ code: "KMS_THROTTLED" });
    await rotateKeyNow({ ...options, evidence });
    const records = await collect(evidence.records());
    expect(records.map((r) => r.type)).toEqual(["key.rotation-started", "key.rotation-failed", "key.rotation-started", "key.rotated"]);
    expect(await verifyEvidence(records, { hmacKey: Buffer.alloc(32, 7) })).toMatchObject({ ok: true, count: 4 });
  });

  it("a provider failure is recorded with its code and request id, emitted, and rethrown; the lease is released", async () => {
    const { clock, provider, evidence, locks, events, options } = setup();
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    provider.failRotations("key-a", "KMS_ACCESS_DENIED");
    const error = await rotateKeyNow(options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmsError);
    expect(error).toMatchObject({ code: "KMS_ACCESS_DENIED", requestId: "req-fail" });
    expect(evidence.all.map(fields)).toEqual([
      { seq: 1, type: "key.rotation-started", tenantId: "acme", provider: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "admin:alice", outcome: "success", errorCode: undefined, requestId: undefined, details: { fencingToken: 1, onDemand: true } },
      { seq: 2, type: "key.rotation-failed", tenantId: "acme", provider: "fake", keyId: "key-a", keyVersion: undefined, previousVersion: "1", actor: "admin:alice", outcome: "failure", errorCode: "KMS_ACCESS_DENIED", requestId: "req-fail", details: { fencingToken: 1, onDemand: true } },
    ]);
    expect(events).toEqual([{ type: "rotation.failed", tenantId: "acme", provider: "fake", keyId: "key-a", code: "KMS_ACCESS_DENIED", attempt: 1, retryAt: new Date(clock.now()), durationMs: 0 }]);
    const lease = await locks.tryAcquire("fake:key-a", 1_000);
    expect(lease?.token).toBe(2);
  });

  it("is busy while another holder has the key's lease: nothing described, rotated, recorded or emitted", async () => {
    const { clock, provider, evidence, locks, events, options } = setup();
    addKey(provider, clock, "key-a", 100 * DAY_MS);
    const held = await locks.tryAcquire("fake:key-a", 60_000);
    expect(await rotateKeyNow(options)).toEqual({ status: "busy" });
    expect(provider.describeCalls).toBe(0);
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all).toEqual([]);
    expect(events).toEqual([]);
    await held!.release();
    expect(await rotateKeyNow(options)).toMatchObject({ status: "rotated" });
  });

  it("holds the scheduler's lease: a pass during an on-demand rotation skips the key", async () => {
    const { clock, provider, evidence, locks, options } = setup();
    addKey(provider, clock, "key-a", 100 * DAY_MS);
    const scheduler = createRotationScheduler({ providers: { fake: provider }, tenants: [TENANT], evidence, locks, clock });
    const rotate = provider.rotateKey.bind(provider);
    let pass: ReturnType<typeof scheduler.runOnce> | undefined;
    provider.rotateKey = async (keyId) => {
      pass = scheduler.runOnce(); // a scheduled pass while the on-demand rotation is under way
      await pass;
      return rotate(keyId);
    };
    expect(await rotateKeyNow(options)).toMatchObject({ status: "rotated" });
    expect(await pass).toMatchObject({ due: 1, skipped: 1, rotated: 0 });
    expect(provider.rotations.get("key-a")).toBe(1);
  });

  it("does not rotate when the start record cannot be written", async () => {
    const { clock, provider, evidence, events, options } = setup();
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    evidence.failNext("key.rotation-started");
    await expect(rotateKeyNow(options)).rejects.toThrow("evidence store unavailable");
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all).toEqual([]);
    expect(events).toMatchObject([{ type: "rotation.failed", code: "KMS_PROVIDER_ERROR" }]);
  });

  it("an outcome the log failed to take: emitted as rotated, the log's error thrown, and recovered by the scheduler", async () => {
    const { clock, provider, evidence, locks, events, options } = setup();
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    evidence.failNext("key.rotated");
    await expect(rotateKeyNow(options)).rejects.toThrow("evidence store unavailable");
    expect(events).toMatchObject([{ type: "rotation.succeeded", previousVersion: "1", currentVersion: "2" }]);
    const scheduler = createRotationScheduler({ providers: { fake: provider }, tenants: [TENANT], evidence, locks, clock, actor: "scheduler@test" });
    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, rotated: 0 });
    expect(provider.rotations.get("key-a")).toBe(1);
    expect(evidence.all.map((r) => `${r.type}:${r.actor}`)).toEqual(["key.rotation-started:admin:alice", "key.rotated:scheduler@test"]);
    expect(evidence.all[1]).toMatchObject({ previousVersion: "1", keyVersion: "2", details: { recovered: true } });
  });

  // A process killed mid-rotation left a start without an outcome; its rotateKey call happened or not.
  const interrupted = [
    {
      happened: false,
      recovered: { seq: 2, type: "key.rotation-failed", keyVersion: undefined, previousVersion: "1", outcome: "failure", details: { recovered: true, interrupted: true } },
      rotation: { previousVersion: "1", currentVersion: "2" },
      events: [],
    },
    {
      happened: true,
      recovered: { seq: 2, type: "key.rotated", keyVersion: "2", previousVersion: "1", outcome: "success", details: { recovered: true } },
      rotation: { previousVersion: "2", currentVersion: "3" },
      events: [{ type: "rotation.succeeded", tenantId: "acme", provider: "fake", keyId: "key-a", previousVersion: "1", currentVersion: "2", recovered: true, durationMs: 0 }],
    },
  ];

  it.each(interrupted)("first gives an interrupted start its outcome (rotation happened: $happened), then rotates", async ({ happened, recovered, rotation, events: recoveredEvents }) => {
    const { clock, provider, events, options } = setup();
    const hmacKey = Buffer.alloc(32, 7);
    const evidence = createEvidenceLog({ store: memoryEvidenceStore(), hmacKey, clock });
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    await evidence.append({ type: "key.rotation-started", tenantId: "acme", provider: "fake", keyId: "key-a", keyVersion: "1", previousVersion: "1", actor: "scheduler@old", outcome: "success", details: { fencingToken: 9 } });
    if (happened) provider.keys.get("key-a")!.version = 2;

    expect(await rotateKeyNow({ ...options, evidence })).toEqual({ status: "rotated", ...rotation });
    expect(provider.rotations).toEqual(new Map([["key-a", 1]]));
    const records = await collect(evidence.records());
    const base = { tenantId: "acme", provider: "fake", keyId: "key-a", errorCode: undefined, requestId: undefined };
    const onDemand = { ...base, actor: "admin:alice", outcome: "success", details: { fencingToken: 1, onDemand: true } };
    expect(records.map(fields)).toEqual([
      { ...base, seq: 1, type: "key.rotation-started", keyVersion: "1", previousVersion: "1", actor: "scheduler@old", outcome: "success", details: { fencingToken: 9 } },
      { ...base, actor: "admin:alice", ...recovered },
      { ...onDemand, seq: 3, type: "key.rotation-started", keyVersion: rotation.previousVersion, previousVersion: rotation.previousVersion },
      { ...onDemand, seq: 4, type: "key.rotated", keyVersion: rotation.currentVersion, previousVersion: rotation.previousVersion },
    ]);
    expect(rotationPairs(records)).toEqual([[1, 2], [3, 4]]);
    expect(await verifyEvidence(records, { hmacKey })).toMatchObject({ ok: true, count: 4 });
    expect(events).toEqual([...recoveredEvents, { type: "rotation.succeeded", tenantId: "acme", provider: "fake", keyId: "key-a", ...rotation, recovered: false, durationMs: 0 }]);
  });

  it("an interrupted start it cannot close fails the call before anything is rotated; the lease is released (the next call rotates)", async () => {
    const { clock, provider, evidence, events, options } = setup();
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    await evidence.append({ type: "key.rotation-started", tenantId: "acme", provider: "fake", keyId: "key-a", previousVersion: "1", actor: "scheduler@old", outcome: "success" });
    evidence.failNext("key.rotation-failed");
    await expect(rotateKeyNow(options)).rejects.toThrow("evidence store unavailable");
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all.map((r) => r.type)).toEqual(["key.rotation-started"]);
    expect(events).toEqual([{ type: "rotation.failed", tenantId: "acme", provider: "fake", keyId: "key-a", code: "KMS_PROVIDER_ERROR", attempt: 1, retryAt: new Date(clock.now()), durationMs: 0 }]);
    expect(await rotateKeyNow(options)).toEqual({ status: "rotated", previousVersion: "1", currentVersion: "2" });
    expect(rotationPairs(evidence.all)).toEqual([[1, 2], [3, 4]]);
  });

  it("a lock store that fails: emitted and rethrown, nothing rotated", async () => {
    const { clock, provider, evidence, events, options } = setup();
    addKey(provider, clock, "key-a", 10 * DAY_MS);
    const locks = { tryAcquire: () => Promise.reject(new Error("connection refused")), close: async () => {} };
    await expect(rotateKeyNow({ ...options, locks })).rejects.toThrow("connection refused");
    expect(provider.rotations.size).toBe(0);
    expect(evidence.all).toEqual([]);
    expect(events).toMatchObject([{ type: "rotation.failed", code: "KMS_PROVIDER_ERROR", attempt: 1 }]);
  });

  it("refuses a tenant naming no configured provider, or a malformed one, before anything else", async () => {
    const { provider, evidence, events, options } = setup();
    await expect(rotateKeyNow({ ...options, tenant: { ...TENANT, provider: "nope" } })).rejects.toMatchObject({ code: "KMS_PROVIDER_UNKNOWN" });
    await expect(rotateKeyNow({ ...options, tenant: { ...TENANT, keyId: "" } })).rejects.toMatchObject({ code: "INPUT_INVALID" });
    expect(provider.describeCalls).toBe(0);
    expect(evidence.all).toEqual([]);
    expect(events).toEqual([]);
  });

  it("a throwing listener does not break the rotation", async () => {
    const { clock, provider, options } = setup();
    addKey(provider, clock, "key-a", 0);
    const onEvent = () => {
      throw new Error("listener");
    };
    expect(await rotateKeyNow({ ...options, onEvent })).toMatchObject({ status: "rotated", currentVersion: "2" });
  });
});
