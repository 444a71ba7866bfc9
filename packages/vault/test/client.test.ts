import { afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import { type Clock, type KmsClient, type KmsEvent, ManualClock, createKms, definitionOf, isKmsError, parseEnvelope } from "@kms/core";
import { VaultEmulator } from "@kms/testkit/emulators";
import { type VaultKmsProvider, vaultKms, vaultKmsProvider } from "../src";

const TOKEN = "client-test-token";
const KEY = "tenants";
const PATHS = [`transit/datakey/plaintext/${KEY}`, `transit/encrypt/${KEY}`, `transit/decrypt/${KEY}`, `transit/keys/${KEY}`];

let emulator: VaultEmulator;
let endpoint: string;
const clients: KmsClient[] = [];

beforeEach(async () => {
  emulator = new VaultEmulator({ tokens: { [TOKEN]: { name: "app", paths: [...PATHS, `transit/keys/${KEY}/rotate`] } } });
  endpoint = await emulator.start();
  emulator.createKey(KEY);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((kms) => kms.close()));
  await emulator.stop();
});

interface Setup {
  resilience?: Record<string, unknown>;
  clock?: Clock;
  /** A provider instance instead of the configuration entry. */
  provider?: VaultKmsProvider;
}

/** A client configured as an app would: `providers.vault` settings through the `vaultKms` definition. */
function newKms(setup: Setup = {}): { kms: KmsClient; events: KmsEvent[] } {
  const events: KmsEvent[] = [];
  const kms = createKms({
    registry: [setup.provider ? definitionOf(setup.provider, "@kms/vault") : vaultKms],
    config: {
      providers: { vault: setup.provider ? {} : { endpoint, auth: { token: TOKEN } } },
      tenants: { defaultKey: { provider: "vault", keyId: KEY } },
      resilience: setup.resilience ?? {},
    },
    env: {},
    onEvent: (e) => events.push(e),
    ...(setup.clock ? { clock: setup.clock } : {}),
  });
  clients.push(kms);
  return { kms, events };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isKmsError(error)) return error.code;
    throw error;
  }
  throw new Error("expected the call to fail");
}

const calls = (events: KmsEvent[]) =>
  events.filter((e): e is Extract<KmsEvent, { type: "kms.call" }> => e.type === "kms.call").map((e) => `${e.operation}:${e.code ?? "ok"}`);
const circuit = (events: KmsEvent[]) => events.filter((e) => e.type === "circuit.state").map((e) => (e.type === "circuit.state" ? `${e.from}>${e.to}` : ""));

describe("the data-key cache in front of Vault", () => {
  it("cold path after a start-up health check: exactly 1 Vault call (datakey); 1,000 cached encrypts after warm-up: 0", async () => {
    const { kms } = newKms();
    expect((await kms.checkHealth()).ready).toBe(true); // reads the key once: it is derived, and remembered
    expect(emulator.counts()).toEqual({ "sys/health": 1, "keys.read": 1 });
    emulator.resetLog();

    const first = await kms.encrypt("tenant-a", "warm-up");
    expect(emulator.counts()).toEqual({ datakey: 1 });
    emulator.resetLog();
    for (let i = 0; i < 1000; i++) await kms.encrypt("tenant-a", `message ${i}`);
    expect(emulator.count()).toBe(0);

    expect((await kms.decrypt("tenant-a", first)).toString("utf8")).toBe("warm-up");
    expect(emulator.counts()).toEqual({ decrypt: 1 });
    for (let i = 0; i < 1000; i++) await kms.decrypt("tenant-a", first);
    expect(emulator.counts()).toEqual({ decrypt: 1 });
  });

  it("cold path without a prior health check: the key is read once (derived check), then 1 datakey per tenant", async () => {
    const { kms } = newKms();
    await kms.encrypt("tenant-a", "x");
    expect(emulator.counts()).toEqual({ "keys.read": 1, datakey: 1 });
    emulator.resetLog();
    await kms.encrypt("tenant-b", "x");
    expect(emulator.counts()).toEqual({ datakey: 1 });
  });
});

