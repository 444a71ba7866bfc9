/**
 * In-process tests of the HTTP layer with a hand-written fake KmsClient: every status mapping,
 * including the KMS failures (429/503/504/500) the black-box tests cannot provoke with the local
 * provider. (The app listens on an ephemeral port and is called with fetch: `app.inject` needs
 * light-my-request, whose ESM-only `cookie` dependency jest cannot load on Node 20.)
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { docsUrlFor, KmsError, type KmsClient, type KmsErrorCode, type KmsHealth, type PermissionReport } from "@kms/core";
import { buildApp, type BuildAppOptions } from "../src/app";
import { createTokenAuth, digestsOf } from "../src/auth";

const TOKENS = { "tenant-a": "token-a-0123456789", "tenant-b": "token-b-0123456789" };
const ADMIN = "admin-token-0123456789";
/** Stands for what a provider SDK's message may carry: a key ARN, a host name, a request id. */
const MARKER = "arn:aws:kms:eu-west-1:111122223333:key/SECRET-MARKER-7f3a";

/** A KmsError as a provider adapter would raise it: the SDK's message, cause and request id inside. */
function providerError(code: KmsErrorCode): KmsError {
  return new KmsError(code, `AccessDeniedException from kms.internal.example for ${MARKER}`, {
    provider: "aws",
    requestId: `req-${MARKER}`,
    cause: new Error(`socket to kms.internal.example: ${MARKER}`),
  });
}

/** A core health report for the `local` provider, with figures the public answer must not show. */
function health(local: Pick<KmsHealth["providers"][string], "healthy" | "status" | "circuit" | "detail">): KmsHealth {
  return {
    ready: local.status !== "down",
    providers: { local: { insecure: true, latencyMs: 3, cachedKeys: 12, lastError: { code: "KMS_KEY_NOT_FOUND", at: 1 }, ...local } },
    cache: { encrypt: { entries: 7, hits: 70, misses: 7 }, decrypt: { entries: 5, hits: 50, misses: 5 } },
  };
}

/** Envelope = base64url(JSON{tenant, context, plaintext}); decrypt checks tenant and context like core's AAD. */
class FakeKms {
  failWith: KmsErrorCode | Error | undefined;
  health: KmsHealth = health({ healthy: true, status: "up", circuit: "closed" });

  private maybeFail(): void {
    const failure = this.failWith;
    if (failure === undefined) return;
    throw typeof failure === "string" ? providerError(failure) : failure;
  }

  async encryptToBase64Url(tenantId: string, plaintext: Uint8Array, context?: Record<string, string>): Promise<string> {
    this.maybeFail();
    const json = JSON.stringify({ t: tenantId, c: context ?? {}, p: Buffer.from(plaintext).toString("base64") });
    return Buffer.from(json).toString("base64url");
  }

  async decryptFromBase64Url(tenantId: string, envelope: string, context?: Record<string, string>): Promise<Buffer> {
    this.maybeFail();
    let parsed: { t: string; c: Record<string, string>; p: string };
    try {
      parsed = JSON.parse(Buffer.from(envelope, "base64url").toString("utf8"));
    } catch {
      throw new KmsError("ENVELOPE_MALFORMED", "not an envelope");
    }
    if (parsed.t !== tenantId || JSON.stringify(parsed.c) !== JSON.stringify(context ?? {})) {
      throw new KmsError("ENVELOPE_AUTH_FAILED", "cannot decrypt");
    }
    return Buffer.from(parsed.p, "base64");
  }

  async checkHealth(): Promise<KmsHealth> {
    this.maybeFail();
    return this.health;
  }

  /** One key: a passing check and, with `permissionFails`, a failing one carrying a provider's message. */
  permissionFails = false;

  async validatePermissions(): Promise<PermissionReport> {
    this.maybeFail();
    const fail = this.permissionFails;
    return {
      ok: !fail,
      keys: [
        {
          provider: "aws-kms",
          keyId: "alias/app",
          checks: [
            { permission: "kms:DescribeKey", ok: true, docsUrl: "https://docs.example/aws#permissions" },
            ...(fail
              ? [{ permission: "kms:Decrypt", ok: false, remediation: "allow kms:Decrypt on alias/app", docsUrl: "https://docs.example/aws#permissions", error: providerError("KMS_ACCESS_DENIED") }]
              : []),
          ],
        },
      ],
    };
  }

  invalidated: string[] = [];

