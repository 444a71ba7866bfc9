/**
 * In-process tests of the HTTP layer with a hand-written fake KmsClient: every status mapping,
 * including the KMS failures (429/503/504/500) the black-box tests cannot provoke with the local
 * provider. (The app listens on an ephemeral port and is called with fetch: `app.inject` needs
 * light-my-request, whose ESM-only `cookie` dependency jest cannot load on Node 20.)
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { KmsError, type KmsClient, type KmsErrorCode, type KmsHealth } from "@kms/core";
import { buildApp } from "../src/app";
import { createTokenAuth } from "../src/auth";

const TOKENS = { "tenant-a": "token-a-0123456789", "tenant-b": "token-b-0123456789" };
const ADMIN = "admin-token-0123456789";

/** Envelope = base64url(JSON{tenant, context, plaintext}); decrypt checks tenant and context like core's AAD. */
class FakeKms {
  failWith: KmsErrorCode | Error | undefined;
  health: KmsHealth = {
    ready: true,
    providers: { local: { healthy: true, insecure: true, circuit: "closed" } },
  };

  private maybeFail(): void {
    const failure = this.failWith;
    if (failure === undefined) return;
    throw typeof failure === "string" ? new KmsError(failure, `simulated ${failure}`) : failure;
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
  const body = res.json() as { error: { code: string; message: string; docsUrl: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
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
    auth: createTokenAuth({ tenants: TOKENS, admin: ADMIN }),
    logger: { level: "info", stream },
    bodyLimitBytes: 4096,
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
    expectError(await request("GET", "/nope"), 404, "NOT_FOUND");
    expectError(await request("GET", "/v1/tenants/tenant-a/encrypt"), 404, "NOT_FOUND");
  });
});

describe("KMS failures", () => {
  it.each([
    ["KMS_THROTTLED", 429],
    ["KMS_OVERLOADED", 429],
    ["KMS_UNAVAILABLE", 503],
    ["KMS_CIRCUIT_OPEN", 503],
    ["KMS_TIMEOUT", 504],
    ["KMS_KEY_DISABLED", 500],
    ["KMS_ACCESS_DENIED", 500],
    ["INPUT_INVALID", 400],
  ] as const)("%s → %i", async (code, status) => {
    fake.failWith = code;
    try {
      const res = await post("/v1/tenants/tenant-a/encrypt", { plaintext: "aGk=" });
      expectError(res, status, code);
      if (status === 429) expect(res.headers["retry-after"]).toBe("1");
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

  it("kms: 200 when ready, 503 when not, 503 when the check throws", async () => {
    const ok = await request("GET", "/health/kms");
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual(fake.health);
    const saved = fake.health;
    fake.health = { ready: false, providers: { local: { healthy: false, insecure: true, circuit: "open" } } };
    try {
      const down = await request("GET", "/health/kms");
      expect(down.statusCode).toBe(503);
      expect(down.json()).toEqual(fake.health);
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
