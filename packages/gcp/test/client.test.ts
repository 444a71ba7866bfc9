import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from "@jest/globals";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { type CreateKmsOptions, type KmsClient, type KmsConfigInput, type KmsError, type KmsEvent, ManualClock, createKms, isKmsError, parseEnvelope } from "@kms/core";
import { GCP_EMULATOR_IDENTITY, GCP_KMS_PERMISSIONS, GcpKmsEmulator } from "@kms/testkit/emulators";
import { gcpKms, gcpKmsProvider } from "../src";
import { reconnected } from "./support";

/** A latency that holds a request past any deadline here; the emulator's stop() releases it (after every test, so it is never logged mid-file). */
const HELD_MS = 600_000;

const emulator = new GcpKmsEmulator();
const kmsClients: KmsClient[] = [];
const sdkClients: KeyManagementServiceClient[] = [];

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await Promise.all(sdkClients.map((c) => c.close()));
  await emulator.stop();
});

beforeEach(() => {
  emulator.resetLog();
});

afterEach(async () => {
  emulator.clearFaults();
  emulator.setPermissions(GCP_EMULATOR_IDENTITY, "*");
  await Promise.all(kmsClients.splice(0).map((c) => c.close()));
});

/**
 * A client configured as an app would: the `gcp-kms` definition in the registry and a fresh key as
 * every tenant's key. The provider gets a client of the test's own, so a test can wait for its
 * channel to reconnect after an outage.
 */
function setUp(resilience: KmsConfigInput["resilience"] = {}, options: Partial<CreateKmsOptions> = {}) {
  const keyName = emulator.createKey();
  const sdk = new KeyManagementServiceClient(emulator.clientOptions());
  sdkClients.push(sdk);
  const events: KmsEvent[] = [];
  const kms = createKms({
    registry: [{ ...gcpKms, create: () => gcpKmsProvider({ client: sdk }) }],
    config: { providers: { "gcp-kms": {} }, tenants: { defaultKey: { provider: "gcp-kms", keyId: keyName } }, resilience },
    env: {},
    onEvent: (event) => events.push(event),
    ...options,
  });
  kmsClients.push(kms);
  emulator.resetLog();
  /** The kms.call events so far, as `<operation> <attempt> <outcome or code>`. */
  const calls = () => events.flatMap((e) => (e.type === "kms.call" ? [`${e.operation} ${e.attempt} ${e.code ?? e.outcome}`] : []));
  const circuit = () => events.flatMap((e) => (e.type === "circuit.state" ? [`${e.from}→${e.to}`] : []));
  return { kms, keyName, sdk, calls, circuit };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (!isKmsError(error)) throw error;
    return (error as KmsError).code;
  }
  throw new Error("expected a KmsError");
}

