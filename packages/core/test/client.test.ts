import { randomBytes } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import { createKms } from "../src/client";
import { FIXED_HEADER_BYTES, GCM_TAG_BYTES, IV_BYTES, KEY_SECTION_TAG_BYTES, parseEnvelope } from "../src/envelope";
import { isKmsError, type KmsError } from "../src/errors";
import { definitionOf } from "../src/provider";
import type { FakeProvider } from "./support/fake-provider";
import { fakeKms } from "./support/kms";

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(isKmsError(error)).toBe(true);
    return (error as KmsError).code;
  }
  throw new Error("expected a KmsError");
}

/** Holds every generateDataKey in flight until the returned release is called. */
function holdGenerate(provider: FakeProvider): () => void {
  let open!: () => void;
  provider.gate = new Promise<void>((resolve) => (open = resolve));
  return () => {
    provider.gate = undefined;
    open();
  };
}

/** Resolves once the provider has received `n` generateDataKey calls. */
async function generateCalls(provider: FakeProvider, n: number): Promise<void> {
  while (provider.calls.generateDataKey < n) await new Promise((resolve) => setImmediate(resolve));
}

describe("createKms: round trip", () => {
  it.each([0, 1, 1024, 1024 * 1024, 16 * 1024 * 1024])("encrypts and decrypts %i bytes", async (size) => {
    const { kms } = fakeKms();
    const plaintext = randomBytes(size);
    const envelope = await kms.encrypt("tenant-a", plaintext, { table: "notes" });
    // Fixed header, key section, its tag, IV, ciphertext (as long as the plaintext), GCM tag.
    const keySectionBytes = parseEnvelope(envelope).keySectionBytes.length;
    expect(envelope.length).toBe(FIXED_HEADER_BYTES + keySectionBytes + KEY_SECTION_TAG_BYTES + IV_BYTES + size + GCM_TAG_BYTES);
    // Buffer.equals: jest's deep equality walks 16 MiB byte by byte.
    expect((await kms.decrypt("tenant-a", envelope, { table: "notes" })).equals(plaintext)).toBe(true);
  });

  it("round-trips strings as UTF-8 and the base64url text form", async () => {
    const { kms } = fakeKms();
    const text = await kms.encryptToBase64Url("tenant-a", "grüße 👋");
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect((await kms.decryptFromBase64Url("tenant-a", text)).toString("utf8")).toBe("grüße 👋");
    expect(await codeOf(kms.decryptFromBase64Url("tenant-a", `${text}=`))).toBe("ENVELOPE_MALFORMED");
  });

  it("accepts the same context in any key order", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { a: "1", b: "2" });
    expect((await kms.decrypt("t", envelope, { b: "2", a: "1" })).toString()).toBe("x");
  });
});