  /** For the admin console's figures (src/console/stats.ts). */
  onEvent(): () => void {
    return () => undefined;
  }

  cacheStats(): KmsHealth["cache"] {
    return this.health.cache;
  }

  invalidateTenant(tenantId: string): void {
    this.invalidated.push(tenantId);
  }

  async close(): Promise<void> {}
}

const fake = new FakeKms();
const logLines: string[] = [];
let app: FastifyInstance;
let baseUrl: string;

interface Res {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  json: () => unknown;
}

async function request(method: string, url: string, payload?: string, headers: Record<string, string> = {}): Promise<Res> {
  const res = await fetch(baseUrl + url, { method, headers, body: payload });
  const body = await res.text();
  return {
    statusCode: res.status,
    headers: Object.fromEntries(res.headers.entries()),
    body,
    json: () => JSON.parse(body),
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function post(url: string, payload: unknown, headers: Record<string, string> = bearer(TOKENS["tenant-a"])) {
  const text = typeof payload === "string" ? payload : JSON.stringify(payload);
  return request("POST", url, text, { "content-type": "application/json", ...headers });
}

function expectError(res: Res, status: number, code: string): void {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { error: { code: string; message: string; retryable: boolean; docsUrl: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error)).toEqual(["code", "message", "retryable", "docsUrl"]);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  expect(typeof body.error.retryable).toBe("boolean");
  expect(body.error.docsUrl).toMatch(/^https:\/\/.+#[a-z_]+$/);
  expect(JSON.stringify(body)).not.toMatch(/at .+\.(ts|js):\d+/); // no stack
}

beforeAll(async () => {
  const stream = new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  app = buildApp({
    kms: fake as unknown as KmsClient,
    auth: createTokenAuth(digestsOf({ tenants: TOKENS, admin: ADMIN })),
    logger: { level: "info", stream },
    bodyLimitBytes: 4096,
    // Every health request reaches the fake here, so tests can change its answer; the cache has its own tests.
    healthCacheMs: 0,
  });
  baseUrl = await app.listen({ host: "127.0.0.1", port: 0 });
});

afterAll(async () => {
  await app.close();
});

describe("tenant API", () => {
  it("round-trips with a context", async () => {
    const plaintext = Buffer.from("hello").toString("base64");
    const enc = await post("/v1/tenants/tenant-a/encrypt", { plaintext, context: { purpose: "test" } });
    expect(enc.statusCode).toBe(200);
    const { ciphertext } = enc.json() as { ciphertext: string };
    expect(ciphertext).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(enc.headers["x-request-id"]).toBeDefined();
    expect(enc.headers["cache-control"]).toBe("no-store");
    const dec = await post("/v1/tenants/tenant-a/decrypt", { ciphertext, context: { purpose: "test" } });
    expect(dec.statusCode).toBe(200);
    expect(dec.json()).toEqual({ plaintext });
  });

  it("accepts an empty plaintext at the HTTP layer", async () => {
    const enc = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "" });
    expect(enc.statusCode).toBe(200);
  });

  it("maps decrypt failures to 422 and malformed envelopes to 400", async () => {
    const enc = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" });
    const { ciphertext } = enc.json() as { ciphertext: string };
    expectError(await post("/v1/tenants/tenant-a/decrypt", { ciphertext, context: { x: "y" } }), 422, "ENVELOPE_AUTH_FAILED");
    const other = await post("/v1/tenants/tenant-b/decrypt", { ciphertext }, bearer(TOKENS["tenant-b"]));
    expectError(other, 422, "ENVELOPE_AUTH_FAILED");
    expectError(await post("/v1/tenants/tenant-a/decrypt", { ciphertext: "AAAA" }), 400, "ENVELOPE_MALFORMED");
  });
});

describe("credentials", () => {
  it("401 without, with a malformed or with an unknown token", async () => {
    const url = "/v1/tenants/tenant-a/encrypt";
    const body = { plaintext: "aGk=" };
    for (const headers of [{}, { authorization: "Basic abc" }, { authorization: "Bearer" }, bearer("nope-nope-nope")]) {
      const res = await post(url, body, headers);
      expectError(res, 401, "UNAUTHENTICATED");
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="kms"');
    }
  });

  it("403 TENANT_MISMATCH for another tenant's token, 403 FORBIDDEN for the admin token", async () => {
    expectError(await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" }, bearer(TOKENS["tenant-b"])), 403, "TENANT_MISMATCH");
    expectError(await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" }, bearer(ADMIN)), 403, "FORBIDDEN");
  });

  it("checks credentials before reading the body", async () => {
    expectError(await post("/v1/tenants/tenant-a/encrypt", "x".repeat(10_000), {}), 401, "UNAUTHENTICATED");
  });

  it("never logs tokens, plaintext or ciphertext", async () => {
    const secret = Buffer.from("very secret plaintext").toString("base64");
    const enc = await post("/v1/tenants/tenant-a/encrypt", { plaintext: secret });
    const { ciphertext } = enc.json() as { ciphertext: string };
    await post("/v1/tenants/tenant-a/decrypt", { ciphertext });
    const log = logLines.join("");
    expect(log).toContain('"tenantId":"tenant-a"');
    expect(log).toContain('"outcome":"UNAUTHENTICATED"');
    for (const s of [...Object.values(TOKENS), ADMIN, secret, ciphertext]) expect(log).not.toContain(s);
  });
});

describe("admin API", () => {
  const admin = bearer(ADMIN);

  it("POST /admin/validate-kms: 200 ok:false with remediation, docs link and the code's public text; the provider's message is logged only", async () => {
    fake.permissionFails = true;
    try {
      const res = await request("POST", "/admin/validate-kms", undefined, admin);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        ok: false,
        keys: [
          {
            provider: "aws-kms",
            keyId: "alias/app",
            checks: [
              { permission: "kms:DescribeKey", ok: true, docsUrl: "https://docs.example/aws#permissions" },
              {
                permission: "kms:Decrypt",
                ok: false,
                remediation: "allow kms:Decrypt on alias/app",
                docsUrl: "https://docs.example/aws#permissions",
                error: { code: "KMS_ACCESS_DENIED", message: "The key service refused access to the tenant's key" },
              },
            ],
          },
        ],
      });
      expect(res.body).not.toContain("SECRET-MARKER");
      const id = res.headers["x-request-id"]!;
      const logged = logLines.find((l) => l.includes(id) && l.includes("KMS permission checks failed"));
      expect(logged).toContain("SECRET-MARKER");
      expect(logLines.find((l) => l.includes(id) && l.includes("request completed"))).toContain('"outcome":"PERMISSIONS_FAILED"');
    } finally {
      fake.permissionFails = false;
    }
  });

  it("POST /admin/validate-kms: a failure of the check itself is the usual error shape", async () => {
    fake.failWith = "KMS_UNAVAILABLE";
    try {
      const res = await request("POST", "/admin/validate-kms", undefined, admin);
      expectError(res, 503, "KMS_UNAVAILABLE");
      expect(res.body).not.toContain("SECRET-MARKER");
    } finally {
      fake.failWith = undefined;
    }
  });

  it("DELETE /admin/tenants/:tenantId/cache → 204, invalidating that tenant only", async () => {
    fake.invalidated = [];
    const res = await request("DELETE", "/admin/tenants/tenant-b/cache", undefined, admin);
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe("");
    expect(fake.invalidated).toEqual(["tenant-b"]);
  });

  it("GET /admin/health → the full report, 503 when not ready", async () => {
    fake.health = health({ healthy: false, status: "down", circuit: "open", detail: `key ${MARKER}: KMS_UNAVAILABLE` });
    try {
      const res = await request("GET", "/admin/health", undefined, admin);
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual(fake.health);
    } finally {
      fake.health = health({ healthy: true, status: "up", circuit: "closed" });
    }
  });

  it("no /metrics route without a metrics registry", async () => {
    expectError(await request("GET", "/metrics", undefined, admin), 404, "NOT_FOUND");
  });
});

describe("input validation", () => {
  const url = "/v1/tenants/tenant-a/encrypt";
  it.each([
    ["invalid JSON", "{not json"],
    ["a JSON array", "[]"],
    ["a missing field", {}],
    ["a number", { plaintext: 12345678 }],
    ["non-base64", { plaintext: "not base64!" }],
    ["base64url", { plaintext: "a-_b" }],
    ["bad length", { plaintext: "aGk" }],
    ["non-canonical padding bits", { plaintext: "aGl=" }],
    ["an extra field", { plaintext: "aGk=", extra: 1 }],
    ["a non-string context value", { plaintext: "aGk=", context: { a: 1 } }],
    ["a context array", { plaintext: "aGk=", context: ["a"] }],
    ["prototype poisoning", '{"plaintext":"aGk=","__proto__":{"x":1}}'],
  ])("400 INPUT_INVALID for %s", async (_name, payload) => {
    expectError(await post(url, payload), 400, "INPUT_INVALID");
  });

  it("keeps the server's own message for its own validation", async () => {
    const res = await post(url, { plaintext: "aGl=" });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      error: {
        code: "INPUT_INVALID",
        message: "Invalid request: body/plaintext must be canonical, padded base64",
        retryable: false,
        docsUrl: docsUrlFor("INPUT_INVALID"),
      },
    });
  });

  it("names the field but never repeats a context key from the request", async () => {
    const res = await post(url, { plaintext: "aGk=", context: { [MARKER]: 1 } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      error: {
        code: "INPUT_INVALID",
        message: "Invalid request: body/context/* must be string",
        retryable: false,
        docsUrl: docsUrlFor("INPUT_INVALID"),
      },
    });
    expect(res.body).not.toContain("SECRET-MARKER");
  });

  it("400 for a non-base64url ciphertext", async () => {
    expectError(await post("/v1/tenants/tenant-a/decrypt", { ciphertext: "abc=" }), 400, "INPUT_INVALID");
  });

  it("413 BODY_TOO_LARGE over the body limit", async () => {
    expectError(await post(url, { plaintext: "A".repeat(8192) }), 413, "BODY_TOO_LARGE");
  });

  it("415 for a non-JSON content type", async () => {
    const res = await request("POST", url, "hi", { "content-type": "text/plain", ...bearer(TOKENS["tenant-a"]) });
    expectError(res, 415, "UNSUPPORTED_MEDIA_TYPE");
  });

  it("404 NOT_FOUND for unknown routes and methods", async () => {
    const unknown = await request("GET", "/nope-tenant-secret");
    expectError(unknown, 404, "NOT_FOUND");
    expect(unknown.body).not.toContain("nope-tenant-secret");
    expectError(await request("GET", "/v1/tenants/tenant-a/encrypt"), 404, "NOT_FOUND");
  });
});

