/**
 * The shared cache tier against a real Redis (REDIS_URL, default 127.0.0.1:6379): sharing between
 * instances, distributed single-flight, tampering with Redis directly, a scan of every value for
 * key material, revocation, sealing-key rotation, and Redis slow or down (a private redis-server).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@jest/globals";
import { createClient } from "@keyv/redis";
import { createKms } from "../src/client";
import { ManualClock } from "../src/clock";
import { type KmsConfigInput, validateConfig } from "../src/config";
import { KmsError } from "../src/errors";
import type { KmsEvent } from "../src/events";
import { definitionOf } from "../src/provider";
import type { SharedCacheStore } from "../src/shared-cache";
import { keyvSharedCacheStore } from "../src/shared-cache-store";
import { FakeProvider } from "./support/fake-provider";
import { fakeKms } from "./support/kms";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const redis = createClient({ url: REDIS_URL });
let prefixes = 0;
const usedPrefixes: string[] = [];
const openClients: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  await redis.connect();
});

afterEach(async () => {
  await Promise.all(openClients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  for (const prefix of usedPrefixes) {
    const names = await scan(prefix);
    if (names.length > 0) await redis.del(names);
  }
  redis.destroy();
});

function newPrefix(): string {
  const prefix = `kms-test-${process.pid}-${Date.now()}-${prefixes++}`;
  usedPrefixes.push(prefix);
  return prefix;
}

async function scan(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const batch of redis.scanIterator({ MATCH: `${prefix}::*`, COUNT: 1000 })) names.push(...batch);
  return names.sort();
}

/** Polls until `check` holds (the tier writes in the background); fails the test after 5 s. */
async function until(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `count` instances sharing one KMS (a FakeProvider), one clock and one Redis prefix. */
function cluster(count: number, shared: Record<string, unknown> = {}, extra: Partial<KmsConfigInput> = {}) {
  const provider = new FakeProvider();
  const clock = new ManualClock();
  const prefix = newPrefix();
  const make = (store?: SharedCacheStore) => {
    const { kms, events } = fakeKms(
      { cache: { shared: store ? { ...shared } : { url: REDIS_URL, keyPrefix: prefix, ...shared } }, ...extra },
      store ? { sharedCacheStore: store } : {},
      { provider, clock },
    );
    openClients.push(kms);
    return { kms, events };
  };
  return { provider, clock, prefix, instances: Array.from({ length: count }, () => make()), make };
}

const entries = async (prefix: string, kind: "e" | "d" | "seal" | "seal-epoch" | "lock" | "revoked") =>
  (await scan(prefix)).filter((n) => n.startsWith(`${prefix}::${kind}:`));
const integrityFailures = (events: KmsEvent[]) => events.filter((e) => e.type === "cache.integrity-failure");
const keySectionOf = (envelope: Buffer) => envelope.subarray(38, 38 + 60);

/** Flips one character of the sealed body (base64url), keeping it valid base64url. */
function flipped(value: string): string {
  const at = value.lastIndexOf(".") + 20;
  const c = value[at]!;
  return value.slice(0, at) + (c === "A" ? "B" : "A") + value.slice(at + 1);
}

describe("sharing between instances", () => {
  it("a data key made on one instance serves the others: one generate in total, and decrypt elsewhere calls no KMS", async () => {
    const { provider, prefix, instances } = cluster(3);
    const [a, b, c] = instances;
    const envelope = await a!.kms.encrypt("tenant-1", "hello", { purpose: "test" });
    await until(async () => (await entries(prefix, "e")).length === 1 && (await entries(prefix, "d")).length === 1, "A's entries");
    // A: one data key for the tenant, and one for the sealing key (made when A first shared an entry).
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 0 });

    const fromB = await b!.kms.encrypt("tenant-1", "again", { purpose: "test" });
    expect(keySectionOf(fromB)).toEqual(keySectionOf(envelope)); // the same data key, wrapped once
    // B: no data key; one unwrap, of the sealing key, once per instance.
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 1 });

    expect(await b!.kms.decrypt("tenant-1", envelope, { purpose: "test" })).toEqual(Buffer.from("hello"));
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 1 }); // B's decrypt tier was cold
    expect(await c!.kms.decrypt("tenant-1", fromB, { purpose: "test" })).toEqual(Buffer.from("again"));
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 2 }); // C: its sealing key only
    expect(b!.events.filter((e) => e.type === "cache.shared.lookup").map((e) => (e as { outcome: string }).outcome)).toEqual(["hit", "hit"]);
  });

  it("300 concurrent cold encrypts over three instances make one data-key call (distributed single-flight)", async () => {
    const { provider, instances } = cluster(3);
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => instances[i % 3]!.kms.encrypt("tenant-cold", `message ${i}`)),
    );
    // One sealing key and one data key generated; the two other instances each unwrap the sealing key once.
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 2 });
    const sections = new Set(results.map((r) => keySectionOf(r).toString("hex")));
    expect(sections.size).toBe(1);
    for (const [i, envelope] of results.entries()) {
      expect((await instances[(i + 1) % 3]!.kms.decrypt("tenant-cold", envelope)).toString()).toBe(`message ${i}`);
    }
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 2 });
  });

  it("works over any keyv store (here a Map: no locks)", async () => {
    const map = new Map<string, unknown>();
    const { provider, make } = cluster(0);
    const a = make(keyvSharedCacheStore(map));
    const b = make(keyvSharedCacheStore(map));
    const envelope = await a.kms.encrypt("tenant-1", "in memory");
    await until(() => [...map.keys()].some((k) => k.startsWith("d:")), "the decrypt-side entry");
    expect([...map.values()].every((v) => typeof v === "string")).toBe(true);
    expect(await b.kms.decrypt("tenant-1", envelope)).toEqual(Buffer.from("in memory"));
    expect(provider.calls).toMatchObject({ generateDataKey: 2, unwrapDataKey: 1 });
  });
});