describe("resilience against Vault's failures", () => {
  it("throttling (429) is retried with backoff and succeeds once it clears; past maxAttempts it is KMS_THROTTLED, and never opens the circuit", async () => {
    const { kms, events } = newKms({ resilience: { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 }, circuitBreaker: { failureThreshold: 2 } } });
    await kms.checkHealth();
    emulator.resetLog();
    events.length = 0;

    emulator.inject("datakey", { kind: "throttle" }, { times: 2 });
    expect((await kms.decrypt("tenant-a", await kms.encrypt("tenant-a", "after throttling"))).toString("utf8")).toBe("after throttling");
    expect(emulator.requests.filter((r) => r.operation === "datakey").map((r) => r.status)).toEqual([429, 429, 200]);
    expect(calls(events).filter((c) => c.startsWith("generateDataKey"))).toEqual(["generateDataKey:KMS_THROTTLED", "generateDataKey:KMS_THROTTLED", "generateDataKey:ok"]);

    emulator.resetLog();
    const throttled = emulator.inject("datakey", { kind: "throttle" }, { times: 3 });
    expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_THROTTLED");
    expect(emulator.counts()).toEqual({ datakey: 3 });
    expect(throttled.remaining).toBe(0); // cleared
    await kms.encrypt("tenant-b", "x");
    expect(emulator.counts()).toEqual({ datakey: 4 });
    expect(circuit(events)).toEqual([]);
  });

  it("a sealed Vault opens the circuit after failureThreshold attempts (exact count at Vault); cached keys keep serving; it closes after recovery", async () => {
    const clock = new ManualClock();
    const { kms, events } = newKms({ clock, resilience: { retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 10_000 } } });
    const cached = await kms.encrypt("tenant-a", "cached before the outage");
    await kms.decrypt("tenant-a", cached);
    emulator.seal();
    emulator.resetLog();

    for (let i = 0; i < 3; i++) expect(await codeOf(kms.encrypt(`tenant-${i}`, "x"))).toBe("KMS_UNAVAILABLE");
    expect(circuit(events)).toEqual(["closed>open"]);
    expect(await codeOf(kms.encrypt("tenant-x", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["datakey", 503],
      ["datakey", 503],
      ["datakey", 503],
    ]);
    // Cached keys keep serving while the circuit is open: no Vault call.
    expect((await kms.decrypt("tenant-a", await kms.encrypt("tenant-a", "still served"))).toString("utf8")).toBe("still served");
    expect((await kms.decrypt("tenant-a", cached)).toString("utf8")).toBe("cached before the outage");
    expect(emulator.count()).toBe(3);

    emulator.unseal();
    await clock.advance(10_000);
    expect(circuit(events)).toEqual(["closed>open", "open>half-open"]);
    await kms.encrypt("tenant-x", "x");
    expect(circuit(events)).toEqual(["closed>open", "open>half-open", "half-open>closed"]);
    expect(emulator.requests.slice(3).map((r) => [r.operation, r.status])).toEqual([["datakey", 200]]);
  });

  it("an outage (connection refused) opens the circuit after failureThreshold attempts, none reaching Vault; it closes once Vault is back", async () => {
    const clock = new ManualClock();
    const { kms, events } = newKms({ clock, resilience: { retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 5_000 } } });
    const cached = await kms.encrypt("tenant-a", "cached");
    await kms.decrypt("tenant-a", cached);
    events.length = 0;
    emulator.resetLog();
    const restore = await emulator.outage();

    expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_UNAVAILABLE");
    expect(await codeOf(kms.encrypt("tenant-c", "x"))).toBe("KMS_UNAVAILABLE");
    expect(await codeOf(kms.encrypt("tenant-d", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect(calls(events)).toEqual(["generateDataKey:KMS_UNAVAILABLE", "generateDataKey:KMS_UNAVAILABLE", "generateDataKey:KMS_CIRCUIT_OPEN"]);
    expect((await kms.decrypt("tenant-a", cached)).toString("utf8")).toBe("cached");
    await kms.encrypt("tenant-a", "cached keys keep serving");
    expect(emulator.count()).toBe(0);

    await restore();
    await clock.advance(5_000);
    await kms.encrypt("tenant-d", "x");
    expect(circuit(events)).toEqual(["closed>open", "open>half-open", "half-open>closed"]);
    expect(emulator.counts()).toEqual({ datakey: 1 });
  });

  it("latency beyond resilience.timeoutMs is KMS_TIMEOUT; the retry after it succeeds", async () => {
    const { kms, events } = newKms({ resilience: { timeoutMs: 500, retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 5 } } });
    await kms.checkHealth();
    emulator.resetLog();
    emulator.inject("datakey", { kind: "latency", ms: 30_000 }, { times: 1 });
    await kms.encrypt("tenant-a", "x");
    expect(calls(events).filter((c) => c.startsWith("generateDataKey"))).toEqual(["generateDataKey:KMS_TIMEOUT", "generateDataKey:ok"]);
    // The timed-out request is still held by the emulator (logged once answered); the retry was answered.
    expect([emulator.count("datakey"), emulator.pending]).toEqual([1, 1]);

    emulator.inject("datakey", { kind: "latency", ms: 30_000 });
    expect(await codeOf(kms.encrypt("tenant-b", "x"))).toBe("KMS_TIMEOUT");
  });

  it("integrity failures (Vault's 500 'cipher: message authentication failed') and permission failures are never retried", async () => {
    const { kms } = newKms({ resilience: { retry: { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 5 } } });
    const envelope = await kms.encrypt("tenant-a", "bound to doc 1", { doc: "1" });
    emulator.resetLog();

    // Another context: core's checks pass the envelope on, and Vault's derived key refuses the context.
    expect(await codeOf(kms.decrypt("tenant-a", envelope, { doc: "2" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([["decrypt", 500]]);

    emulator.resetLog();
    emulator.setTokenPaths(TOKEN, PATHS.filter((p) => !p.includes("/decrypt/")));
    expect(await codeOf(kms.decrypt("tenant-a", envelope, { doc: "1" }))).toBe("KMS_ACCESS_DENIED");
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([["decrypt", 403]]);
  });
});

describe("rotation", () => {
  it("an envelope under key version 1 decrypts after rotateKey; rewrap moves it to version 2 without touching its payload", async () => {
    const provider = vaultKmsProvider({ endpoint, auth: { token: TOKEN } });
    const { kms } = newKms({ provider });
    const old = await kms.encrypt("tenant-a", "written under v1", { doc: "7" });
    const before = parseEnvelope(old);
    expect(before.keySection.keyVersion).toBe("1");
    expect(Buffer.from(before.keySection.wrappedKey).toString("utf8")).toMatch(/^vault:v1:/);

    expect(await provider.rotateKey(KEY)).toEqual({ keyId: KEY, previousVersion: "1", currentVersion: "2" });
    kms.invalidateTenant("tenant-a");
    emulator.resetLog();
    expect((await kms.decrypt("tenant-a", old, { doc: "7" })).toString("utf8")).toBe("written under v1");
    expect(emulator.counts()).toEqual({ decrypt: 1 });

    emulator.resetLog();
    const rewrapped = await kms.rewrap("tenant-a", old, { doc: "7" });
    expect(emulator.counts()).toEqual({ decrypt: 1, encrypt: 1 });
    const after = parseEnvelope(rewrapped);
    expect(after.keySection).toMatchObject({ providerId: "vault", keyId: KEY, keyVersion: "2" });
    expect(Buffer.from(after.keySection.wrappedKey).toString("utf8")).toMatch(/^vault:v2:/);
    // The payload (everything after the key section) is byte for byte the same.
    expect(Buffer.concat([after.iv, after.ciphertext, after.tag]).equals(Buffer.concat([before.iv, before.ciphertext, before.tag]))).toBe(true);
    expect((await kms.decrypt("tenant-a", rewrapped, { doc: "7" })).toString("utf8")).toBe("written under v1");
  });
});

describe("life cycle and configuration", () => {
  it("close() closes the provider: later calls fail with KMS_CLOSED and reach no Vault", async () => {
    const provider = vaultKmsProvider({ endpoint, auth: { token: TOKEN } });
    const { kms } = newKms({ provider });
    await kms.encrypt("tenant-a", "x");
    await kms.close();
    emulator.resetLog();
    expect(await codeOf(kms.encrypt("tenant-a", "x"))).toBe("KMS_CLOSED");
    expect(await codeOf(provider.describeKey(KEY))).toBe("KMS_CLOSED");
    expect(emulator.count()).toBe(0);
  });

  it("a configuration-file entry with AppRole and a namespace: every request, login included, carries the namespace", async () => {
    await emulator.stop();
    emulator = new VaultEmulator({ appRoles: { app: { roleId: "role", secretId: "secret", paths: PATHS } } });
    endpoint = await emulator.start();
    emulator.createKey(KEY);
    const kms = createKms({
      registry: [vaultKms],
      config: {
        providers: { vault: { endpoint, namespace: "team-a", auth: { appRole: { roleId: "role", secretId: "secret" } } } },
        tenants: { defaultKey: { provider: "vault", keyId: KEY } },
      },
      env: {},
    });
    clients.push(kms);
    const report = await kms.validatePermissions();
    expect(report.ok).toBe(true);
    expect((await kms.decrypt("tenant-a", await kms.encrypt("tenant-a", "hello"))).toString("utf8")).toBe("hello");
    expect(emulator.counts()).toEqual({ "approle.login": 1, "sys/capabilities-self": 1, "keys.read": 1, datakey: 1, decrypt: 1 });
    expect(emulator.requests.every((r) => r.details?.namespace === "team-a")).toBe(true);
  });
});