describe("KMS failures", () => {
  // [code, status, retryable, the code's fixed public message]
  const failures: [KmsErrorCode, number, boolean, string][] = [
    ["KMS_THROTTLED", 429, true, "The key service is throttling requests; retry later"],
    ["KMS_OVERLOADED", 429, true, "Too many key service requests are waiting; retry later"],
    ["KMS_UNAVAILABLE", 503, true, "The key service is unavailable; retry later"],
    ["KMS_CIRCUIT_OPEN", 503, true, "Calls to the key service are paused after repeated failures; retry later"],
    ["KMS_CLOSED", 503, false, "The key service client is closed"],
    ["KMS_TIMEOUT", 504, true, "The key service did not answer in time; retry later"],
    ["KMS_INTEGRITY_ERROR", 502, true, "The key service's answer was corrupted in transit; retry later"],
    ["KMS_KEY_DISABLED", 500, false, "The tenant's key is disabled"],
    ["KMS_ACCESS_DENIED", 500, false, "The key service refused access to the tenant's key"],
    ["KMS_PROVIDER_ERROR", 500, false, "The key service could not complete the request"],
    // From a provider (it has `provider`): the fixed text, like every other provider error.
    ["INPUT_INVALID", 400, false, "The request is not valid"],
  ];

  it.each(failures)("%s → %i with a fixed message; the provider's text goes to the log only", async (code, status, retryable, message) => {
    fake.failWith = code;
    const logged = logLines.length;
    try {
      const res = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" });
      expect(res.statusCode).toBe(status);
      expect(res.json()).toEqual({ error: { code, message, retryable, docsUrl: docsUrlFor(code) } });
      expect(res.body).not.toContain("SECRET-MARKER");
      expect(res.body).not.toContain("kms.internal.example");
      if (status === 429) expect(res.headers["retry-after"]).toBe("1");
      const log = logLines.slice(logged).join("");
      expect(log).toContain(MARKER);
      expect(log).toContain(`"code":"${code}"`);
    } finally {
      fake.failWith = undefined;
    }
  });

  it("INPUT_INVALID raised by core itself (no provider) keeps core's message, without the code and docs suffix", async () => {
    fake.failWith = new KmsError("INPUT_INVALID", "the encryption context has 65 pairs, the limit is 64");
    try {
      const res = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toEqual({
        error: {
          code: "INPUT_INVALID",
          message: "the encryption context has 65 pairs, the limit is 64",
          retryable: false,
          docsUrl: docsUrlFor("INPUT_INVALID"),
        },
      });
    } finally {
      fake.failWith = undefined;
    }
  });

  it("/health/kms answers a failing check with the fixed message too", async () => {
    fake.failWith = "KMS_UNAVAILABLE";
    try {
      const res = await request("GET", "/health/kms");
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({
        ready: false,
        providers: {},
        error: {
          code: "KMS_UNAVAILABLE",
          message: "The key service is unavailable; retry later",
          retryable: true,
          docsUrl: docsUrlFor("KMS_UNAVAILABLE"),
        },
      });
      expect(res.body).not.toContain("SECRET-MARKER");
    } finally {
      fake.failWith = undefined;
    }
  });

  it("500 INTERNAL_ERROR with a generic message for anything else", async () => {
    fake.failWith = new Error("secret internal detail");
    try {
      const res = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" });
      expectError(res, 500, "INTERNAL_ERROR");
      expect(res.body).not.toContain("secret internal detail");
    } finally {
      fake.failWith = undefined;
    }
  });
});