/**
 * Waits (in real time) until `condition` holds: the client learns of an answer a little after the
 * emulator logged it (gax decodes gRPC errors on a later tick), and core sets its backoff timer then.
 */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe("the data-key cache in front of Cloud KMS", () => {
  it("the cold path makes exactly 1 Encrypt; 1,000 encrypts after warm-up make none", async () => {
    const { kms } = setUp();
    const first = await kms.encrypt("tenant-a", "warm-up", { table: "notes" });
    expect(emulator.counts()).toEqual({ Encrypt: 1 });
    const envelopes = [];
    for (let i = 0; i < 1000; i++) envelopes.push(await kms.encrypt("tenant-a", `message ${i}`, { table: "notes" }));
    expect(emulator.counts()).toEqual({ Encrypt: 1 });
    const wrappedKeyOf = (envelope: Buffer) => Buffer.from(parseEnvelope(envelope).keySection.wrappedKey).toString("hex");
    expect(new Set(envelopes.map(wrappedKeyOf))).toEqual(new Set([wrappedKeyOf(first)]));
  });

  it("decrypt: the first of a data key's envelopes costs 1 Decrypt, every later one none", async () => {
    const writer = setUp();
    const envelopes = [];
    for (let i = 0; i < 100; i++) envelopes.push(await writer.kms.encrypt("tenant-a", `message ${i}`));
    // A second app instance, with empty caches, on the same key.
    const reader = createKms({
      registry: [{ ...gcpKms, create: () => gcpKmsProvider({ client: writer.sdk }) }],
      config: { providers: { "gcp-kms": {} }, tenants: { defaultKey: { provider: "gcp-kms", keyId: writer.keyName } } },
      env: {},
    });
    kmsClients.push(reader);
    emulator.resetLog();
    expect((await reader.decrypt("tenant-a", envelopes[0]!)).toString()).toBe("message 0");
    expect(emulator.counts()).toEqual({ Decrypt: 1 });
    for (let i = 0; i < 100; i++) expect((await reader.decrypt("tenant-a", envelopes[i]!)).toString()).toBe(`message ${i}`);
    expect(emulator.counts()).toEqual({ Decrypt: 1 });
  });

  it("N tenants share the provider's one client, created on first use and closed by close()", async () => {
    const initialize = jest.spyOn(KeyManagementServiceClient.prototype, "initialize");
    const close = jest.spyOn(KeyManagementServiceClient.prototype, "close");
    try {
      const keyName = emulator.createKey();
      const kms = createKms({
        registry: [{ ...gcpKms, create: () => gcpKmsProvider({ clientOptions: emulator.clientOptions() }) }],
        config: { providers: { "gcp-kms": {} }, tenants: { defaultKey: { provider: "gcp-kms", keyId: keyName } } },
        env: {},
      });
      expect(initialize).not.toHaveBeenCalled(); // no client, no network, before the first call
      for (let i = 0; i < 10; i++) await kms.decrypt(`tenant-${i}`, await kms.encrypt(`tenant-${i}`, "x"));
      expect(emulator.counts()).toEqual({ Encrypt: 10, Decrypt: 10 });
      expect(new Set(initialize.mock.contexts).size).toBe(1);
      await kms.close();
      expect(close).toHaveBeenCalledTimes(1);
      expect(close.mock.contexts[0]).toBe(initialize.mock.contexts[0]);
    } finally {
      initialize.mockRestore();
      close.mockRestore();
    }
  });
});