describe("tampering with Redis: detected, counted, deleted, re-fetched, never used", () => {
  /** A warmed cluster: A has encrypted for tenant-1 and tenant-2; their entries are in Redis. */
  async function warmed() {
    const c = cluster(1);
    const a = c.instances[0]!;
    const one = await a.kms.encrypt("tenant-1", "secret one");
    await until(async () => (await entries(c.prefix, "e")).length === 1 && (await entries(c.prefix, "d")).length === 1, "tenant-1's entries");
    const [e1] = await entries(c.prefix, "e");
    const [d1] = await entries(c.prefix, "d");
    const two = await a.kms.encrypt("tenant-2", "secret two");
    await until(async () => (await entries(c.prefix, "e")).length === 2, "tenant-2's entries");
    const e2 = (await entries(c.prefix, "e")).find((n) => n !== e1)!;
    return { ...c, a, one, two, e1: e1!, d1: d1!, e2 };
  }

  /** Encrypts on a fresh instance and checks the result decrypts, byte for byte, on another fresh one. */
  async function roundTrip(c: Awaited<ReturnType<typeof warmed>>, tenantId: string, text: string) {
    const fresh = c.make();
    const envelope = await fresh.kms.encrypt(tenantId, text);
    const other = c.make();
    expect(await other.kms.decrypt(tenantId, envelope)).toEqual(Buffer.from(text));
    return { fresh, envelope };
  }

  it("a flipped byte in an encrypt-side entry", async () => {
    const c = await warmed();
    const tampered = flipped((await redis.get(c.e1))!);
    await redis.set(c.e1, tampered);
    const before = c.provider.calls.generateDataKey;
    const { fresh, envelope } = await roundTrip(c, "tenant-1", "after the flip");
    expect(integrityFailures(fresh.events)).toEqual([{ type: "cache.integrity-failure", side: "encrypt", provider: "fake", tier: "shared" }]);
    expect(c.provider.calls.generateDataKey).toBe(before + 1); // re-fetched from the KMS
    expect(keySectionOf(envelope)).not.toEqual(keySectionOf(c.one));
    await until(async () => (await redis.get(c.e1)) !== tampered && (await redis.get(c.e1)) !== null, "the entry replaced");
  });

  it("a flipped byte in a decrypt-side entry", async () => {
    const c = await warmed();
    const tampered = flipped((await redis.get(c.d1))!);
    await redis.set(c.d1, tampered);
    const fresh = c.make();
    const before = c.provider.calls.unwrapDataKey;
    expect(await fresh.kms.decrypt("tenant-1", c.one)).toEqual(Buffer.from("secret one"));
    expect(integrityFailures(fresh.events)).toEqual([{ type: "cache.integrity-failure", side: "decrypt", provider: "fake", tier: "shared" }]);
    expect(c.provider.calls.unwrapDataKey).toBe(before + 2); // the sealing key, and the data key from the KMS
    await until(async () => (await redis.get(c.d1)) !== tampered, "the entry deleted or replaced");
  });

  it("two entries' values swapped", async () => {
    const c = await warmed();
    const [v1, v2] = [(await redis.get(c.e1))!, (await redis.get(c.e2))!];
    await redis.set(c.e1, v2);
    await redis.set(c.e2, v1);
    const before = c.provider.calls.generateDataKey;
    const one = await roundTrip(c, "tenant-1", "swap one");
    const two = await roundTrip(c, "tenant-2", "swap two");
    expect(integrityFailures(one.fresh.events)).toHaveLength(1);
    expect(integrityFailures(two.fresh.events)).toHaveLength(1);
    expect(c.provider.calls.generateDataKey).toBe(before + 2);
  });

  it("an entry copied to another tenant's name", async () => {
    const c = await warmed();
    await redis.set(c.e2, (await redis.get(c.e1))!);
    const before = c.provider.calls.generateDataKey;
    const { fresh, envelope } = await roundTrip(c, "tenant-2", "not tenant one's key");
    expect(integrityFailures(fresh.events)).toHaveLength(1);
    expect(c.provider.calls.generateDataKey).toBe(before + 1);
    expect(keySectionOf(envelope)).not.toEqual(keySectionOf(c.one));
  });

  it("forged entries: a random body under a real sealing key id, an unknown id, and a forged sealing key record", async () => {
    const c = await warmed();
    const [sealName] = await entries(c.prefix, "seal");
    const id = sealName!.slice(sealName!.lastIndexOf(":") + 1);
    const forgeries = [
      `v1.${id}.${randomBytes(120).toString("base64url")}`,
      `v1.${"ab".repeat(16)}.${randomBytes(120).toString("base64url")}`,
      "not a sealed value",
    ];
    for (const forged of forgeries) {
      await redis.set(c.e1, forged);
      const { fresh } = await roundTrip(c, "tenant-1", `after ${forged.slice(0, 8)}`);
      expect(integrityFailures(fresh.events)).toHaveLength(1);
      await until(async () => (await redis.get(c.e1)) !== forged, "the forged entry deleted");
    }
    // A record whose id matches its contents, naming the sealing KEK, with a wrapped key the KMS never made.
    const record = (await redis.get(sealName!))!.split(".");
    const wrapped = Buffer.from(record[1]!, "base64url");
    wrapped[wrapped.length - 10]! ^= 1; // inside the wrapped key: the checksum no longer matches, or the KMS refuses
    await redis.set(sealName!, [record[0], wrapped.toString("base64url"), record[2]].join("."));
    const fresh = c.make();
    await redis.set(c.e1, `v1.${id}.${randomBytes(120).toString("base64url")}`);
    await fresh.kms.encrypt("tenant-1", "forged record");
    expect(integrityFailures(fresh.events)).toHaveLength(1);
  });

  it("no Redis value or name holds a data key, the sealing key or a tenant id", async () => {
    const c = cluster(3);
    const envelopes: Buffer[] = [];
    for (let i = 0; i < 30; i++) {
      envelopes.push(await c.instances[i % 3]!.kms.encrypt(`tenant-${i % 5}`, `payload ${i}`, { row: String(i % 2) }));
    }
    for (const [i, envelope] of envelopes.entries()) {
      await c.instances[(i + 1) % 3]!.kms.decrypt(`tenant-${i % 5}`, envelope, { row: String(i % 2) });
    }
    await until(async () => (await entries(c.prefix, "e")).length === 10 && (await entries(c.prefix, "d")).length === 10, "every entry");
    const names = await scan(c.prefix);
    const values = await Promise.all(names.map((n) => redis.get(n)));
    const haystack = [...names, ...values].join("\n");
    expect(c.provider.issuedKeys).toHaveLength(11); // ten data keys and the sealing key
    for (const key of c.provider.issuedKeys) {
      for (const form of [key.toString("hex"), key.toString("base64"), key.toString("base64url"), key.toString("latin1"), key.subarray(0, 12).toString("base64url")]) {
        expect(haystack.includes(form)).toBe(false);
      }
    }
    for (let t = 0; t < 5; t++) expect(haystack.includes(`tenant-${t}`)).toBe(false);
  });
});