describe("health", () => {
  it("live", async () => {
    const res = await request("GET", "/health/live");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: "ok" });
  });

  it("kms: shows no provider-written detail (it may name key ids) to unauthenticated callers", async () => {
    const saved = fake.health;
    fake.health = health({ healthy: false, status: "down", circuit: "closed", detail: 'key "tenant-b-key" not found' });
    try {
      const res = await request("GET", "/health/kms");
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({ ready: false, providers: { local: { healthy: false, status: "down", insecure: true, circuit: "closed" } } });
    } finally {
      fake.health = saved;
    }
  });

  it("kms: 200 when ready, 503 when not, 503 when the check throws", async () => {
    const ok = await request("GET", "/health/kms");
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ ready: true, providers: { local: { healthy: true, status: "up", insecure: true, circuit: "closed" } } });
    const saved = fake.health;
    // Degraded (the cache serves while the circuit is open) is still ready.
    fake.health = health({ healthy: false, status: "degraded", circuit: "open" });
    try {
      const degraded = await request("GET", "/health/kms");
      expect(degraded.statusCode).toBe(200);
      expect(degraded.json()).toEqual({ ready: true, providers: { local: { healthy: false, status: "degraded", insecure: true, circuit: "open" } } });
      fake.health = health({ healthy: false, status: "down", circuit: "open" });
      const down = await request("GET", "/health/kms");
      expect(down.statusCode).toBe(503);
      expect(down.json()).toEqual({ ready: false, providers: { local: { healthy: false, status: "down", insecure: true, circuit: "open" } } });
    } finally {
      fake.health = saved;
    }
    fake.failWith = "KMS_UNAVAILABLE";
    try {
      const res = await request("GET", "/health/kms");
      expect(res.statusCode).toBe(503);
      expect((res.json() as { error: { code: string } }).error.code).toBe("KMS_UNAVAILABLE");
    } finally {
      fake.failWith = undefined;
    }
  });
});