describe("resilience against Cloud KMS faults", () => {
  it("throttling (RESOURCE_EXHAUSTED) is retried with backoff and succeeds once it clears: exactly 3 calls", async () => {
    const clock = new ManualClock();
    const { kms, calls } = setUp({ retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 } }, { clock, random: () => 1 });
    emulator.inject("Encrypt", { kind: "throttle" }, { times: 2 });
    const encrypted = kms.encrypt("tenant-a", "after the throttling");
    await until(() => calls().length === 1);
    await clock.advance(99);
    expect(emulator.count("Encrypt")).toBe(1);
    await clock.advance(1);
    await until(() => calls().length === 2);
    await clock.advance(199);
    expect(emulator.count("Encrypt")).toBe(2);
    await clock.advance(1);
    const envelope = await encrypted;
    expect(emulator.requests.map((r) => `${r.operation} ${r.status} ${r.fault ?? "-"}`)).toEqual(["Encrypt 429 throttle", "Encrypt 429 throttle", "Encrypt 200 -"]);
    expect(calls()).toEqual(["generateDataKey 1 KMS_THROTTLED", "generateDataKey 2 KMS_THROTTLED", "generateDataKey 3 success"]);
    expect((await kms.decrypt("tenant-a", envelope)).toString()).toBe("after the throttling");
  });

  it("UNAVAILABLE answers open the circuit after failureThreshold calls; cached keys keep serving; it closes after recovery", async () => {
    const clock = new ManualClock();
    const { kms, circuit } = setUp({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 1000 } }, { clock });
    const cached = await kms.encrypt("tenant-a", "cached before the outage");
    await kms.decrypt("tenant-a", cached);
    emulator.resetLog();
    const fault = emulator.inject("*", { kind: "serverError", status: 503 });
    for (let i = 0; i < 3; i++) expect(await codeOf(kms.encrypt(`tenant-${i + 1}-cold`, "x"))).toBe("KMS_UNAVAILABLE");
    expect(circuit()).toEqual(["closed→open"]);
    expect(await codeOf(kms.encrypt("tenant-4-cold", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect(emulator.counts()).toEqual({ Encrypt: 3 });
    for (let i = 0; i < 50; i++) await kms.encrypt("tenant-a", `during the outage ${i}`);
    expect((await kms.decrypt("tenant-a", cached)).toString()).toBe("cached before the outage");
    expect(emulator.count()).toBe(3);
    fault.clear();
    await clock.advance(1000);
    expect(circuit()).toEqual(["closed→open", "open→half-open"]);
    expect(await kms.decrypt("tenant-5-cold", await kms.encrypt("tenant-5-cold", "back"))).toEqual(Buffer.from("back"));
    expect(circuit()).toEqual(["closed→open", "open→half-open", "half-open→closed"]);
    expect(emulator.counts()).toEqual({ Encrypt: 4, Decrypt: 1 });
  });

  it("an outage (connection refused) opens the circuit the same way, and it closes once the emulator listens again", async () => {
    const clock = new ManualClock();
    const { kms, sdk, calls, circuit } = setUp({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 500 } }, { clock });
    await kms.encrypt("tenant-a", "warm");
    const restore = await emulator.outage();
    try {
      expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_UNAVAILABLE");
      expect(await codeOf(kms.encrypt("tenant-c", "x"))).toBe("KMS_UNAVAILABLE");
      expect(await codeOf(kms.encrypt("tenant-d", "x"))).toBe("KMS_CIRCUIT_OPEN");
      expect(await kms.encrypt("tenant-a", "still served")).toBeInstanceOf(Buffer);
    } finally {
      await restore();
    }
    await reconnected(sdk); // grpc-js reconnects after its (shortened) backoff: wait for the channel, not a clock
    await clock.advance(500);
    expect(await kms.encrypt("tenant-d", "x")).toBeInstanceOf(Buffer);
    expect(circuit()).toEqual(["closed→open", "open→half-open", "half-open→closed"]);
    expect(calls()).toEqual([
      "generateDataKey 1 success",
      "generateDataKey 1 KMS_UNAVAILABLE",
      "generateDataKey 1 KMS_UNAVAILABLE",
      "generateDataKey 1 KMS_CIRCUIT_OPEN",
      "generateDataKey 1 success",
    ]);
    expect(emulator.counts()).toEqual({ Encrypt: 2 }); // refused connections never reached it
  });

  it("a call slower than resilience.timeoutMs fails with KMS_TIMEOUT, and the retry gets through", async () => {
    const { kms, calls } = setUp({ timeoutMs: 500, retry: { maxAttempts: 1 } });
    emulator.inject("Encrypt", { kind: "latency", ms: HELD_MS }, { times: 1 });
    expect(await codeOf(kms.encrypt("tenant-a", "x"))).toBe("KMS_TIMEOUT");
    expect(calls()).toEqual(["generateDataKey 1 KMS_TIMEOUT"]);

    const retrying = setUp({ timeoutMs: 500, retry: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 } });
    emulator.inject("Encrypt", { kind: "latency", ms: HELD_MS }, { times: 1 });
    expect((await retrying.kms.decrypt("tenant-a", await retrying.kms.encrypt("tenant-a", "y"))).toString()).toBe("y");
    expect(retrying.calls()).toEqual(["generateDataKey 1 KMS_TIMEOUT", "generateDataKey 2 success", "unwrapDataKey 1 success"]);
  });

  it("a corrupted response (checksum kept) is KMS_INTEGRITY_ERROR, never used, and the retry succeeds: exactly 2 calls", async () => {
    const { kms, calls } = setUp({ retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } });
    emulator.corruptResponses("Encrypt");
    const envelope = await kms.encrypt("tenant-a", "integrity");
    expect(emulator.counts()).toEqual({ Encrypt: 2 });
    kms.invalidateTenant("tenant-a");
    emulator.corruptResponses("Decrypt");
    expect((await kms.decrypt("tenant-a", envelope)).toString()).toBe("integrity");
    expect(emulator.counts()).toEqual({ Encrypt: 2, Decrypt: 2 });
    expect(calls()).toEqual(["generateDataKey 1 KMS_INTEGRITY_ERROR", "generateDataKey 2 success", "unwrapDataKey 1 KMS_INTEGRITY_ERROR", "unwrapDataKey 2 success"]);
  });
});