describe("createKms: binding", () => {
  it("fails to decrypt tenant A's envelope as tenant B (shared default key)", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("tenant-a", "secret");
    expect(await codeOf(kms.decrypt("tenant-b", envelope))).toBe("ENVELOPE_AUTH_FAILED");
  });

  it("fails without any KMS call when the envelope's key is not the tenant's (BYOK keys)", async () => {
    const { kms, provider } = fakeKms({
      tenants: { keys: { "tenant-a": { provider: "fake", keyId: "key-a" }, "tenant-b": { provider: "fake", keyId: "key-b" } } },
    });
    const envelope = await kms.encrypt("tenant-a", "secret");
    const before = provider.kmsCalls;
    expect(await codeOf(kms.decrypt("tenant-b", envelope))).toBe("ENVELOPE_AUTH_FAILED");
    expect(provider.kmsCalls).toBe(before);
  });

  it("still decrypts under a tenant's previous key after a key change", async () => {
    const first = fakeKms({ tenants: { keys: { t: { provider: "fake", keyId: "old" } } } });
    const envelope = await first.kms.encrypt("t", "kept");
    // Same provider instance, new configuration: the tenant moved to "new" and lists "old" as previous.
    const moved = createKms({
      registry: [definitionOf(first.provider)],
      config: { providers: { fake: {} }, tenants: { keys: { t: { provider: "fake", keyId: "new", previous: [{ provider: "fake", keyId: "old" }] } } } },
      env: {},
    });
    expect((await moved.decrypt("t", envelope)).toString()).toBe("kept");
    const rewrapped = await moved.rewrap("t", envelope);
    const onlyNew = createKms({
      registry: [definitionOf(first.provider)],
      config: { providers: { fake: {} }, tenants: { keys: { t: { provider: "fake", keyId: "new" } } } },
      env: {},
    });
    expect(await codeOf(onlyNew.decrypt("t", envelope))).toBe("ENVELOPE_AUTH_FAILED");
    expect((await onlyNew.decrypt("t", rewrapped)).toString()).toBe("kept");
  });

  it("with the data key cached, every single-bit flip fails without any KMS call", async () => {
    const { kms, provider } = fakeKms();
    const envelope = await kms.encrypt("t", "payload", { k: "v" });
    await kms.decrypt("t", envelope, { k: "v" }); // cached from here on
    const unwrapsBefore = provider.calls.unwrapDataKey;
    for (let bit = 0; bit < envelope.length * 8; bit++) {
      const copy = Buffer.from(envelope);
      copy[bit >> 3]! ^= 1 << (bit & 7);
      const code = await codeOf(kms.decrypt("t", copy, { k: "v" }));
      expect(["ENVELOPE_MALFORMED", "ENVELOPE_AUTH_FAILED"]).toContain(code);
    }
    // A flip outside the key section hits the cache; one inside it misses, and its checksum stops it.
    expect(provider.calls.unwrapDataKey).toBe(unwrapsBefore);
    expect((await kms.decrypt("t", envelope, { k: "v" })).toString()).toBe("payload");
  });

  it("reports a corrupted key section as ENVELOPE_MALFORMED without any KMS call", async () => {
    const writer = fakeKms();
    const envelope = await writer.kms.encrypt("t", "x");
    const corrupted = Buffer.from(envelope);
    corrupted[60]! ^= 0x10; // inside the wrapped data key
    const { kms, provider } = fakeKms();
    expect(await codeOf(kms.decrypt("t", corrupted))).toBe("ENVELOPE_MALFORMED");
    expect(provider.kmsCalls).toBe(0);
  });

  it("fails with a different context, a missing context, or an extra pair", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { order: "42" });
    expect(await codeOf(kms.decrypt("t", envelope, { order: "43" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(await codeOf(kms.decrypt("t", envelope))).toBe("ENVELOPE_AUTH_FAILED");
    expect(await codeOf(kms.decrypt("t", envelope, { order: "42", extra: "" }))).toBe("ENVELOPE_AUTH_FAILED");
  });

  it("rejects bad inputs with INPUT_INVALID, never echoing them", async () => {
    const { kms } = fakeKms();
    expect(await codeOf(kms.encrypt("", "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("a\nb", "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("x".repeat(257), "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("t", 42 as never))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.decrypt("t", "not bytes" as never))).toBe("INPUT_INVALID");
    try {
      await kms.encrypt("t", "x", { "kms:tenant": "other-secret-value" });
      throw new Error("expected a failure");
    } catch (error) {
      expect((error as KmsError).code).toBe("INPUT_INVALID");
      expect((error as KmsError).message).not.toContain("other-secret-value");
    }
  });

  it("property: any single bit flip or truncation ends in ENVELOPE_MALFORMED or ENVELOPE_AUTH_FAILED", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("tenant-a", randomBytes(40), { k: "v" });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.nat({ max: envelope.length * 8 - 1 }).map((bit) => ({ bit })),
          fc.nat({ max: envelope.length - 1 }).map((length) => ({ length })),
        ),
        async (mutation) => {
          const bytes = Buffer.from(envelope);
          const mutated = "bit" in mutation ? bytes : bytes.subarray(0, mutation.length);
          if ("bit" in mutation) bytes[mutation.bit >> 3]! ^= 1 << (mutation.bit & 7);
          const code = await codeOf(kms.decrypt("tenant-a", mutated, { k: "v" }));
          expect(["ENVELOPE_MALFORMED", "ENVELOPE_AUTH_FAILED"]).toContain(code);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("createKms: data-key cache", () => {
  it("makes exactly one generateDataKey call for 1,000 concurrent encrypts of a cold tenant", async () => {
    const { kms, provider } = fakeKms();
    const envelopes = await Promise.all(Array.from({ length: 1000 }, (_, i) => kms.encrypt("cold", `m${i}`)));
    expect(provider.calls.generateDataKey).toBe(1);
    expect(new Set(envelopes.map((e) => e.toString("hex"))).size).toBe(1000);
    expect(kms.cacheStats().encrypt).toEqual({ entries: 1, hits: 0, misses: 1000 });
  });

  it("keeps separate data keys per tenant and per context", async () => {
    const { kms, provider } = fakeKms();
    await kms.encrypt("a", "x");
    await kms.encrypt("b", "x");
    await kms.encrypt("a", "x", { c: "1" });
    await kms.encrypt("a", "y");
    expect(provider.calls.generateDataKey).toBe(3);
  });

  it("replaces a data key after maxMessages", async () => {
    const { kms, provider, events } = fakeKms({ cache: { encrypt: { maxMessages: 3 } } });
    for (let i = 0; i < 7; i++) await kms.encrypt("t", "x");
    expect(provider.calls.generateDataKey).toBe(3);
    expect(events.filter((e) => e.type === "cache.evict").map((e) => e.type === "cache.evict" && e.reason)).toEqual(["max-messages", "max-messages"]);
  });

  it("replaces a data key after maxBytes, and gives an oversize message a key of its own", async () => {
    const { kms, provider } = fakeKms({ cache: { encrypt: { maxBytes: 100 } } });
    await kms.encrypt("t", Buffer.alloc(60));
    await kms.encrypt("t", Buffer.alloc(40));
    expect(provider.calls.generateDataKey).toBe(1);
    await kms.encrypt("t", Buffer.alloc(1));
    expect(provider.calls.generateDataKey).toBe(2);
    const big = await kms.encrypt("t", Buffer.alloc(101));
    expect(provider.calls.generateDataKey).toBe(3);
    expect((await kms.decrypt("t", big)).length).toBe(101);
    await kms.encrypt("t", Buffer.alloc(1));
    expect(provider.calls.generateDataKey).toBe(3); // the oversize key was never cached
  });

  it("replaces a data key after maxAge", async () => {
    const { kms, provider, clock } = fakeKms({ cache: { encrypt: { maxAgeMs: 1000 }, decrypt: { maxAgeMs: 1000 }, jitter: 0 } });
    await kms.encrypt("t", "x");
    await clock.advance(999);
    await kms.encrypt("t", "x");
    expect(provider.calls.generateDataKey).toBe(1);
    await clock.advance(1);
    await kms.encrypt("t", "x");
    expect(provider.calls.generateDataKey).toBe(2);
  });

  it("shortens max age by the jitter fraction", async () => {
    const { kms, provider, clock } = fakeKms(
      { cache: { encrypt: { maxAgeMs: 1000 }, jitter: 0.2 } },
      { random: () => 1 },
    );
    await kms.encrypt("t", "x");
    await clock.advance(799);
    await kms.encrypt("t", "x");
    expect(provider.calls.generateDataKey).toBe(1);
    await clock.advance(1);
    await kms.encrypt("t", "x");
    expect(provider.calls.generateDataKey).toBe(2);
  });

  it("decrypts cached data keys with no provider call, and coalesces cold decrypts into one unwrap", async () => {
    const { kms, provider } = fakeKms();
    const envelope = await kms.encrypt("t", "x");
    await Promise.all(Array.from({ length: 1000 }, () => kms.decrypt("t", envelope)));
    expect(provider.calls.unwrapDataKey).toBe(1);
    const before = provider.kmsCalls;
    for (let i = 0; i < 1000; i++) await kms.decrypt("t", envelope);
    expect(provider.kmsCalls).toBe(before);
  });

  it("with the provider failing, serves cached keys until the hard max age, then fails", async () => {
    const { kms, provider, clock } = fakeKms({
      cache: { encrypt: { maxAgeMs: 1000 }, decrypt: { maxAgeMs: 1000 }, hardMaxAgeMs: 5000, jitter: 0 },
    });
    const envelope = await kms.encrypt("t", "x");
    await kms.decrypt("t", envelope);
    provider.fail("KMS_UNAVAILABLE");
    await clock.advance(4999);
    expect((await kms.decrypt("t", envelope)).toString()).toBe("x");
    expect((await kms.decrypt("t", await kms.encrypt("t", "y"))).toString()).toBe("y");
    await clock.advance(1);
    // Three refreshes failed above, these are the 4th and 5th outage: the circuit opens on the 5th.
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_UNAVAILABLE");
    expect(await codeOf(kms.decrypt("t", envelope))).toBe("KMS_UNAVAILABLE");
    expect(await codeOf(kms.decrypt("t", envelope))).toBe("KMS_CIRCUIT_OPEN");
    expect(provider.calls.unwrapDataKey + provider.calls.generateDataKey).toBe(1 + 1 + 5);
  });

  it("does not serve stale keys when the failure is not an outage (access revoked)", async () => {
    const { kms, provider, clock } = fakeKms({ cache: { encrypt: { maxAgeMs: 1000 }, jitter: 0 } });
    await kms.encrypt("t", "x");
    provider.fail("KMS_ACCESS_DENIED");
    await clock.advance(1000);
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_ACCESS_DENIED");
  });

  it("keeps serving cached keys while the circuit is open", async () => {
    const { kms, provider, clock } = fakeKms({ resilience: { retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 2 } } });
    const envelope = await kms.encrypt("warm", "x");
    await kms.decrypt("warm", envelope); // warms the decrypt side too
    provider.fail("KMS_UNAVAILABLE");
    expect(await codeOf(kms.encrypt("cold-1", "x"))).toBe("KMS_UNAVAILABLE");
    expect(await codeOf(kms.encrypt("cold-2", "x"))).toBe("KMS_UNAVAILABLE");
    const calls = provider.kmsCalls;
    expect(await codeOf(kms.encrypt("cold-3", "x"))).toBe("KMS_CIRCUIT_OPEN");
    expect((await kms.decrypt("warm", await kms.encrypt("warm", "y"))).toString()).toBe("y");
    expect((await kms.decrypt("warm", envelope)).toString()).toBe("x");
    expect(provider.kmsCalls).toBe(calls);
    // Degraded, still ready: the cache serves the provider's tenants. With nothing cached it is down.
    const degraded = await kms.checkHealth();
    expect(degraded.ready).toBe(true);
    expect(degraded.providers.fake).toEqual({
      healthy: false,
      status: "degraded",
      insecure: false,
      circuit: "open",
      latencyMs: 0,
      cachedKeys: 2,
      lastError: { code: "KMS_CIRCUIT_OPEN", at: clock.now() },
      detail: "KMS_CIRCUIT_OPEN",
    });
    kms.invalidateTenant("warm");
    const down = await kms.checkHealth();
    expect(down.ready).toBe(false);
    expect(down.providers.fake).toMatchObject({ status: "down", cachedKeys: 0 });
  });

  it("evicts the least recently used entry beyond capacity", async () => {
    const { kms, provider } = fakeKms({ cache: { encrypt: { capacity: 2 } } });
    await kms.encrypt("a", "x");
    await kms.encrypt("b", "x");
    await kms.encrypt("a", "x");
    await kms.encrypt("c", "x"); // evicts b
    await kms.encrypt("a", "x");
    expect(provider.calls.generateDataKey).toBe(3);
    await kms.encrypt("b", "x");
    expect(provider.calls.generateDataKey).toBe(4);
  });

  it("invalidates a tenant's keys, and a load in flight does not install", async () => {
    const { kms, provider } = fakeKms();
    await kms.encrypt("a", "x");
    kms.invalidateTenant("a");
    await kms.encrypt("a", "x");
    expect(provider.calls.generateDataKey).toBe(2);

    const release = holdGenerate(provider);
    const inFlight = kms.encrypt("b", "x");
    await generateCalls(provider, 3);
    kms.invalidateTenant("b");
    release();
    await inFlight;
    // The key loaded before the invalidation was dropped; the waiting encrypt loaded a new one.
    expect(provider.calls.generateDataKey).toBe(4);
    await kms.encrypt("b", "x");
    expect(provider.calls.generateDataKey).toBe(4);
  });

  it("invalidateKey drops every cached data key of that key, whichever tenant loaded it, and no other key's", async () => {
    const { kms, provider } = fakeKms({
      tenants: { defaultKey: { provider: "fake", keyId: "default" }, keys: { own: { provider: "fake", keyId: "own-key" } } },
    });
    const envelopes = new Map<string, Buffer>();
    for (const tenant of ["a", "b", "own"]) {
      envelopes.set(tenant, await kms.encrypt(tenant, "x"));
      await kms.decrypt(tenant, envelopes.get(tenant)!);
    }
    expect(provider.calls).toMatchObject({ generateDataKey: 3, unwrapDataKey: 3 });
    kms.invalidateKey("fake", "default");
    for (const tenant of ["a", "b", "own"]) {
      await kms.encrypt(tenant, "x");
      await kms.decrypt(tenant, envelopes.get(tenant)!);
    }
    expect(provider.calls).toMatchObject({ generateDataKey: 5, unwrapDataKey: 5 });
    kms.invalidateKey("fake", "unknown-key");
    kms.invalidateKey("other-provider", "default");
    await kms.encrypt("a", "x");
    expect(provider.calls.generateDataKey).toBe(5);
  });

  it("invalidateKey keeps a load in flight under that key from installing", async () => {
    const { kms, provider } = fakeKms();
    const release = holdGenerate(provider);
    const inFlight = kms.encrypt("a", "x");
    await generateCalls(provider, 1);
    kms.invalidateKey("fake", "default");
    release();
    await inFlight;
    // The key loaded before the invalidation was dropped; the waiting encrypt loaded a new one.
    expect(provider.calls.generateDataKey).toBe(2);
    await kms.encrypt("a", "x");
    expect(provider.calls.generateDataKey).toBe(2);
  });

  it("invalidating one tenant leaves another tenant's load in flight alone", async () => {
    const { kms, provider } = fakeKms();
    const release = holdGenerate(provider);
    const inFlight = kms.encrypt("a", "x");
    await generateCalls(provider, 1);
    kms.invalidateTenant("b");
    release();
    await inFlight;
    await kms.encrypt("a", "x");
    expect(provider.calls.generateDataKey).toBe(1);
  });
});

describe("createKms: batches", () => {
  it("decryptMany returns per-item results with one unwrap per distinct wrapped key", async () => {
    const { kms, provider } = fakeKms();
    const a = await kms.encrypt("a", "1");
    const a2 = await kms.encrypt("a", "2");
    const b = await kms.encrypt("b", "3");
    const results = await kms.decryptMany([
      { tenantId: "a", envelope: a },
      { tenantId: "b", envelope: b },
      { tenantId: "a", envelope: a2 },
      { tenantId: "b", envelope: a },
      { tenantId: "a", envelope: Buffer.from("junk") },
    ]);
    expect(results.map((r) => (r.ok ? r.value.toString() : r.error.code))).toEqual(["1", "3", "2", "ENVELOPE_AUTH_FAILED", "ENVELOPE_MALFORMED"]);
    // a and a2 share a data key; b has its own; (b, a) is a distinct (tenant, key) pair and fails after its unwrap.
    expect(provider.calls.unwrapDataKey).toBe(3);
  });

  it("encryptMany shares one data key per (tenant, context)", async () => {
    const { kms, provider } = fakeKms();
    const results = await kms.encryptMany([
      ...Array.from({ length: 50 }, (_, i) => ({ tenantId: "a", plaintext: `a${i}` })),
      ...Array.from({ length: 50 }, (_, i) => ({ tenantId: "b", plaintext: `b${i}` })),
      { tenantId: "", plaintext: "bad" },
    ]);
    expect(provider.calls.generateDataKey).toBe(2);
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    expect(results[100]).toMatchObject({ ok: false, error: { code: "INPUT_INVALID" } });
  });
});

describe("createKms: guard, events, lifecycle", () => {
  it("rejects a provider that returns a data key of the wrong length", async () => {
    const { kms, provider } = fakeKms();
    provider.dataKeyLength = 16;
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_PROVIDER_ERROR");
  });

  it("puts no key material, plaintext or context values in events", async () => {
    const { kms, provider, events } = fakeKms({ cache: { encrypt: { maxMessages: 2 } } });
    const plaintext = "very-secret-plaintext";
    for (let i = 0; i < 5; i++) {
      const e = await kms.encrypt("t", plaintext, { ssn: "123-45-6789" });
      await kms.decrypt("t", e, { ssn: "123-45-6789" });
    }
    const text = JSON.stringify(events);
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["cache.hit", "cache.miss", "cache.evict", "kms.call"]));
    expect(text).not.toContain(plaintext);
    expect(text).not.toContain("123-45-6789");
    for (const key of provider.issuedKeys) {
      for (const encoding of ["hex", "base64", "base64url"] as const) expect(text).not.toContain(key.toString(encoding));
    }
  });

  it("times fresh cache hits for listeners (lookupMs) but not stale ones, which waited on the KMS", async () => {
    const { kms, provider, clock, events } = fakeKms({
      cache: { encrypt: { maxAgeMs: 1000 }, decrypt: { maxAgeMs: 1000 }, hardMaxAgeMs: 5000, jitter: 0 },
    });
    await kms.encrypt("t", "x");
    await kms.encrypt("t", "x");
    provider.fail("KMS_UNAVAILABLE");
    await clock.advance(1000);
    await kms.encrypt("t", "x"); // stale-if-error
    const hits = events.filter((e) => e.type === "cache.hit");
    expect(hits).toHaveLength(2);
    expect(hits[0]).toMatchObject({ side: "encrypt", stale: false, lookupMs: expect.any(Number) });
    expect((hits[0] as { lookupMs: number }).lookupMs).toBeGreaterThanOrEqual(0);
    expect(hits[1]).toEqual({ type: "cache.hit", side: "encrypt", tenantId: "t", provider: "fake", stale: true });
  });

  it("reports each provider's circuit state and bulkhead load", async () => {
    const { kms, provider } = fakeKms({ resilience: { retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 1 } } });
    expect(kms.providerStats()).toEqual({ fake: { circuit: "closed", inFlight: 0, queued: 0 } });
    provider.fail("KMS_UNAVAILABLE");
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_UNAVAILABLE");
    expect(kms.providerStats()).toEqual({ fake: { circuit: "open", inFlight: 0, queued: 0 } });
  });

  it("describes each current tenant key once (not previous keys), reporting a failure per key", async () => {
    const { kms, provider } = fakeKms({
      tenants: {
        defaultKey: { provider: "fake", keyId: "default" },
        keys: { a: { provider: "fake", keyId: "key-a", previous: [{ provider: "fake", keyId: "old-a" }] }, b: { provider: "fake", keyId: "default" } },
      },
    });
    expect(await kms.describeKeys()).toEqual([
      { provider: "fake", keyId: "default", description: { keyId: "default", enabled: true, currentVersion: "1" } },
      { provider: "fake", keyId: "key-a", description: { keyId: "key-a", enabled: true, currentVersion: "1" } },
    ]);
    expect(provider.calls.describeKey).toBe(2);
    provider.fail("KMS_ACCESS_DENIED");
    const failed = await kms.describeKeys();
    expect(failed.map((r) => [r.keyId, r.error?.code, r.description])).toEqual([
      ["default", "KMS_ACCESS_DENIED", undefined],
      ["key-a", "KMS_ACCESS_DENIED", undefined],
    ]);
  });

  it("reports health and permissions per provider", async () => {
    const { kms } = fakeKms();
    await kms.encrypt("t", "x");
    expect(await kms.checkHealth()).toEqual({
      ready: true,
      providers: { fake: { healthy: true, status: "up", insecure: false, circuit: "closed", latencyMs: 0, cachedKeys: 1 } },
      cache: { encrypt: { entries: 1, hits: 0, misses: 1 }, decrypt: { entries: 0, hits: 0, misses: 0 } },
    });
    expect(await kms.validatePermissions()).toEqual({
      ok: true,
      keys: [{ provider: "fake", keyId: "default", checks: [{ permission: "fake:use", ok: true }] }],
    });
  });

  it("uses an app-supplied tenant key resolver", async () => {
    const { kms, provider } = fakeKms({ tenants: {} }, { resolveTenantKeys: async (t) => ({ provider: "fake", keyId: `key-${t}` }) });
    await kms.decrypt("x", await kms.encrypt("x", "1"));
    expect(provider.calls.generateDataKey).toBe(1);
    const { kms: bad } = fakeKms({ tenants: {} }, { resolveTenantKeys: () => ({ provider: "elsewhere", keyId: "k" }) });
    expect(await codeOf(bad.encrypt("x", "1"))).toBe("KMS_CONFIG_INVALID");
  });

  it("closes providers, and refuses calls after close", async () => {
    const { kms, provider } = fakeKms();
    await kms.encrypt("t", "x");
    await kms.close();
    expect(provider.closed).toBe(true);
    expect(kms.cacheStats().encrypt.entries).toBe(0);
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_CLOSED");
  });
});

describe("createKms: binding does not rely on the provider", () => {
  /** Tenant b moved from the shared default key to its own key: it may still decrypt under "default". */
  const moved = {
    tenants: {
      defaultKey: { provider: "fake", keyId: "default" },
      keys: { b: { provider: "fake", keyId: "key-b", previous: [{ provider: "fake", keyId: "default" }] } },
    },
  };

  it("with a provider that ignores context, tenant and context still bind the envelope", async () => {
    const { kms, provider } = fakeKms(moved);
    provider.bindsContext = false;
    const envelope = await kms.encrypt("a", "secret", { row: "1" });
    expect(await codeOf(kms.decrypt("b", envelope, { row: "1" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(await codeOf(kms.decrypt("a", envelope, { row: "2" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect((await kms.decrypt("a", envelope, { row: "1" })).toString()).toBe("secret");
  });

  it("rewrap refuses another tenant's envelope before its data key reaches the new key", async () => {
    const { kms, provider } = fakeKms(moved);
    provider.bindsContext = false;
    const envelope = await kms.encrypt("a", "secret");
    expect(await codeOf(kms.rewrap("b", envelope))).toBe("ENVELOPE_AUTH_FAILED");
    expect(provider.calls.wrapDataKey).toBe(0);
  });

  it("rewrap refuses a different context before wrapping anything", async () => {
    const { kms, provider } = fakeKms(moved);
    provider.bindsContext = false;
    const envelope = await kms.encrypt("b", "secret", { row: "1" });
    expect(await codeOf(kms.rewrap("b", envelope, { row: "2" }))).toBe("ENVELOPE_AUTH_FAILED");
    expect(provider.calls.wrapDataKey).toBe(0);
    const rewrapped = await kms.rewrap("b", envelope, { row: "1" });
    expect(provider.calls.wrapDataKey).toBe(1);
    expect((await kms.decrypt("b", rewrapped, { row: "1" })).toString()).toBe("secret");
  });

  it("a cold decrypt with the wrong context does not fail a concurrent one with the right context", async () => {
    const { kms, provider } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { row: "1" });
    kms.invalidateTenant("t");
    let open!: () => void;
    provider.unwrapGate = new Promise<void>((resolve) => (open = resolve));
    const wrong = kms.decrypt("t", envelope, { row: "2" });
    const right = kms.decrypt("t", envelope, { row: "1" });
    open();
    expect(await codeOf(wrong)).toBe("ENVELOPE_AUTH_FAILED");
    expect((await right).toString()).toBe("x");
    expect(provider.calls.unwrapDataKey).toBe(2);
  });

  it("an authentication failure reads the same whether the KMS or the cached key refused", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { row: "1" });
    kms.invalidateTenant("t");
    const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => e as KmsError);
    const refusedByKms = (await failure(kms.decrypt("t", envelope, { row: "2" })))!;
    await kms.decrypt("t", envelope, { row: "1" }); // warms the cache
    const tampered = Buffer.from(envelope);
    tampered[tampered.length - 1]! ^= 1; // the GCM tag: same key section, so a cache hit
    const refusedLocally = (await failure(kms.decrypt("t", tampered, { row: "1" })))!;
    expect(refusedByKms).toMatchObject({ code: "ENVELOPE_AUTH_FAILED" });
    expect(refusedLocally).toMatchObject({ code: "ENVELOPE_AUTH_FAILED" });
    expect(refusedByKms.message).toBe(refusedLocally.message);
    expect(refusedByKms.provider).toBe(refusedLocally.provider);
    expect(refusedByKms.cause).toBe(refusedLocally.cause);
  });
});

describe("createKms: hostile inputs", () => {
  it("refuses key ids with control characters in configuration and from a resolver", async () => {
    expect(() => fakeKms({ tenants: { defaultKey: { provider: "fake", keyId: "a\u0000b" } } })).toThrow(
      expect.objectContaining({ code: "KMS_CONFIG_INVALID", issues: [expect.objectContaining({ path: "tenants.defaultKey.keyId" })] }),
    );
    const { kms, provider } = fakeKms({ tenants: {} }, { resolveTenantKeys: () => ({ provider: "fake", keyId: "k\n" }) });
    expect(await codeOf(kms.encrypt("t", "x"))).toBe("KMS_CONFIG_INVALID");
    const { kms: badPrevious } = fakeKms(
      { tenants: {} },
      { resolveTenantKeys: () => ({ provider: "fake", keyId: "k", previous: [{ provider: "fake", keyId: "" }] }) },
    );
    expect(await codeOf(badPrevious.encrypt("t", "x"))).toBe("KMS_CONFIG_INVALID");
    const { kms: notAnObject } = fakeKms({ tenants: {} }, { resolveTenantKeys: () => null as never });
    expect(await codeOf(notAnObject.encrypt("t", "x"))).toBe("KMS_CONFIG_INVALID");
    const { kms: previousNotArray } = fakeKms({ tenants: {} }, { resolveTenantKeys: () => ({ provider: "fake", keyId: "k", previous: 1 as never }) });
    expect(await codeOf(previousNotArray.encrypt("t", "x"))).toBe("KMS_CONFIG_INVALID");
    expect(provider.kmsCalls).toBe(0);
  });

  it("caches under long contexts and key ids as well (stored under a digest of the key)", async () => {
    const keyId = "k".repeat(1500);
    const { kms, provider } = fakeKms({ tenants: { defaultKey: { provider: "fake", keyId } } });
    const big = { a: "x".repeat(4000) };
    const other = { a: `${"x".repeat(3999)}y` };
    const first = await kms.encrypt("t", "1", big);
    const second = await kms.encrypt("t", "2", big);
    await kms.encrypt("t", "3", other);
    expect(provider.calls.generateDataKey).toBe(2);
    expect((await kms.decrypt("t", first, big)).toString()).toBe("1");
    expect((await kms.decrypt("t", second, big)).toString()).toBe("2");
    expect(provider.calls.unwrapDataKey).toBe(1);
    expect(await codeOf(kms.decrypt("t", first, other))).toBe("ENVELOPE_AUTH_FAILED");
  });

  it("a warm cache never lets an input through that validation would refuse", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { "0": "a" });
    expect((await kms.decrypt("t", envelope, { "0": "a" })).toString()).toBe("x"); // cached now
    expect(await codeOf(kms.decrypt("t", envelope, ["a"] as never))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.decrypt("t", envelope, { "0": 1 } as never))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.decrypt(1 as never, envelope, { "0": "a" }))).toBe("INPUT_INVALID");
    const reserved = await kms.encrypt("t", "y");
    expect((await kms.decrypt("t", reserved)).toString()).toBe("y");
    expect(await codeOf(kms.decrypt("t", reserved, { "kms:tenant": "t" }))).toBe("INPUT_INVALID");
  });

  it("an unpaired surrogate never shares a long cache key with U+FFFD (the key is hashed as UTF-16)", async () => {
    const { kms } = fakeKms();
    const pad = { p: "x".repeat(600) }; // makes the cache keys long enough to be stored as digests
    const envelope = await kms.encrypt("\uFFFDacme", "secret", pad);
    expect((await kms.decrypt("\uFFFDacme", envelope, pad)).toString()).toBe("secret"); // cached
    expect(await codeOf(kms.decrypt("\uD800acme", envelope, pad))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("\uD800acme", "x", pad))).toBe("INPUT_INVALID");
  });

  it("reads the context once: a getter answering differently cannot bind a cached key to another context", async () => {
    const { kms } = fakeKms();
    let reads = 0;
    const shifty = {};
    Object.defineProperty(shifty, "k", { enumerable: true, get: () => (reads++ === 0 ? "a" : "b") });
    const primed = await kms.encrypt("t", "prime", shifty as Record<string, string>);
    expect(reads).toBe(1);
    expect((await kms.decrypt("t", primed, { k: "a" })).toString()).toBe("prime");
    const honest = await kms.encrypt("t", "victim", { k: "a" });
    kms.invalidateTenant("t");
    expect((await kms.decrypt("t", honest, { k: "a" })).toString()).toBe("victim");
    expect(await codeOf(kms.decrypt("t", honest, { k: "b" }))).toBe("ENVELOPE_AUTH_FAILED");
  });

  it("ignores inherited context keys everywhere (they are neither bound nor sent), warm or cold", async () => {
    const { kms } = fakeKms();
    const inherited = Object.create({ "kms:tenant": "x", extra: "y" }) as Record<string, string>;
    const envelope = await kms.encrypt("t", "x", inherited);
    kms.invalidateTenant("t");
    expect((await kms.decrypt("t", envelope)).toString()).toBe("x");
    expect((await kms.decrypt("t", envelope, inherited)).toString()).toBe("x");
  });

  it("reports a bad tenant id as INPUT_INVALID even with no key to look up, and never asks the resolver about it", async () => {
    const { kms } = fakeKms({ tenants: { keys: { t: { provider: "fake", keyId: "k" } } } });
    expect(await codeOf(kms.encrypt("", "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("a\u0000b", "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("other", "x", { "kms:x": "v" }))).toBe("INPUT_INVALID");
    expect(await codeOf(kms.encrypt("other", "x"))).toBe("KMS_KEY_NOT_FOUND");
    const asked: string[] = [];
    const { kms: resolving } = fakeKms({ tenants: {} }, {
      resolveTenantKeys: (tenantId) => {
        asked.push(tenantId);
        return { provider: "fake", keyId: "k" };
      },
    });
    expect(await codeOf(resolving.encrypt("", "x"))).toBe("INPUT_INVALID");
    expect(await codeOf(resolving.encrypt("t", "x", { "kms:tenant": "t" }))).toBe("INPUT_INVALID");
    expect(await codeOf(resolving.decrypt("t", await resolving.encrypt("t", "x"), [] as never))).toBe("INPUT_INVALID");
    expect(asked).toEqual(["t"]);
  });

  it("decrypts with the context's pairs in any order, warm or cold", async () => {
    const { kms } = fakeKms();
    const envelope = await kms.encrypt("t", "x", { a: "1", b: "2" });
    expect((await kms.decrypt("t", envelope, { a: "1", b: "2" })).toString()).toBe("x");
    expect((await kms.decrypt("t", envelope, { b: "2", a: "1" })).toString()).toBe("x");
    expect((await kms.decrypt("t", envelope, { b: "2", a: "1" })).toString()).toBe("x");
  });

  it("refuses a context over 8192 canonical bytes without any KMS call", async () => {
    const { kms, provider } = fakeKms();
    const big = { a: "x".repeat(4096), b: "x".repeat(4096) };
    expect(await codeOf(kms.encrypt("t", "x", big))).toBe("INPUT_INVALID");
    expect(provider.kmsCalls).toBe(0);
  });

  it("builds the KMS context from the context as it was when the call was made", async () => {
    let release!: () => void;
    const resolverGate = new Promise<void>((resolve) => (release = resolve));
    const { kms } = fakeKms({ tenants: {} }, {
      resolveTenantKeys: async () => {
        await resolverGate;
        return { provider: "fake", keyId: "k" };
      },
    });
    const context: Record<string, string> = { row: "1" };
    const pending = kms.encrypt("t", "x", context);
    context.row = "2"; // the caller reuses its object while the resolver runs
    release();
    const envelope = await pending;
    kms.invalidateTenant("t");
    expect((await kms.decrypt("t", envelope, { row: "1" })).toString()).toBe("x");
  });

  it("reports a batch item that is not an object as INPUT_INVALID, and a batch that is not an array", async () => {
    const { kms } = fakeKms();
    const results = await kms.encryptMany([null as never, { tenantId: "t", plaintext: "x" }]);
    expect(results[0]).toMatchObject({ ok: false, error: { code: "INPUT_INVALID" } });
    expect(results[1]).toMatchObject({ ok: true });
    expect(await codeOf(kms.decryptMany(null as never))).toBe("INPUT_INVALID");
  });
});