describe("/health/kms cache", () => {
  const healthy: KmsHealth = {
    ready: true,
    providers: { aws: { healthy: true, status: "up", insecure: false, circuit: "closed", latencyMs: 4, cachedKeys: 0 } },
    cache: { encrypt: { entries: 0, hits: 0, misses: 0 }, decrypt: { entries: 0, hits: 0, misses: 0 } },
  };
  /** What `/health/kms` shows of `healthy`. */
  const publicHealthy = { ready: true, providers: { aws: { healthy: true, status: "up", insecure: false, circuit: "closed" } } };

  /** An app over a KMS that only has `checkHealth`; `arrived` resolves once `n` health requests reached their handler. */
  async function startHealthApp(checkHealth: () => Promise<KmsHealth>, options: Partial<BuildAppOptions>, n = 0) {
    const healthApp = buildApp({
      kms: { checkHealth, onEvent: () => () => undefined, cacheStats: () => healthy.cache } as unknown as KmsClient,
      auth: createTokenAuth(digestsOf({ tenants: TOKENS })),
      logger: false,
      ...options,
    });
    let count = 0;
    let allArrived!: () => void;
    const arrived = new Promise<void>((resolve) => (allArrived = resolve));
    healthApp.addHook("preHandler", async () => {
      if (++count === n) allArrived();
    });
    const url = await healthApp.listen({ host: "127.0.0.1", port: 0 });
    const get = async () => {
      const res = await fetch(`${url}/health/kms`);
      return { statusCode: res.status, body: (await res.json()) as unknown };
    };
    return { get, arrived, close: () => healthApp.close() };
  }

  it("concurrent requests share one provider call, and later ones reuse its result", async () => {
    const n = 20;
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const server = await startHealthApp(
      async () => {
        calls += 1;
        await gate;
        return healthy;
      },
      { healthCacheMs: 60_000 },
      n,
    );
    try {
      const concurrent = Array.from({ length: n }, () => server.get());
      // Every request is in its handler (waiting on the one call) before the provider answers.
      await server.arrived;
      await new Promise((resolve) => setImmediate(resolve));
      release();
      const answers = await Promise.all(concurrent);
      for (let i = 0; i < 10; i++) answers.push(await server.get());
      expect(calls).toBe(1);
      for (const answer of answers) expect(answer).toEqual({ statusCode: 200, body: publicHealthy });
    } finally {
      await server.close();
    }
  });

  it("a failed check is cached too: a failing KMS is not called harder", async () => {
    let calls = 0;
    const server = await startHealthApp(async () => {
      calls += 1;
      throw providerError("KMS_TIMEOUT");
    }, {});
    try {
      for (let i = 0; i < 10; i++) {
        expect(await server.get()).toEqual({
          statusCode: 503,
          body: {
            ready: false,
            providers: {},
            error: {
              code: "KMS_TIMEOUT",
              message: "The key service did not answer in time; retry later",
              retryable: true,
              docsUrl: docsUrlFor("KMS_TIMEOUT"),
            },
          },
        });
      }
      expect(calls).toBe(1);
    } finally {
      await server.close();
    }
  });

  it("a result is reused only for healthCacheMs (0: every request after the answer checks again)", async () => {
    let calls = 0;
    const server = await startHealthApp(async () => {
      calls += 1;
      return healthy;
    }, { healthCacheMs: 0 });
    try {
      for (let i = 0; i < 3; i++) expect((await server.get()).statusCode).toBe(200);
      expect(calls).toBe(3);
    } finally {
      await server.close();
    }
  });
});

