/**
 * Issue 8's acceptance test: three BUILT servers (`node apps/server/dist/main.js`, as in
 * server.test.ts) on ephemeral ports share one real Redis (REDIS_URL, default
 * redis://127.0.0.1:6379) as their shared cache tier and one AWS KMS emulator as their KMS. Every
 * request that reaches the emulator is asserted, by operation and encryption context, from the
 * servers' start on: no warm-up hides a call.
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@keyv/redis";
import { type AwsKmsRoute, AwsKmsEmulator, type EmulatorRequest } from "@kms/testkit/emulators";
import { writeAwsKmsConfig } from "./support/aws-kms-config";
import { closedPort } from "./support/closed-port";
import { ServerHarness, type ServerProcess, stop } from "./support/server-process";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** This run's namespace in Redis: nothing else reads it, and afterAll deletes it. */
const KEY_PREFIX = `kms-scale-test-${process.pid}-${Date.now()}`;
const TENANT = "tenant-a";
const TOKENS = { [TENANT]: "scale-token-a-0123456789", "tenant-b": "scale-token-b-0123456789" };
const ADMIN_TOKEN = "scale-admin-token-0123456789";
const INSTANCES = 3;
const ENCRYPTS = 1_000;
const BURST = 100;

/**
 * The AWS KMS emulator, with each request's EncryptionContext in its log entry (`details.context`,
 * canonical JSON): the emulator logs operations and key ids, not contexts. Context values are not
 * secret (AWS writes them to CloudTrail in the clear); the log still holds no body.
 */
class ContextLoggingEmulator extends AwsKmsEmulator {
  protected override route(req: EmulatorRequest): AwsKmsRoute {
    const routed = super.route(req);
    const context = routed.state?.input?.EncryptionContext;
    if (typeof context !== "object" || context === null) return routed;
    const sorted = Object.fromEntries(Object.entries(context).sort(([a], [b]) => (a < b ? -1 : 1)));
    return { ...routed, details: { ...routed.details, context: JSON.stringify(sorted) } };
  }
}

const harness = new ServerHarness("kms-scale-test-");
const emulator = new ContextLoggingEmulator();
const redis = createClient({ url: REDIS_URL });
let tmp: string;
let servers: ServerProcess[] = [];