describe("failures that are never retried", () => {
  it("integrity failures (wrong context, wrong tenant, tampered wrapped key): one Decrypt each, ENVELOPE_AUTH_FAILED", async () => {
    const { kms, calls } = setUp({ retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } });
    const envelope = await kms.encrypt("tenant-a", "integrity", { doc: "1" });
    // The wrapped key flipped inside the envelope, with the key section's checksum fixed, so that
    // the envelope parses and only Cloud KMS can tell.
    const tampered = Buffer.from(envelope);
    const parsed = parseEnvelope(tampered);
    const wrapped = parsed.keySection.wrappedKey;
    wrapped[30] = wrapped[30]! ^ 0x01;
    const ks = parsed.keySectionBytes;
    ks.writeUInt32BE(crc32(ks.subarray(0, ks.length - 4)), ks.length - 4);
    emulator.resetLog();
    expect(await codeOf(kms.decrypt("tenant-a", envelope, { doc: "2" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("Decrypt")).toBe(1);
    expect(await codeOf(kms.decrypt("tenant-b", envelope, { doc: "1" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("Decrypt")).toBe(2);
    expect(await codeOf(kms.decrypt("tenant-a", tampered, { doc: "1" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("Decrypt")).toBe(3);
    expect(emulator.requests.map((r) => r.status)).toEqual([400, 400, 400]);
    expect(calls().slice(1)).toEqual(["unwrapDataKey 1 ENVELOPE_AUTH_FAILED", "unwrapDataKey 1 ENVELOPE_AUTH_FAILED", "unwrapDataKey 1 ENVELOPE_AUTH_FAILED"]);
  });

  it("permission failures: one call each, KMS_ACCESS_DENIED", async () => {
    const { kms } = setUp({ retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } });
    const envelope = await kms.encrypt("tenant-a", "permissions");
    emulator.setPermissions(GCP_EMULATOR_IDENTITY, [GCP_KMS_PERMISSIONS.GetCryptoKey]);
    emulator.resetLog();
    expect(await codeOf(kms.decrypt("tenant-a", envelope))).toBe("KMS_ACCESS_DENIED");
    expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_ACCESS_DENIED");
    expect(emulator.counts()).toEqual({ Decrypt: 1, Encrypt: 1 });
    expect(emulator.requests.map((r) => r.status)).toEqual([403, 403]);
  });
});

describe("rotation and rewrap", () => {
  it("an envelope under key version 1 decrypts after rotateKey; rewrap moves it to the new version without touching its payload", async () => {
    const { kms, keyName, sdk } = setUp();
    const provider = gcpKmsProvider({ client: sdk });
    const payload = randomBytes(512);
    const v1Envelope = await kms.encrypt("tenant-a", payload, { doc: "7" });
    expect(parseEnvelope(v1Envelope).keySection.keyVersion).toBe("1");

    emulator.resetLog();
    expect(await provider.rotateKey(keyName)).toEqual({ keyId: keyName, previousVersion: "1", currentVersion: "2" });
    expect(emulator.counts()).toEqual({ GetCryptoKey: 1, CreateCryptoKeyVersion: 1, UpdateCryptoKeyPrimaryVersion: 1 });
    expect(emulator.key(keyName).primary).toBe(2);
    kms.invalidateTenant("tenant-a");
    expect((await kms.decrypt("tenant-a", v1Envelope, { doc: "7" })).equals(payload)).toBe(true);

    emulator.resetLog();
    const rewrapped = await kms.rewrap("tenant-a", v1Envelope, { doc: "7" });
    expect(emulator.counts()).toEqual({ Decrypt: 1, Encrypt: 1 });
    const before = parseEnvelope(v1Envelope);
    const after = parseEnvelope(rewrapped);
    expect({ before: before.keySection.keyVersion, after: after.keySection.keyVersion }).toEqual({ before: "1", after: "2" });
    expect(Buffer.from(after.keySection.wrappedKey).equals(before.keySection.wrappedKey)).toBe(false);
    const payloadOf = (p: typeof before) => Buffer.concat([p.iv, p.ciphertext, p.tag]);
    expect(payloadOf(after).equals(payloadOf(before))).toBe(true);
    expect(after.fixedHeader.equals(before.fixedHeader)).toBe(true);
    expect((await kms.decrypt("tenant-a", rewrapped, { doc: "7" })).equals(payload)).toBe(true);
    expect(parseEnvelope(await kms.encrypt("tenant-a", "new")).keySection.keyVersion).toBe("2");
    await provider.close();
  });
});