describe("the benchmark's no-op route (noopRoute: true)", () => {
  let noopApp: FastifyInstance;
  let noopUrl: string;
  const noop = (path: string, payload: unknown, headers: Record<string, string> = bearer(TOKENS["tenant-a"])) =>
    fetch(`${noopUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(payload) });

  beforeAll(async () => {
    noopApp = buildApp({ kms: fake as unknown as KmsClient, auth: createTokenAuth(digestsOf({ tenants: TOKENS, admin: ADMIN })), logger: false, noopRoute: true });
    noopUrl = await noopApp.listen({ host: "127.0.0.1", port: 0 });
  });

  afterAll(async () => {
    await noopApp.close();
  });

  it("is absent by default", async () => {
    expectError(await post("/v1/tenants/tenant-a/noop", { plaintext: "aGk=" }), 404, "NOT_FOUND");
  });

  it("answers the plaintext back without calling the KMS", async () => {
    fake.failWith = "KMS_UNAVAILABLE";
    try {
      const res = await noop("/v1/tenants/tenant-a/noop", { plaintext: "aGVsbG8=", context: { table: "notes" } });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ plaintext: "aGVsbG8=" });
    } finally {
      fake.failWith = undefined;
    }
  });

  it("checks the credential and the body exactly as encrypt does", async () => {
    const codeOf = async (res: Response) => [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    expect(await codeOf(await noop("/v1/tenants/tenant-a/noop", { plaintext: "aGk=" }, {}))).toEqual([401, "UNAUTHENTICATED"]);
    expect(await codeOf(await noop("/v1/tenants/tenant-b/noop", { plaintext: "aGk=" }))).toEqual([403, "TENANT_MISMATCH"]);
    expect(await codeOf(await noop("/v1/tenants/tenant-a/noop", { plaintext: "aGl=" }))).toEqual([400, "INPUT_INVALID"]);
    expect(await codeOf(await noop("/v1/tenants/tenant-a/noop", { plaintext: "aGk=", extra: 1 }))).toEqual([400, "INPUT_INVALID"]);
  });
});