describe("an instance the KMS refuses the sealing key", () => {
  it("skips the tier and shows why, without counting or deleting the entries other instances use", async () => {
    const c = cluster(1);
    await c.instances[0]!.kms.encrypt("tenant-1", "shared");
    await until(async () => (await entries(c.prefix, "e")).length === 1, "the entry");
    const [e1] = await entries(c.prefix, "e");
    const value = await redis.get(e1!);
    // Same KMS, but this instance's identity may not unwrap (a missing grant).
    const denied = new Proxy(c.provider, {
      get(target, property) {
        if (property === "unwrapDataKey") {
          return async () => {
            throw new KmsError("KMS_ACCESS_DENIED", "denied", { provider: "fake" });
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const events: KmsEvent[] = [];
    const kms = createKms({
      registry: [definitionOf(denied)],
      config: {
        providers: { fake: {} },
        tenants: { defaultKey: { provider: "fake", keyId: "default" } },
        cache: { shared: { url: REDIS_URL, keyPrefix: c.prefix } },
      },
      env: {},
      clock: c.clock,
      onEvent: (e) => events.push(e),
    });
    openClients.push(kms);
    const envelope = await kms.encrypt("tenant-1", "served"); // with a data key of its own, from the KMS
    expect((await c.instances[0]!.kms.decrypt("tenant-1", envelope)).toString()).toBe("served");
    expect(integrityFailures(events)).toEqual([]);
    expect(await redis.get(e1!)).toBe(value);
    expect((await kms.checkHealth()).sharedCache).toEqual({
      status: "degraded",
      lastError: { reason: "the sealing key could not be unwrapped: KMS_ACCESS_DENIED", at: c.clock.now() },
    });
  });
});

describe("revocation and rotation", () => {
  it("invalidateTenant on one instance keeps every instance from using the tenant's entries made before it", async () => {
    const { provider, prefix, instances } = cluster(2);
    const [a, b] = instances;
    await a!.kms.encrypt("tenant-1", "before");
    await until(async () => (await entries(prefix, "e")).length === 1, "A's entry");
    a!.kms.invalidateTenant("tenant-1");
    await until(async () => (await entries(prefix, "revoked")).length === 1, "the marker");
    const before = provider.calls.generateDataKey;
    await b!.kms.encrypt("tenant-1", "after");
    expect(provider.calls.generateDataKey).toBe(before + 1);
    // Other tenants still share.
    await a!.kms.encrypt("tenant-2", "x");
    await until(async () => (await entries(prefix, "e")).length >= 2, "tenant-2's entry");
    const mid = provider.calls.generateDataKey;
    await b!.kms.encrypt("tenant-2", "y");
    expect(provider.calls.generateDataKey).toBe(mid);
  });

  it("the sealing key rotates per epoch: one new key for all instances, and entries sealed under the previous one still open", async () => {
    const { provider, clock, prefix, instances } = cluster(3, { sealingKeyRotationMs: 60_000 });
    const [a, b, c] = instances;
    await a!.kms.encrypt("tenant-1", "epoch one");
    await until(async () => (await entries(prefix, "e")).length === 1, "tenant-1's entry");
    clock.advance(60_000);
    await Promise.all([a!.kms.encrypt("tenant-2", "epoch two"), b!.kms.encrypt("tenant-3", "epoch two"), c!.kms.encrypt("tenant-4", "epoch two")]);
    await until(async () => (await entries(prefix, "e")).length === 4, "the new entries");
    expect(await entries(prefix, "seal")).toHaveLength(2);
    expect(await entries(prefix, "seal-epoch")).toHaveLength(2);
    // Two sealing keys and four data keys in all: the new epoch's key was made once, not per instance.
    expect(provider.calls.generateDataKey).toBe(6);
    const before = provider.calls.unwrapDataKey;
    await b!.kms.encrypt("tenant-1", "old epoch's entry"); // sealed under the first key: B unwraps it once
    expect(provider.calls.generateDataKey).toBe(6);
    expect(provider.calls.unwrapDataKey).toBe(before + 1);
  });
});

describe("Redis slow or down: skipped within the timeout, degraded not failed, recovered by itself", () => {
  let server: ChildProcess | undefined;
  let port = 0;

  async function freePort(): Promise<number> {
    return new Promise((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port: p } = probe.address() as { port: number };
        probe.close(() => resolve(p));
      });
    });
  }

  async function startRedis(): Promise<void> {
    server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local"], { stdio: "ignore" });
    const probe = quiet(createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: false } }));
    await until(async () => {
      try {
        await probe.connect();
        return true;
      } catch {
        return false;
      }
    }, "redis-server to listen");
    probe.destroy();
  }

  function stopRedis(): Promise<void> {
    return new Promise((resolve) => {
      if (!server || server.exitCode !== null || server.signalCode !== null) return resolve();
      server.once("exit", () => resolve());
      server.kill("SIGKILL");
    });
  }

  afterEach(async () => {
    await stopRedis();
  });

  /** Test clients ignore connection errors (Redis is killed on purpose); an unlistened one would throw. */
  function quiet<T extends { on(event: "error", listener: () => void): unknown }>(client: T): T {
    client.on("error", () => undefined);
    return client;
  }

  /** Whether a PING on a new connection is answered within `ms`. */
  async function answersWithin(p: number, ms: number): Promise<boolean> {
    const client = quiet(createClient({ url: `redis://127.0.0.1:${p}`, socket: { reconnectStrategy: false } }));
    try {
      return await Promise.race([client.connect().then(() => client.ping()).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
    } catch {
      return false;
    } finally {
      client.destroy();
    }
  }

  it("DEBUG SLEEP, then a killed Redis: every request is served; health says degraded; the tier recovers when Redis returns", async () => {
    port = await freePort();
    await startRedis();
    const url = `redis://127.0.0.1:${port}`;
    // A timeout far below the 20 s sleep (and above what a loaded CI machine may take to answer).
    const c = cluster(1, { url, keyPrefix: "outage", timeoutMs: 1_000, retryAfterMs: 200 });
    const a = c.instances[0]!;
    const clients: { destroy(): void }[] = [];
    const client = async () => {
      const made = quiet(createClient({ url }));
      clients.push(made);
      await made.connect();
      return made;
    };
    try {
      expect((await a.kms.decrypt("tenant-0", await a.kms.encrypt("tenant-0", "warm"))).toString()).toBe("warm");
      expect((await a.kms.checkHealth()).sharedCache).toEqual({ status: "up" });

      // Redis stops answering for 20 s: requests wait at most the timeout, once, then skip the tier.
      void (await client()).sendCommand(["DEBUG", "SLEEP", "20"]).catch(() => undefined);
      await until(async () => !(await answersWithin(port, 100)), "Redis to stop answering");
      const slow = await Promise.all(Array.from({ length: 40 }, (_, i) => a.kms.encrypt(`tenant-${i % 8}`, `during sleep ${i}`)));
      for (const [i, envelope] of slow.entries()) expect((await a.kms.decrypt(`tenant-${i % 8}`, envelope)).toString()).toBe(`during sleep ${i}`);
      const health = await a.kms.checkHealth();
      expect(health.ready).toBe(true);
      expect(health.sharedCache).toEqual({ status: "degraded", lastError: { reason: "no answer within 1000 ms", at: expect.any(Number) } });

      // Down altogether.
      await stopRedis();
      await new Promise((resolve) => setTimeout(resolve, 250)); // past retryAfterMs: the next request probes
      const down = await Promise.all(Array.from({ length: 20 }, (_, i) => a.kms.encrypt(`other-${i % 4}`, `while down ${i}`)));
      expect(down).toHaveLength(20);
      expect((await a.kms.checkHealth()).sharedCache?.status).toBe("degraded");

      // Back, empty: the client reconnects by itself and a later request's probe finds the tier up.
      await startRedis();
      await until(async () => {
        await a.kms.encrypt(`back-${randomBytes(4).toString("hex")}`, "probe");
        return (await a.kms.checkHealth()).sharedCache?.status === "up";
      }, "the tier to recover");
      const states = a.events.filter((e) => e.type === "cache.shared.state").map((e) => (e as { to: string }).to);
      expect(states[0]).toBe("degraded");
      expect(states[states.length - 1]).toBe("up");

      // Shared again, under a sealing key whose record A wrote again into the new Redis: a new
      // instance opens A's entry (no data key from the KMS, nothing counted as forged).
      const check = await client();
      await a.kms.encrypt("after-recovery", "shared again");
      await until(async () => (await check.keys("outage::e:*")).length >= 1 && (await check.keys("outage::seal:*")).length === 1, "the entry and its sealing key's record in the new Redis");
      const b = c.make();
      const before = c.provider.calls.generateDataKey;
      await b.kms.encrypt("after-recovery", "from another instance");
      expect(c.provider.calls.generateDataKey).toBe(before);
      expect(integrityFailures(b.events)).toEqual([]);
    } finally {
      for (const made of clients) made.destroy();
    }
  });

  it("a store that never answers: requests are served, the tier is degraded", async () => {
    const never = new Promise<never>(() => {});
    const store: SharedCacheStore = {
      getMany: () => never,
      set: () => never,
      setIfAbsent: () => never,
      delete: () => never,
      close: async () => {},
    };
    const { make, provider } = cluster(0, { timeoutMs: 20 });
    const { kms } = make(store);
    const envelopes = await Promise.all(Array.from({ length: 10 }, (_, i) => kms.encrypt(`t-${i}`, "x")));
    expect(envelopes).toHaveLength(10);
    expect(provider.calls.generateDataKey).toBe(10); // every tenant from the KMS; no sealing key was ever needed
    expect((await kms.checkHealth()).sharedCache?.status).toBe("degraded");
  });
});

describe("cache.shared configuration", () => {
  const base = { providers: { fake: {} }, tenants: { defaultKey: { provider: "fake", keyId: "k" } } };
  const registry = [definitionOf(new FakeProvider())];
  const issuesOf = (shared: unknown, options: { env?: Record<string, string>; store?: boolean; tenants?: unknown } = {}) => {
    try {
      validateConfig({ ...base, ...(options.tenants ? { tenants: options.tenants } : {}), cache: { shared } }, { registry, env: options.env ?? {}, sharedCacheStore: options.store });
      return [];
    } catch (error) {
      return (error as { issues: { path: string; code: string; message: string }[] }).issues.map((i) => `${i.path}: ${i.message}`);
    }
  };

  it("reports each problem with its path", () => {
    expect(issuesOf({})).toEqual(["cache.shared: set exactly one of url and urlFromEnv"]);
    expect(issuesOf({ url: REDIS_URL, urlFromEnv: "REDIS_URL" })).toEqual(["cache.shared: set exactly one of url and urlFromEnv"]);
    expect(issuesOf({ url: "http://x" })).toEqual(["cache.shared.url: must be a redis:// or rediss:// URL"]);
    expect(issuesOf({ urlFromEnv: "REDIS_URL" })).toEqual(["cache.shared.urlFromEnv: environment variable REDIS_URL must hold a redis:// or rediss:// URL"]);
    expect(issuesOf({ urlFromEnv: "REDIS_URL" }, { env: { REDIS_URL: "rediss://cache:6380" } })).toEqual([]);
    expect(issuesOf({ url: REDIS_URL }, { store: true })).toEqual(["cache.shared: the store is passed to createKms (sharedCacheStore): remove url and urlFromEnv"]);
    expect(issuesOf({ url: REDIS_URL }, { tenants: { keys: { t1: { provider: "fake", keyId: "k" } } } })).toEqual([
      "cache.shared.sealingKey: set cache.shared.sealingKey (there is no tenants.defaultKey to use)",
    ]);
    expect(issuesOf({ url: REDIS_URL, sealingKey: { provider: "other", keyId: "k" } })).toEqual([
      'cache.shared.sealingKey.provider: provider "other" has no settings: add providers.other',
    ]);
    expect(issuesOf({ url: REDIS_URL, sealingKeyRotationMs: 1000, keyPrefix: "bad prefix" })).toHaveLength(2);
  });
});
