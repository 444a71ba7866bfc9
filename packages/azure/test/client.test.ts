import { randomBytes, randomUUID } from "node:crypto";
import { crc32 } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { type CreateKmsOptions, type KmsClient, type KmsConfigInput, type KmsError, type KmsEvent, ManualClock, createKms, isKmsError, parseEnvelope } from "@kms/core";
import { AZURE_EMULATOR_IDENTITY, AzureKeyVaultEmulator } from "@kms/testkit/emulators";
import { azureKeyVault, azureKeyVaultProvider } from "../src";

/** A latency that holds a request past any deadline here; the emulator's stop() releases it (after every test, so it is never logged mid-file). */
const HELD_MS = 600_000;

const emulator = new AzureKeyVaultEmulator();
const clients: KmsClient[] = [];

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

beforeEach(() => {
  emulator.resetLog();
});

afterEach(async () => {
  emulator.clearFaults();
  emulator.setPermissions(AZURE_EMULATOR_IDENTITY, "*");
  emulator.throttleRetryAfterSeconds = 1;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** The provider's settings as a configuration file would hold them (the credential is given in code). */
const settings = () => ({ vaultUrl: emulator.url, ca: emulator.ca, disableChallengeResourceVerification: true });

/** A client configured as an app would, with a fresh RSA key as every tenant's key. */
async function setUp(resilience: KmsConfigInput["resilience"] = {}, options: Partial<CreateKmsOptions> = {}) {
  const name = `client-${randomUUID()}`;
  await emulator.createKey(name);
  const events: KmsEvent[] = [];
  const kms = newClient(name, resilience, { onEvent: (event) => events.push(event), ...options });
  emulator.resetLog();
  /** The kms.call events so far, as `<operation> <attempt> <outcome or code>`. */
  const calls = () => events.flatMap((e) => (e.type === "kms.call" ? [`${e.operation} ${e.attempt} ${e.code ?? e.outcome}`] : []));
  const circuit = () => events.flatMap((e) => (e.type === "circuit.state" ? [`${e.from}→${e.to}`] : []));
  return { kms, name, calls, circuit };
}

function newClient(name: string, resilience: KmsConfigInput["resilience"] = {}, options: Partial<CreateKmsOptions> = {}): KmsClient {
  const kms = createKms({
    registry: [azureKeyVault({ credential: emulator.credential() })],
    config: {
      providers: { "azure-key-vault": settings() },
      tenants: { defaultKey: { provider: "azure-key-vault", keyId: name } },
      resilience,
    },
    env: {},
    ...options,
  });
  clients.push(kms);
  return kms;
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

/** Waits (in real time) until the emulator has answered `n` requests. */
async function answered(n: number): Promise<void> {
  while (emulator.count() < n) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe("the data-key cache in front of Key Vault", () => {
  it("the cold path makes 1 WrapKey (after the new client's 401 challenge); 1,000 encrypts after warm-up make none", async () => {
    const { kms } = await setUp();
    const first = await kms.encrypt("tenant-a", "warm-up", { table: "notes" });
    expect(emulator.requests.map((r) => `${r.operation} ${r.status}`)).toEqual(["Challenge 401", "WrapKey 200"]);
    const envelopes = [];
    for (let i = 0; i < 1000; i++) envelopes.push(await kms.encrypt("tenant-a", `message ${i}`, { table: "notes" }));
    expect(emulator.counts()).toEqual({ Challenge: 1, WrapKey: 1 });
    const wrappedKeyOf = (envelope: Buffer) => Buffer.from(parseEnvelope(envelope).keySection.wrappedKey).toString("hex");
    expect(new Set(envelopes.map(wrappedKeyOf))).toEqual(new Set([wrappedKeyOf(first)]));
    // Another tenant on the same key: its own data key, and no new challenge (the client is shared).
    await kms.encrypt("tenant-b", "other tenant");
    expect(emulator.counts()).toEqual({ Challenge: 1, WrapKey: 2 });
  });

  it("decrypt: the first of a data key's envelopes costs 1 UnwrapKey (after a challenge), every later one none", async () => {
    const writer = await setUp();
    const envelopes = [];
    for (let i = 0; i < 100; i++) envelopes.push(await writer.kms.encrypt("tenant-a", `message ${i}`));
    // A second client (another instance of the app) starts with empty caches.
    const reader = newClient(writer.name);
    emulator.resetLog();
    expect((await reader.decrypt("tenant-a", envelopes[0]!)).toString()).toBe("message 0");
    expect(emulator.counts()).toEqual({ Challenge: 1, UnwrapKey: 1 });
    for (let i = 0; i < 100; i++) expect((await reader.decrypt("tenant-a", envelopes[i]!)).toString()).toBe(`message ${i}`);
    // No GetKey: the SDK's CryptographyClient is built so that it does not fetch the key first.
    expect(emulator.counts()).toEqual({ Challenge: 1, UnwrapKey: 1 });
  });
});

describe("resilience against Key Vault faults", () => {
  it("429 is retried after Retry-After (not the shorter backoff) and succeeds once it clears: exactly 3 WrapKey", async () => {
    const clock = new ManualClock();
    const { kms, calls } = await setUp({ retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 5000 } }, { clock, random: () => 1 });
    emulator.throttleRetryAfterSeconds = 2;
    emulator.inject("WrapKey", { kind: "throttle" }, { times: 2 });
    const encrypted = kms.encrypt("tenant-a", "after the throttling");
    await answered(2); // the challenge, then the throttled WrapKey
    // Backoff alone would wait 100 ms then 200 ms; Retry-After: 2 makes each wait 2000 ms.
    await clock.advance(1999);
    expect(emulator.count("WrapKey")).toBe(1);
    await clock.advance(1);
    await answered(3);
    await clock.advance(1999);
    expect(emulator.count("WrapKey")).toBe(2);
    await clock.advance(1);
    const envelope = await encrypted;
    expect(emulator.requests.map((r) => `${r.operation} ${r.status} ${r.fault ?? "-"}`)).toEqual([
      "Challenge 401 -",
      "WrapKey 429 throttle",
      "WrapKey 429 throttle",
      "WrapKey 200 -",
    ]);
    expect(calls()).toEqual(["generateDataKey 1 KMS_THROTTLED", "generateDataKey 2 KMS_THROTTLED", "generateDataKey 3 success"]);
    expect((await kms.decrypt("tenant-a", envelope)).toString()).toBe("after the throttling");
  });

  it("5xx answers open the circuit after failureThreshold calls; cached keys keep serving; it closes after recovery", async () => {
    const clock = new ManualClock();
    const { kms, circuit } = await setUp({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 1000 } }, { clock });
    const cached = await kms.encrypt("tenant-a", "cached before the outage");
    await kms.decrypt("tenant-a", cached); // warms the decrypt side too (encrypt fills only its own cache)
    emulator.resetLog();
    const fault = emulator.inject("*", { kind: "serverError", status: 503 });
    for (let i = 0; i < 3; i++) expect(await codeOf(kms.encrypt(`tenant-${i + 1}-cold`, "x"))).toBe("KMS_UNAVAILABLE");
    expect(circuit()).toEqual(["closed→open"]);
    expect(await codeOf(kms.encrypt("tenant-4-cold", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect(emulator.counts()).toEqual({ WrapKey: 3 }); // the open circuit let nothing through
    for (let i = 0; i < 50; i++) await kms.encrypt("tenant-a", `during the outage ${i}`);
    expect((await kms.decrypt("tenant-a", cached)).toString()).toBe("cached before the outage");
    expect(emulator.count()).toBe(3);
    fault.clear();
    await clock.advance(1000);
    expect(circuit()).toEqual(["closed→open", "open→half-open"]);
    expect(await kms.decrypt("tenant-5-cold", await kms.encrypt("tenant-5-cold", "back"))).toEqual(Buffer.from("back"));
    expect(circuit()).toEqual(["closed→open", "open→half-open", "half-open→closed"]);
    expect(emulator.counts()).toEqual({ WrapKey: 4, UnwrapKey: 1 });
  });

  it("an outage (connection refused) opens the circuit the same way, and it closes once the emulator listens again", async () => {
    const clock = new ManualClock();
    const { kms, calls, circuit } = await setUp({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 500 } }, { clock });
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
    expect(emulator.counts()).toEqual({ Challenge: 1, WrapKey: 2 }); // refused connections never reached it
  });

  it("a call slower than resilience.timeoutMs fails with KMS_TIMEOUT, and the retry gets through", async () => {
    const { kms, calls } = await setUp({ timeoutMs: 500, retry: { maxAttempts: 1 } });
    emulator.inject("WrapKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    expect(await codeOf(kms.encrypt("tenant-a", "x"))).toBe("KMS_TIMEOUT");
    expect(calls()).toEqual(["generateDataKey 1 KMS_TIMEOUT"]);

    const retrying = await setUp({ timeoutMs: 500, retry: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0 } });
    emulator.inject("WrapKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    expect((await retrying.kms.decrypt("tenant-a", await retrying.kms.encrypt("tenant-a", "y"))).toString()).toBe("y");
    expect(retrying.calls()).toEqual(["generateDataKey 1 KMS_TIMEOUT", "generateDataKey 2 success", "unwrapDataKey 1 success"]);
  });
});

describe("failures that are never retried", () => {
  it("integrity failures (wrong context, wrong tenant, tampered wrapped key): one UnwrapKey each, ENVELOPE_AUTH_FAILED", async () => {
    const { kms, calls } = await setUp({ retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } });
    const envelope = await kms.encrypt("tenant-a", "integrity", { doc: "1" });
    // The wrapped key flipped inside the envelope, with the key section's checksum fixed, so that
    // the envelope parses and only Key Vault can tell.
    const tampered = Buffer.from(envelope);
    const parsed = parseEnvelope(tampered);
    const wrapped = parsed.keySection.wrappedKey; // a view into `tampered`
    wrapped[30] = wrapped[30]! ^ 0x01;
    const ks = parsed.keySectionBytes;
    ks.writeUInt32BE(crc32(ks.subarray(0, ks.length - 4)), ks.length - 4);
    emulator.resetLog();
    // RSA-OAEP binds no context: Key Vault unwraps, and core's key-section HMAC (keyed from the data key) refuses.
    expect(await codeOf(kms.decrypt("tenant-a", envelope, { doc: "2" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("UnwrapKey")).toBe(1);
    expect(await codeOf(kms.decrypt("tenant-b", envelope, { doc: "1" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("UnwrapKey")).toBe(2);
    expect(await codeOf(kms.decrypt("tenant-a", tampered, { doc: "1" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count("UnwrapKey")).toBe(3);
    expect(emulator.requests.map((r) => `${r.operation} ${r.status}`)).toEqual(["Challenge 401", "UnwrapKey 200", "UnwrapKey 200", "UnwrapKey 400"]);
    expect(calls().slice(1)).toEqual(["unwrapDataKey 1 success", "unwrapDataKey 1 success", "unwrapDataKey 1 ENVELOPE_AUTH_FAILED"]);
  });

  it("permission failures: one call each, KMS_ACCESS_DENIED", async () => {
    const { kms } = await setUp({ retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } });
    const envelope = await kms.encrypt("tenant-a", "permissions");
    emulator.setPermissions(AZURE_EMULATOR_IDENTITY, ["get"]);
    emulator.resetLog();
    expect(await codeOf(kms.decrypt("tenant-a", envelope))).toBe("KMS_ACCESS_DENIED");
    expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_ACCESS_DENIED");
    expect(emulator.counts()).toEqual({ Challenge: 1, UnwrapKey: 1, WrapKey: 1 });
  });
});

describe("rotation and rewrap", () => {
  it("an envelope under key version 1 decrypts after rotateKey; rewrap moves it to the new version without touching its payload", async () => {
    const { kms, name } = await setUp();
    const provider = azureKeyVaultProvider({ ...settings(), credential: emulator.credential() });
    try {
      const payload = randomBytes(512);
      const v1Envelope = await kms.encrypt("tenant-a", payload, { doc: "7" });
      const [v1] = emulator.versions(name).map((v) => v.version);
      expect(parseEnvelope(v1Envelope).keySection.keyVersion).toBe(v1);

      const rotation = await provider.rotateKey(name);
      const [, v2] = emulator.versions(name).map((v) => v.version);
      expect(rotation).toEqual({ keyId: name, previousVersion: v1, currentVersion: v2 });
      kms.invalidateTenant("tenant-a"); // drop the cached data keys of version 1
      emulator.resetLog();
      expect((await kms.decrypt("tenant-a", v1Envelope, { doc: "7" })).equals(payload)).toBe(true);
      // The unwrap went to version 1 exactly.
      expect(emulator.requests.filter((r) => r.operation === "UnwrapKey").map((r) => r.details?.version)).toEqual([v1]);

      emulator.resetLog();
      const rewrapped = await kms.rewrap("tenant-a", v1Envelope, { doc: "7" });
      expect(emulator.counts()).toEqual({ UnwrapKey: 1, WrapKey: 1 });
      const before = parseEnvelope(v1Envelope);
      const after = parseEnvelope(rewrapped);
      expect({ before: before.keySection.keyVersion, after: after.keySection.keyVersion }).toEqual({ before: v1, after: v2 });
      expect(Buffer.from(after.keySection.wrappedKey).equals(before.keySection.wrappedKey)).toBe(false);
      const payloadOf = (p: typeof before) => Buffer.concat([p.iv, p.ciphertext, p.tag]);
      expect(payloadOf(after).equals(payloadOf(before))).toBe(true);
      expect(after.fixedHeader.equals(before.fixedHeader)).toBe(true);
      expect((await kms.decrypt("tenant-a", rewrapped, { doc: "7" })).equals(payload)).toBe(true);
      expect(parseEnvelope(await kms.encrypt("tenant-a", "new")).keySection.keyVersion).toBe(v2);
    } finally {
      await provider.close();
    }
  });
});