async function call(server: ServerProcess, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

async function encrypt(server: ServerProcess, plaintext: string): Promise<string> {
  const res = await call(server, "POST", `/v1/tenants/${TENANT}/encrypt`, TOKENS[TENANT]!, { plaintext: Buffer.from(plaintext).toString("base64") });
  expect(res.status).toBe(200);
  return res.body.ciphertext as string;
}

async function decrypt(server: ServerProcess, ciphertext: string): Promise<string> {
  const res = await call(server, "POST", `/v1/tenants/${TENANT}/decrypt`, TOKENS[TENANT]!, { ciphertext });
  expect(res.status).toBe(200);
  return Buffer.from(res.body.plaintext as string, "base64").toString("utf8");
}

/** A sample's value in a server's /metrics exposition (undefined when absent). */
async function sample(server: ServerProcess, series: string): Promise<number | undefined> {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The emulator's log as `operation context` lines, sorted: what the assertions read. */
function kmsCalls(): string[] {
  return emulator.requests.map((r) => `${r.operation} ${r.details?.context ?? "-"}`).sort();
}

async function prefixNames(): Promise<string[]> {
  const names: string[] = [];
  for await (const batch of redis.scanIterator({ MATCH: `${KEY_PREFIX}::*`, COUNT: 1000 })) names.push(...batch);
  return names.sort();
}

beforeAll(async () => {
  tmp = harness.setUp();
  await redis.connect();
  await emulator.start();
  emulator.createKey({ alias: "alias/tenants" });
  // The tenants' key also wraps the cache-sealing key (no `cache.shared.sealingKey`: the default).
  const configFile = writeAwsKmsConfig(join(tmp, "kms.json"), emulator, "alias/tenants", {
    cache: {
      shared: {
        urlFromEnv: "REDIS_URL",
        keyPrefix: KEY_PREFIX,
        // The counts below are exact: a Redis answer late on a loaded test machine must not pass for
        // an outage (the default 50 ms timeout would then skip the tier and call the KMS), nor a slow
        // loader for a dead one (the lock's TTL bounds how long the others wait for its result).
        timeoutMs: 5_000,
        lockTtlMs: 20_000,
      },
    },
  });
  servers = await Promise.all(
    Array.from({ length: INSTANCES }, (_, i) =>
      harness.start({
        KMS_CONFIG_FILE: configFile,
        REDIS_URL,
        KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
        KMS_ADMIN_TOKEN: ADMIN_TOKEN,
        // Each instance its own evidence log (a file store has one writer).
        KMS_EVIDENCE_FILE: join(tmp, `evidence-${i}.jsonl`),
      }),
    ),
  );
  // Each server checks its KMS once at start-up (one DescribeKey) after it listens: wait for the
  // three, so that the log below is complete and nothing arrives late.
  for (let i = 0; emulator.count("DescribeKey") < INSTANCES; i++) {
    if (i >= 2_000) throw new Error(`start-up health checks: ${JSON.stringify(emulator.counts())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map((server) => stop(server)));
  await harness.tearDown();
  await emulator.stop().catch(() => undefined); // not started when beforeAll failed early
  if (redis.isOpen) {
    const names = await prefixNames();
    if (names.length > 0) await redis.del(names);
    redis.destroy();
  }
}, 30_000);

describe("three servers, one Redis, one KMS", () => {
  /** Ciphertext i was made on server i % 3. */
  const ciphertexts: string[] = [];
  let sealingEpoch: string;

  it("1,000 concurrent encrypts for one tenant over three instances make one GenerateDataKey for the tenant", async () => {
    // Bursts of 100 concurrent requests, spread over the three instances: the first burst finds every
    // cache cold (in process and in Redis) and all three instances missing the key at once.
    for (let start = 0; start < ENCRYPTS; start += BURST) {
      const burst = Array.from({ length: BURST }, (_, j) => start + j);
      const made = await Promise.all(burst.map((i) => encrypt(servers[i % INSTANCES]!, `message ${i}`)));
      burst.forEach((i, j) => (ciphertexts[i] = made[j]!));
    }
    expect(ciphertexts).toHaveLength(ENCRYPTS);
    expect(new Set(ciphertexts).size).toBe(ENCRYPTS);

    const sealing = emulator.requests.find((r) => r.operation === "GenerateDataKey" && r.details?.context?.includes('"kms:purpose"'));
    sealingEpoch = (JSON.parse(sealing?.details?.context ?? "{}") as Record<string, string>)["kms:epoch"]!;
    expect(sealingEpoch).toMatch(/^\d+$/);
    const sealingContext = JSON.stringify({ "kms:epoch": sealingEpoch, "kms:purpose": "cache-sealing" });
    // Every call the KMS saw since the servers started:
    expect(kmsCalls()).toEqual(
      [
        // Unwrapping the sealing key, once by each of the two instances that did not make it: they
        // found the tenant's key in Redis, sealed, and fetched the sealing key's wrapped record to open it.
        `Decrypt ${sealingContext}`,
        `Decrypt ${sealingContext}`,
        // Each server's start-up health check (no context).
        "DescribeKey -",
        "DescribeKey -",
        "DescribeKey -",
        // The cache-sealing key of the current epoch, made once by the instance that first sealed an
        // entry (under the epoch's lock in Redis), under the tenants' key with its purpose as context.
        `GenerateDataKey ${sealingContext}`,
        // The tenant's data key: the only one for 1,000 encrypts on three instances. The instance that
        // took the entry's lock in Redis made it; the other two waited for it in Redis.
        `GenerateDataKey ${JSON.stringify({ "kms:tenant": TENANT })}`,
      ].sort(),
    );
    expect(emulator.requests.every((r) => r.status === 200)).toBe(true);

    // No instance ever skipped the tier (a skipped tier would have meant KMS calls of its own).
    for (const server of servers) {
      const health = await call(server, "GET", "/admin/health", ADMIN_TOKEN);
      expect(health.body.sharedCache).toEqual({ status: "up" });
    }
  }, 120_000);

  it("decrypt on B of a ciphertext made on A, B's decrypt cache cold: no KMS call (the key comes from Redis)", async () => {
    const b = servers[1]!;
    const before = emulator.count();
    // B has never decrypted: its in-process decrypt cache is empty.
    expect((await call(b, "GET", "/admin/cache", ADMIN_TOKEN)).body.decrypt).toEqual({ entries: 0, hits: 0, misses: 0 });
    const fromA = ciphertexts[0]!; // made on A (0 % 3)
    expect(await decrypt(b, fromA)).toBe("message 0");
    expect(emulator.count()).toBe(before);
    // An in-process miss answered by the shared tier (A shared the decrypt side when it made the key).
    expect((await call(b, "GET", "/admin/cache", ADMIN_TOKEN)).body.decrypt).toEqual({ entries: 1, hits: 0, misses: 1 });
    expect(await sample(b, 'kms_shared_cache_requests_total{cache="decrypt",outcome="hit"}')).toBe(1);
    expect(await sample(b, "kms_shared_cache_up")).toBe(1);
  });

  it("every ciphertext decrypts byte for byte on an instance other than the one that made it, with no KMS call", async () => {
    const before = kmsCalls();
    for (let start = 0; start < ENCRYPTS; start += BURST) {
      const burst = Array.from({ length: BURST }, (_, j) => start + j);
      const plaintexts = await Promise.all(burst.map((i) => decrypt(servers[(i + 1) % INSTANCES]!, ciphertexts[i]!)));
      expect(plaintexts).toEqual(burst.map((i) => `message ${i}`));
    }
    expect(kmsCalls()).toEqual(before);
    for (const server of servers) {
      expect(await sample(server, 'kms_cache_integrity_failures_total{cache="decrypt",tier="shared"}')).toBeUndefined();
      expect(await sample(server, 'kms_cache_integrity_failures_total{cache="encrypt",tier="shared"}')).toBeUndefined();
    }
  }, 60_000);

  it("public health shows the tier's status, and nothing else of it", async () => {
    const res = await fetch(`${servers[2]!.url}/health/kms`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      ready: true,
      providers: { "aws-kms": { healthy: true, status: "up", insecure: false, circuit: "closed" } },
      sharedCache: "up",
    });
  });

  it("Redis holds no tenant id and no key in the clear: only digests as names, sealed values", async () => {
    const names = await prefixNames();
    // The tenant's encrypt and decrypt entries, the sealing key's record and its epoch pointer (locks
    // are gone once their loads finished).
    expect(names.map((n) => n.slice(KEY_PREFIX.length + 2).replace(/:.*$/, "")).sort()).toEqual(["d", "e", "seal", "seal-epoch"]);
    expect(names).toContain(`${KEY_PREFIX}::seal-epoch:${sealingEpoch}`);
    for (const name of names) expect(name).not.toContain(TENANT);
    const values = (await redis.mGet(names)).filter((v): v is string => v !== null);
    expect(values).toHaveLength(names.length);
    for (const value of values) expect(value).not.toContain(TENANT);
    for (const name of names.filter((n) => /::[de]:/.test(n))) {
      expect(await redis.get(name)).toMatch(/^v1\.[0-9a-f]{32}\.[A-Za-z0-9_-]+$/);
    }
  });
});

describe("a server whose Redis is unreachable", () => {
  it("serves from its own cache and the KMS, stays ready, and shows the tier degraded (the reason to the admin only)", async () => {
    // A port nothing listens on: the tier's operations fail at once (connection refused).
    const port = await closedPort();
    const configFile = join(tmp, "unreachable.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        providers: { local: { path: join(tmp, "local-keys.json") } },
        tenants: { defaultKey: { provider: "local", keyId: "default" } },
        cache: { shared: { url: `redis://127.0.0.1:${port}`, keyPrefix: KEY_PREFIX } },
      }),
    );
    const server = await harness.start({
      KMS_CONFIG_FILE: configFile,
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
      KMS_EVIDENCE_FILE: join(tmp, "evidence-unreachable.jsonl"),
    });
    try {
      const ciphertext = await encrypt(server, "without Redis");
      expect(await decrypt(server, ciphertext)).toBe("without Redis");
      const admin = await call(server, "GET", "/admin/health", ADMIN_TOKEN);
      expect(admin.status).toBe(200);
      expect(admin.body.ready).toBe(true);
      expect(admin.body.sharedCache).toEqual({ status: "degraded", lastError: { reason: expect.any(String), at: expect.any(Number) } });
      const res = await fetch(`${server.url}/health/kms`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toEqual({ ready: true, providers: { local: expect.any(Object) }, sharedCache: "degraded" });
      expect(JSON.stringify(body)).not.toContain((admin.body.sharedCache as { lastError: { reason: string } }).lastError.reason);
      expect(await sample(server, "kms_shared_cache_up")).toBe(0);
    } finally {
      await stop(server);
    }
  });
});
