/**
 * Black-box tests: the BUILT server (`node apps/server/dist/main.js`, produced by the build task
 * that runs before tests) is started as a child process on an ephemeral port, with a temporary
 * local key store, and called over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { spawn } from "node:child_process";
import { createHash, createHmac, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { once } from "node:events";
import { request } from "node:http";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { docsUrlFor, fromBase64Url, parseEnvelope, type KmsErrorCode } from "@kms/core";
import { fromCsv, readEvidenceFile, verifyEvidence, verifyExport, type EvidenceManifest, type EvidenceRecord } from "@kms/rotation";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { FAIL_FAST_RESILIENCE, writeAwsKmsConfig } from "./support/aws-kms-config";
import { exited, logLines, ServerHarness, type ServerProcess, stop, waitForStdout } from "./support/server-process";

const TOKENS = { "tenant-a": "test-token-a-0123456789", "tenant-b": "test-token-b-0123456789" };
const ADMIN_TOKEN = "test-admin-token-0123456789";

// Start-up waits stay under the 15 s of the hooks that start servers, so a failure shows the output.
const harness = new ServerHarness("kms-server-test-", { startTimeoutMs: 10_000 });
let tmp: string;

interface Res {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<Res> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

function errorCode(res: Res): string | undefined {
  return (res.body.error as { code?: string } | undefined)?.code;
}

function expectError(res: Res, status: number, code: string): void {
  expect({ status: res.status, code: errorCode(res) }).toEqual({ status, code });
  const error = res.body.error as { message: unknown; retryable: unknown; docsUrl: unknown };
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof error.message).toBe("string");
  expect(typeof error.retryable).toBe("boolean");
  expect(String(error.docsUrl)).toMatch(/^https:\/\//);
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

beforeAll(() => {
  tmp = harness.setUp();
});

afterAll(() => harness.tearDown());

describe("running server (local provider)", () => {
  let server: ServerProcess;
  let url: string;

  beforeAll(async () => {
    server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(tmp, "keys", "local-keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    url = server.url;
  }, 15_000);

  afterAll(async () => {
    await stop(server);
  });

  const encrypt = (tenant: string, plaintext: string, context?: Record<string, string>, token?: string) =>
    call(url, "POST", `/v1/tenants/${tenant}/encrypt`, { plaintext, ...(context && { context }) }, token);
  const decrypt = (tenant: string, ciphertext: string, context?: Record<string, string>, token?: string) =>
    call(url, "POST", `/v1/tenants/${tenant}/decrypt`, { ciphertext, ...(context && { context }) }, token);

  const rewrap = (tenant: string, ciphertext: string, context?: Record<string, string>, token?: string) =>
    call(url, "POST", `/v1/tenants/${tenant}/rewrap`, { ciphertext, ...(context && { context }) }, token);

  it("listens on 127.0.0.1", () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("round-trips for two tenants and two contexts (and none)", async () => {
    const contexts: (Record<string, string> | undefined)[] = [undefined, { table: "patients", column: "ssn" }, { purpose: "billing" }];
    for (const tenant of ["tenant-a", "tenant-b"] as const) {
      const token = TOKENS[tenant];
      for (const context of contexts) {
        const plaintext = b64(`secret of ${tenant} in ${JSON.stringify(context)} ✓`);
        const enc = await encrypt(tenant, plaintext, context, token);
        expect(enc.status).toBe(200);
        expect(Object.keys(enc.body)).toEqual(["ciphertext"]);
        expect(enc.body.ciphertext).toMatch(/^[A-Za-z0-9_-]+$/);
        const dec = await decrypt(tenant, enc.body.ciphertext as string, context, token);
        expect(dec.status).toBe(200);
        expect(dec.body).toEqual({ plaintext });
      }
    }
  });

  it("round-trips binary and empty-context payloads", async () => {
    const plaintext = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("base64");
    const enc = await encrypt("tenant-a", plaintext, {}, TOKENS["tenant-a"]);
    expect(enc.status).toBe(200);
    const dec = await decrypt("tenant-a", enc.body.ciphertext as string, {}, TOKENS["tenant-a"]);
    expect(dec.body).toEqual({ plaintext });
  });

  it("403 TENANT_MISMATCH for another tenant's credential", async () => {
    expectError(await encrypt("tenant-a", b64("x"), undefined, TOKENS["tenant-b"]), 403, "TENANT_MISMATCH");
    const enc = await encrypt("tenant-a", b64("x"), undefined, TOKENS["tenant-a"]);
    expectError(await decrypt("tenant-a", enc.body.ciphertext as string, undefined, TOKENS["tenant-b"]), 403, "TENANT_MISMATCH");
  });

  it("422 for tenant A's ciphertext under tenant B's path, even with B's valid credential", async () => {
    const enc = await encrypt("tenant-a", b64("for a only"), undefined, TOKENS["tenant-a"]);
    const res = await decrypt("tenant-b", enc.body.ciphertext as string, undefined, TOKENS["tenant-b"]);
    expectError(res, 422, "ENVELOPE_AUTH_FAILED");
  });

  it("422 ENVELOPE_AUTH_FAILED for a different context", async () => {
    const enc = await encrypt("tenant-a", b64("bound"), { row: "1" }, TOKENS["tenant-a"]);
    expectError(await decrypt("tenant-a", enc.body.ciphertext as string, { row: "2" }, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
    expectError(await decrypt("tenant-a", enc.body.ciphertext as string, undefined, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
  });

  it("422 ENVELOPE_AUTH_FAILED for a tampered ciphertext", async () => {
    const enc = await encrypt("tenant-a", b64("do not touch"), undefined, TOKENS["tenant-a"]);
    const ciphertext = enc.body.ciphertext as string;
    // A character inside the authenticated payload/tag region, away from the last (partial) one.
    const i = ciphertext.length - 10;
    const tampered = ciphertext.slice(0, i) + (ciphertext[i] === "A" ? "B" : "A") + ciphertext.slice(i + 1);
    expectError(await decrypt("tenant-a", tampered, undefined, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
  });

  it("400 ENVELOPE_MALFORMED for bytes that are not an envelope", async () => {
    expectError(await decrypt("tenant-a", "AAAAAAAAAAAA", undefined, TOKENS["tenant-a"]), 400, "ENVELOPE_MALFORMED");
  });

  it.each([
    ["malformed JSON", "{\"plaintext\": "],
    ["a JSON string", '"aGk="'],
    ["a missing field", {}],
    ["a number plaintext", { plaintext: 1234 }],
    ["a non-base64 plaintext", { plaintext: "not base64 at all!" }],
    ["a badly padded plaintext", { plaintext: "aGk" }],
    ["an unknown field", { plaintext: "aGk=", tenant: "tenant-b" }],
    ["a non-object context", { plaintext: "aGk=", context: "ctx" }],
    ["a non-string context value", { plaintext: "aGk=", context: { n: 1 } }],
    ["a reserved context key (rejected by core)", { plaintext: "aGk=", context: { "kms:tenant": "tenant-b" } }],
  ])("400 INPUT_INVALID for %s", async (_name, body) => {
    expectError(await call(url, "POST", "/v1/tenants/tenant-a/encrypt", body, TOKENS["tenant-a"]), 400, "INPUT_INVALID");
  });

  describe("encryption context limits are core's", () => {
    /** Stands for something secret a caller might put in a context key or value. */
    const SECRET = "SECRET-CONTEXT-MARKER-5e0c";
    const padded = (length: number, fill: string) => SECRET + fill.repeat(length - SECRET.length);

    it("a 300-character key is accepted and round-trips", async () => {
      const context = { [padded(300, "k")]: SECRET, table: "notes" };
      const plaintext = b64("long context key");
      const enc = await encrypt("tenant-a", plaintext, context, TOKENS["tenant-a"]);
      expect(enc.status).toBe(200);
      const dec = await decrypt("tenant-a", enc.body.ciphertext as string, context, TOKENS["tenant-a"]);
      expect(dec).toMatchObject({ status: 200, body: { plaintext } });
      // The key is bound: without it the envelope does not open.
      expectError(await decrypt("tenant-a", enc.body.ciphertext as string, { table: "notes" }, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
    });

    // [case, context, core's message]
    const refused: [string, Record<string, string>, string][] = [
      [
        "over 8192 bytes in canonical form",
        { [`${SECRET}-1`]: padded(4000, "v"), [`${SECRET}-2`]: padded(4000, "v"), [`${SECRET}-3`]: padded(4000, "v") },
        "the tenant id and encryption context exceed 8192 bytes in canonical form",
      ],
      ["a key over 1024 bytes", { [padded(1025, "k")]: SECRET }, "encryption context key #1 is 1025 UTF-8 bytes, the limit is 1024"],
      ["a value over 4096 bytes", { key: padded(4097, "v") }, "the value of encryption context key #1 is 4097 UTF-8 bytes, the limit is 4096"],
      ["an empty key", { ok: SECRET, "": SECRET }, "encryption context key #2 is empty"],
      [
        "a control character in a key",
        { [`${SECRET}\n`]: SECRET },
        `encryption context key #1 (${SECRET.length + 1} characters) contains a control character or an unpaired surrogate`,
      ],
      [
        "more than 64 pairs",
        Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`${SECRET}-${i}`, SECRET])),
        "the encryption context has 65 pairs, the limit is 64",
      ],
      ["a reserved key", { "kms:tenant": SECRET }, 'encryption context keys starting with "kms:" are reserved'],
    ];

    it.each(refused)("%s: 400 INPUT_INVALID with core's message, repeating no key or value", async (_name, context, message) => {
      const enc = await encrypt("tenant-a", b64("x"), context, TOKENS["tenant-a"]);
      const valid = await encrypt("tenant-a", b64("x"), undefined, TOKENS["tenant-a"]);
      const dec = await decrypt("tenant-a", valid.body.ciphertext as string, context, TOKENS["tenant-a"]);
      for (const res of [enc, dec]) {
        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: { code: "INPUT_INVALID", message, retryable: false, docsUrl: docsUrlFor("INPUT_INVALID") } });
        expect(JSON.stringify(res.body)).not.toContain(SECRET);
      }
    });
  });

  it("400 INPUT_INVALID for a wrong ciphertext type", async () => {
    const res = await call(url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext: ["x"] }, TOKENS["tenant-a"]);
    expectError(res, 400, "INPUT_INVALID");
  });

  it("413 BODY_TOO_LARGE over the 1 MiB default limit", async () => {
    const plaintext = Buffer.alloc(1024 * 1024).toString("base64");
    expectError(await encrypt("tenant-a", plaintext, undefined, TOKENS["tenant-a"]), 413, "BODY_TOO_LARGE");
  });

  it("401 UNAUTHENTICATED without, with a malformed, or with an unknown token", async () => {
    const res = await encrypt("tenant-a", b64("x"));
    expectError(res, 401, "UNAUTHENTICATED");
    expect(res.headers.get("www-authenticate")).toContain("Bearer");
    expectError(await encrypt("tenant-a", b64("x"), undefined, "not-a-known-token"), 401, "UNAUTHENTICATED");
    const malformed = await fetch(`${url}/v1/tenants/tenant-a/encrypt`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Token ${TOKENS["tenant-a"]}` },
      body: JSON.stringify({ plaintext: b64("x") }),
    });
    expect(malformed.status).toBe(401);
    expectError(await decrypt("tenant-a", "AAAA", undefined, "bad"), 401, "UNAUTHENTICATED");
  });

  it("403 FORBIDDEN for the admin token on a tenant route", async () => {
    expectError(await encrypt("tenant-a", b64("x"), undefined, ADMIN_TOKEN), 403, "FORBIDDEN");
  });

  it("routes tenant ids up to 256 characters (403 here: the token is tenant-a's)", async () => {
    expectError(await encrypt("t".repeat(256), b64("x"), undefined, TOKENS["tenant-a"]), 403, "TENANT_MISMATCH");
  });

  it("404 NOT_FOUND for unknown routes", async () => {
    expectError(await call(url, "GET", "/v1/nothing"), 404, "NOT_FOUND");
  });

  describe("POST /v1/tenants/:tenantId/rewrap", () => {
    it("returns a new envelope that decrypts to the same plaintext, under the same context", async () => {
      const context = { table: "notes", row: "7" };
      const plaintext = b64("rewrap keeps the payload ✓");
      const enc = await encrypt("tenant-a", plaintext, context, TOKENS["tenant-a"]);
      const res = await rewrap("tenant-a", enc.body.ciphertext as string, context, TOKENS["tenant-a"]);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(["ciphertext"]);
      const rewrapped = res.body.ciphertext as string;
      expect(rewrapped).toMatch(/^[A-Za-z0-9_-]+$/);
      // A new key section (the data key wrapped again), the same payload.
      expect(rewrapped).not.toBe(enc.body.ciphertext);
      expect(await decrypt("tenant-a", rewrapped, context, TOKENS["tenant-a"])).toMatchObject({ status: 200, body: { plaintext } });
      // Still bound to the context.
      expectError(await decrypt("tenant-a", rewrapped, { table: "notes" }, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
    });

    it("403 for another tenant's credential, 403 FORBIDDEN for the admin token, 401 without one", async () => {
      const enc = await encrypt("tenant-a", b64("mine"), undefined, TOKENS["tenant-a"]);
      const ciphertext = enc.body.ciphertext as string;
      expectError(await rewrap("tenant-a", ciphertext, undefined, TOKENS["tenant-b"]), 403, "TENANT_MISMATCH");
      expectError(await rewrap("tenant-a", ciphertext, undefined, ADMIN_TOKEN), 403, "FORBIDDEN");
      expectError(await rewrap("tenant-a", ciphertext), 401, "UNAUTHENTICATED");
    });

    it("422 for another tenant's envelope, another context or a tampered one; 400 for malformed input", async () => {
      const enc = await encrypt("tenant-a", b64("for a only"), { k: "v" }, TOKENS["tenant-a"]);
      const ciphertext = enc.body.ciphertext as string;
      expectError(await rewrap("tenant-b", ciphertext, { k: "v" }, TOKENS["tenant-b"]), 422, "ENVELOPE_AUTH_FAILED");
      expectError(await rewrap("tenant-a", ciphertext, { k: "w" }, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
      const i = ciphertext.length - 10;
      const tampered = ciphertext.slice(0, i) + (ciphertext[i] === "A" ? "B" : "A") + ciphertext.slice(i + 1);
      expectError(await rewrap("tenant-a", tampered, { k: "v" }, TOKENS["tenant-a"]), 422, "ENVELOPE_AUTH_FAILED");
      expectError(await rewrap("tenant-a", "AAAAAAAAAAAA", undefined, TOKENS["tenant-a"]), 400, "ENVELOPE_MALFORMED");
      for (const body of [{}, { ciphertext: 1 }, { ciphertext: "a+b/" }, { ciphertext, extra: 1 }, { ciphertext, context: { n: 1 } }]) {
        expectError(await call(url, "POST", "/v1/tenants/tenant-a/rewrap", body, TOKENS["tenant-a"]), 400, "INPUT_INVALID");
      }
    });
  });

  describe("admin API", () => {
    const ADMIN_ROUTES: [string, string][] = [
      ["POST", "/admin/validate-kms"],
      ["GET", "/admin/cache"],
      ["DELETE", "/admin/tenants/tenant-a/cache"],
      ["GET", "/admin/health"],
      ["GET", "/metrics"],
      ["GET", "/admin/tenants/tenant-a/rotation"],
      ["POST", "/admin/tenants/tenant-a/rotate"],
      ["GET", "/admin/evidence/export"],
    ];

    it.each(ADMIN_ROUTES)("%s %s: 401 without or with an unknown token, 403 FORBIDDEN with a tenant's", async (method, path) => {
      const none = await call(url, method, path);
      expectError(none, 401, "UNAUTHENTICATED");
      expect(none.headers.get("www-authenticate")).toContain("Bearer");
      expectError(await call(url, method, path, undefined, "not-a-known-token"), 401, "UNAUTHENTICATED");
      expectError(await call(url, method, path, undefined, TOKENS["tenant-a"]), 403, "FORBIDDEN");
    });

    it("POST /admin/validate-kms → 200 with every key's permission checks", async () => {
      const res = await call(url, "POST", "/admin/validate-kms", undefined, ADMIN_TOKEN);
      expect(res.status).toBe(200);
      expect(res.body.ok).toBe(true);
      const keys = res.body.keys as { provider: string; keyId: string; checks: { permission: string; ok: boolean; docsUrl?: string }[] }[];
      expect(keys.map((k) => [k.provider, k.keyId])).toEqual([["local", "default"]]);
      expect(keys[0]!.checks.length).toBeGreaterThan(0);
      for (const check of keys[0]!.checks) expect(check).toEqual({ permission: expect.any(String), ok: true, docsUrl: expect.stringMatching(/^https:\/\//) });
    });

    it("GET /admin/cache counts, DELETE /admin/tenants/:tenantId/cache → 204 empties that tenant's entries", async () => {
      await encrypt("tenant-a", b64("warm"), undefined, TOKENS["tenant-a"]);
      const before = await call(url, "GET", "/admin/cache", undefined, ADMIN_TOKEN);
      expect(before.status).toBe(200);
      expect(before.body).toEqual({
        encrypt: { entries: expect.any(Number), hits: expect.any(Number), misses: expect.any(Number) },
        decrypt: { entries: expect.any(Number), hits: expect.any(Number), misses: expect.any(Number) },
      });
      expect((before.body.encrypt as { entries: number }).entries).toBeGreaterThan(0);
      const del = await call(url, "DELETE", "/admin/tenants/tenant-a/cache", undefined, ADMIN_TOKEN);
      expect(del.status).toBe(204);
      await call(url, "DELETE", "/admin/tenants/tenant-b/cache", undefined, ADMIN_TOKEN);
      const after = await call(url, "GET", "/admin/cache", undefined, ADMIN_TOKEN);
      expect(after.body).toMatchObject({ encrypt: { entries: 0 }, decrypt: { entries: 0 } });
      // The next encrypt loads a fresh data key: one more miss.
      const misses = (after.body.encrypt as { misses: number }).misses;
      await encrypt("tenant-a", b64("cold"), undefined, TOKENS["tenant-a"]);
      const again = await call(url, "GET", "/admin/cache", undefined, ADMIN_TOKEN);
      expect(again.body).toMatchObject({ encrypt: { entries: 1, misses: misses + 1 } });
    });

    it("DELETE /admin/tenants/:tenantId/cache validates the tenant id", async () => {
      expectError(await call(url, "DELETE", `/admin/tenants/${"t".repeat(257)}/cache`, undefined, ADMIN_TOKEN), 400, "INPUT_INVALID");
    });

    it("GET /admin/health → the full report (detail, cache figures) that /health/kms keeps private", async () => {
      const res = await call(url, "GET", "/admin/health", undefined, ADMIN_TOKEN);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        ready: true,
        providers: {
          local: {
            healthy: true,
            status: "up",
            insecure: true,
            circuit: "closed",
            latencyMs: expect.any(Number),
            cachedKeys: expect.any(Number),
            // The earlier tests' 422s: the provider's most recent failed operation.
            lastError: { code: expect.any(String), at: expect.any(Number) },
            detail: expect.any(String),
          },
        },
        cache: { encrypt: expect.any(Object), decrypt: expect.any(Object) },
      });
    });
  });

  it("GET /health/live → 200", async () => {
    const res = await call(url, "GET", "/health/live");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("GET /health/kms → 200 with the local provider marked insecure", async () => {
    const res = await call(url, "GET", "/health/kms");
    expect(res.status).toBe(200);
    expect(res.body.ready).toBe(true);
    expect(res.body.providers).toEqual({ local: { healthy: true, status: "up", insecure: true, circuit: "closed" } });
  });

  it("logs JSON lines with request id, tenant, route, status and outcome, never secrets", async () => {
    const secret = b64("log canary plaintext");
    const enc = await encrypt("tenant-b", secret, undefined, TOKENS["tenant-b"]);
    const dec = await decrypt("tenant-b", enc.body.ciphertext as string, undefined, TOKENS["tenant-b"]);
    const cross = await encrypt("tenant-a", b64("x"), undefined, TOKENS["tenant-b"]);
    expect([enc.status, dec.status, cross.status]).toEqual([200, 200, 403]);
    // An access line is written once its response has gone out: wait for each request's, by its id.
    const ids = [enc, dec, cross].map((res) => res.headers.get("x-request-id")!);
    const access = await waitForStdout(
      server,
      (out) => {
        const lines = logLines(out).filter((l) => l.msg === "request completed" && ids.includes(l.reqId as string));
        return lines.length === ids.length ? new Map(lines.map((l) => [l.reqId as string, l])) : undefined;
      },
      "the access log lines of the three requests",
    );
    const line = (route: string, tenantId: string, statusCode: number, outcome: string) =>
      expect.objectContaining({ method: "POST", route, tenantId, statusCode, outcome, durationMs: expect.any(Number) });
    expect(access.get(ids[0]!)).toEqual(line("/v1/tenants/:tenantId/encrypt", "tenant-b", 200, "OK"));
    expect(access.get(ids[1]!)).toEqual(line("/v1/tenants/:tenantId/decrypt", "tenant-b", 200, "OK"));
    expect(access.get(ids[2]!)).toEqual(line("/v1/tenants/:tenantId/encrypt", "tenant-a", 403, "TENANT_MISMATCH"));
    const all = server.stdout() + server.stderr();
    for (const s of [...Object.values(TOKENS), ADMIN_TOKEN, secret, enc.body.ciphertext as string]) {
      expect(all).not.toContain(s);
    }
  });
});

describe("rotation and evidence (a fresh server, an HMAC-keyed evidence log)", () => {
  const HMAC_KEY = "evidence-hmac-key-for-tests-0123456789abcdef";
  let server: ServerProcess;
  let url: string;

  beforeAll(async () => {
    server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(tmp, "rotation", "keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
      KMS_EVIDENCE_HMAC_KEY: HMAC_KEY,
    });
    url = server.url;
  }, 15_000);

  afterAll(async () => {
    await stop(server);
  });

  const keyVersionOf = (ciphertext: string) => parseEnvelope(fromBase64Url(ciphertext)).keySection.keyVersion;
  const exportOf = async (query: string) => {
    const res = await call(url, "GET", `/admin/evidence/export${query}`, undefined, ADMIN_TOKEN);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(["content", "manifest"]);
    return res.body as { manifest: EvidenceManifest; content: string };
  };
  const jsonl = (content: string) => content.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as EvidenceRecord);

  it("GET /admin/tenants/:tenantId/rotation → the key's status; 404 for a tenant without a key, 400 for a bad id", async () => {
    const res = await call(url, "GET", "/admin/tenants/tenant-a/rotation", undefined, ADMIN_TOKEN);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      tenantId: "tenant-a",
      provider: "local",
      keyId: "default",
      currentVersion: "1",
      lastRotatedAt: expect.any(String),
      nextDueAt: expect.any(String),
      ageMs: expect.any(Number),
      cryptoperiodMs: 90 * 86_400_000,
      overdue: false,
      lastError: null,
    });
    expect(Date.parse(res.body.nextDueAt as string) - Date.parse(res.body.lastRotatedAt as string)).toBe(90 * 86_400_000);
    expectError(await call(url, "GET", "/admin/tenants/nobody/rotation", undefined, ADMIN_TOKEN), 404, "NOT_FOUND");
    expectError(await call(url, "POST", "/admin/tenants/nobody/rotate", undefined, ADMIN_TOKEN), 404, "NOT_FOUND");
    expectError(await call(url, "GET", `/admin/tenants/${"t".repeat(257)}/rotation`, undefined, ADMIN_TOKEN), 400, "INPUT_INVALID");
  });

  it("POST /admin/tenants/:tenantId/rotate → a new version: old envelopes still decrypt, new ones use it", async () => {
    const token = TOKENS["tenant-a"];
    const plaintext = b64("written before the rotation");
    const before = await call(url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext }, token);
    expect(keyVersionOf(before.body.ciphertext as string)).toBe("1");

    const rotated = await call(url, "POST", "/admin/tenants/tenant-a/rotate", undefined, ADMIN_TOKEN);
    expect(rotated.status).toBe(200);
    expect(rotated.body).toEqual({ tenantId: "tenant-a", provider: "local", keyId: "default", previousVersion: "1", currentVersion: "2" });
    const status = await call(url, "GET", "/admin/tenants/tenant-a/rotation", undefined, ADMIN_TOKEN);
    expect(status.body).toMatchObject({ currentVersion: "2", overdue: false, lastError: null });

    const old = await call(url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext: before.body.ciphertext }, token);
    expect(old.body).toEqual({ plaintext });
    // The data key cached under version 1 was dropped: the next encrypt wraps under version 2.
    const after = await call(url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext }, token);
    expect(keyVersionOf(after.body.ciphertext as string)).toBe("2");
    const dec = await call(url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext: after.body.ciphertext }, token);
    expect(dec.body).toEqual({ plaintext });

    // Rotation runs on its own providers: the server forwards it to /metrics itself.
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const exposition = await metrics.text();
    expect(sample(exposition, 'kms_rotation_runs_total{provider="local",outcome="success"}')).toBe(1);
    expect(sample(exposition, 'kms_rotation_runs_total{provider="local",outcome="failure"}')).toBeUndefined();
  });

  it("GET /admin/evidence/export → a signed export that verifies and names the start-up, the validation and the rotation", async () => {
    expect((await call(url, "POST", "/admin/validate-kms", undefined, ADMIN_TOKEN)).status).toBe(200);
    const hmacKey = Buffer.from(HMAC_KEY, "utf8");
    const { manifest, content } = await exportOf("?format=jsonl");
    expect(manifest.signature).toEqual(expect.any(String));
    expect(await verifyExport(content, manifest, { hmacKey })).toMatchObject({ ok: true });
    const records = jsonl(content);
    expect(records.map((r) => r.type)).toEqual(["config.loaded", "key.rotation-started", "key.rotated", "permissions.validated"]);
    expect(records[2]).toMatchObject({ tenantId: "tenant-a", provider: "local", keyId: "default", previousVersion: "1", keyVersion: "2", actor: "admin-api", outcome: "success" });
    expect(records[3]).toMatchObject({ outcome: "success", details: expect.objectContaining({ failed: 0 }) });
    // A tampered export fails.
    expect((await verifyExport(content.replace('"keyVersion":"2"', '"keyVersion":"3"'), manifest, { hmacKey })).ok).toBe(false);

    // CSV, one tenant, a time range: only the rotation records.
    const since = new Date(Date.now() - 3_600_000).toISOString();
    const until = new Date(Date.now() + 3_600_000).toISOString();
    const csv = await exportOf(`?format=csv&tenant=tenant-a&since=${since}&until=${until}`);
    expect(await verifyExport(csv.content, csv.manifest, { hmacKey })).toMatchObject({ ok: true });
    expect(fromCsv(csv.content).map((r) => r.type)).toEqual(["key.rotation-started", "key.rotated"]);
    expect((await exportOf("?tenant=tenant-b")).manifest.count).toBe(0);
  });

  it.each([
    ["format=xml"],
    ["since=yesterday"],
    ["until=2026-13-45T00:00:00Z"],
    [`since=${encodeURIComponent("2026-02-01T00:00:00Z")}&until=${encodeURIComponent("2026-01-01T00:00:00Z")}`],
    [`tenant=${"t".repeat(257)}`],
    ["unknown=1"],
  ])("GET /admin/evidence/export?%s → 400 INPUT_INVALID", async (query) => {
    expectError(await call(url, "GET", `/admin/evidence/export?${query}`, undefined, ADMIN_TOKEN), 400, "INPUT_INVALID");
  });

  it("keeps the HMAC key out of its output", () => {
    expect(server.stdout() + server.stderr()).not.toContain(HMAC_KEY);
  });
});

/** Runs `promtool check metrics` on an exposition; resolves with its exit code and output. */
function promtoolCheck(exposition: string): Promise<{ code: number | null; output: string }> {
  const child = spawn("promtool", ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stdin.end(exposition);
  return new Promise((resolvePromise, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, output }));
  });
}

describe("the periodic scheduler (KMS_ROTATION_INTERVAL_MS) rotates an overdue key", () => {
  let server: ServerProcess;

  beforeAll(async () => {
    // A local key store whose key is 100 days old: overdue under the 90-day cryptoperiod.
    const dir = join(tmp, "scheduled");
    const createdAt = new Date(Date.now() - 100 * 86_400_000).toISOString();
    const material = Buffer.alloc(32, 9).toString("base64");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(
      join(dir, "keys.json"),
      JSON.stringify({ format: "kms-local-keystore", version: 1, keys: { default: { enabled: true, createdAt, currentVersion: "1", versions: { "1": { createdAt, material } } } } }),
      { mode: 0o600 },
    );
    server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(dir, "keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
      KMS_ROTATION_INTERVAL_MS: "1000",
    });
  }, 15_000);

  afterAll(async () => {
    await stop(server);
  });

  it("rotates it once, records it, and counts it in /metrics", async () => {
    const deadline = Date.now() + 10_000;
    let status: Res;
    do {
      await new Promise((r) => setTimeout(r, 200));
      status = await call(server.url, "GET", "/admin/tenants/tenant-a/rotation", undefined, ADMIN_TOKEN);
    } while (status.body.currentVersion !== "2" && Date.now() < deadline);
    expect(status.body).toMatchObject({ currentVersion: "2", overdue: false, lastError: null });
    // Two tenants share the default key: one rotation, not two.
    const { content } = (await call(server.url, "GET", "/admin/evidence/export", undefined, ADMIN_TOKEN)).body as { content: string };
    const rotated = content.split("\n").filter((l) => l.includes('"type":"key.rotated"'));
    expect(rotated).toHaveLength(1);
    const exposition = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    expect(sample(exposition, 'kms_rotation_runs_total{provider="local",outcome="success"}')).toBe(1);
  });
});

/** The value of one sample line (`name{labels} value`) of an exposition. */
function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics (a fresh server: the counts are this test's traffic only)", () => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(tmp, "metrics", "keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
    });
  }, 15_000);

  afterAll(async () => {
    await stop(server);
  });

  it("after traffic: passes `promtool check metrics` and counts exactly the cache hits and misses sent", async () => {
    // 3 encrypts (one data key: 1 miss, 2 hits), then 3 decrypts of one envelope (its wrapped key
    // unwrapped once: 1 miss, 2 hits).
    let ciphertext = "";
    for (let i = 0; i < 3; i++) {
      const enc = await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext: b64(`m${i}`) }, TOKENS["tenant-a"]);
      expect(enc.status).toBe(200);
      ciphertext = enc.body.ciphertext as string;
    }
    for (let i = 0; i < 3; i++) {
      const dec = await call(server.url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext }, TOKENS["tenant-a"]);
      expect(dec.status).toBe(200);
    }

    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const text = await res.text();

    const lint = await promtoolCheck(text);
    expect(lint).toEqual({ code: 0, output: "" });

    expect(sample(text, 'kms_cache_requests_total{cache="encrypt",result="miss"}')).toBe(1);
    expect(sample(text, 'kms_cache_requests_total{cache="encrypt",result="hit"}')).toBe(2);
    expect(sample(text, 'kms_cache_requests_total{cache="decrypt",result="miss"}')).toBe(1);
    expect(sample(text, 'kms_cache_requests_total{cache="decrypt",result="hit"}')).toBe(2);
    expect(sample(text, 'kms_cache_entries{cache="encrypt"}')).toBe(1);
    // The key-age gauges (keyAgesFrom): the local key was created moments ago.
    expect(sample(text, "kms_keys_rotation_overdue")).toBe(0);
    expect(sample(text, "kms_key_oldest_age_seconds")).toEqual(expect.any(Number));
    // No tenant id, token or envelope in the exposition.
    for (const s of ["tenant-a", ADMIN_TOKEN, TOKENS["tenant-a"], ciphertext]) expect(text).not.toContain(s);
  });
});

describe("the AWS KMS emulator as the server's provider (configuration file)", () => {
  let emulator: AwsKmsEmulator;
  let server: ServerProcess;
  let keyArn: string;

  beforeAll(async () => {
    emulator = new AwsKmsEmulator();
    await emulator.start();
    keyArn = emulator.createKey({ alias: "alias/tenants" }).arn;
    server = await harness.start({
      KMS_CONFIG_FILE: writeAwsKmsConfig(join(tmp, "aws.json"), emulator, "alias/tenants", { resilience: FAIL_FAST_RESILIENCE }),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
    });
  }, 15_000);

  afterAll(async () => {
    await stop(server);
    await emulator.stop();
  });

  /** Calls /health/kms until it answers `status` (its result is cached for 5 s after each check). */
  async function healthBecomes(status: number): Promise<Res> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const res = await call(server.url, "GET", "/health/kms");
      if (res.status === status || Date.now() > deadline) return res;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it("round-trips and validates its permissions against the emulator", async () => {
    const plaintext = b64("through AWS KMS");
    const enc = await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext, context: { t: "1" } }, TOKENS["tenant-a"]);
    expect(enc.status).toBe(200);
    const dec = await call(server.url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext: enc.body.ciphertext, context: { t: "1" } }, TOKENS["tenant-a"]);
    expect(dec.body).toEqual({ plaintext });
    const valid = await call(server.url, "POST", "/admin/validate-kms", undefined, ADMIN_TOKEN);
    expect(valid.status).toBe(200);
    expect(valid.body.ok).toBe(true);
    expect(valid.body.keys).toEqual([{ provider: "aws-kms", keyId: "alias/tenants", checks: expect.any(Array) }]);
  });

  it("validate-kms reports a missing permission with remediation and docs link, never the provider's message", async () => {
    const { accessKeyId } = emulator.clientConfig().credentials;
    emulator.setAllowedActions(accessKeyId, ["kms:DescribeKey", "kms:Decrypt", "kms:Encrypt"]);
    try {
      const res = await call(server.url, "POST", "/admin/validate-kms", undefined, ADMIN_TOKEN);
      expect(res.status).toBe(200);
      expect(res.body.ok).toBe(false);
      const checks = (res.body.keys as { checks: { permission: string; ok: boolean }[] }[])[0]!.checks;
      expect(checks.find((c) => c.permission === "kms:GenerateDataKey")).toEqual({
        permission: "kms:GenerateDataKey",
        ok: false,
        remediation: expect.any(String),
        docsUrl: expect.stringMatching(/^https:\/\//),
        error: { code: "KMS_ACCESS_DENIED", message: "The key service refused access to the tenant's key" },
      });
      // AWS's access-denied message names the principal; the answer does not repeat it.
      expect(JSON.stringify(res.body)).not.toContain("is not authorized to perform");
    } finally {
      emulator.setAllowedActions(accessKeyId, "*");
    }
  });

  it("/health/kms flips to 503 while the provider is down (nothing cached) and back to 200", async () => {
    // Cached data keys would keep the provider `degraded` (still ready): empty the cache first.
    const del = await call(server.url, "DELETE", "/admin/tenants/tenant-a/cache", undefined, ADMIN_TOKEN);
    expect(del.status).toBe(204);
    expect((await healthBecomes(200)).body).toEqual({
      ready: true,
      providers: { "aws-kms": { healthy: true, status: "up", insecure: false, circuit: "closed" } },
    });

    const restore = await emulator.outage();
    let restored = false;
    try {
      const down = await healthBecomes(503);
      expect(down.status).toBe(503);
      expect(down.body).toEqual({
        ready: false,
        providers: { "aws-kms": { healthy: false, status: "down", insecure: false, circuit: "closed" } },
      });
      // The admin view of the same check has the detail and the cache figures; the public one does not.
      const admin = await call(server.url, "GET", "/admin/health", undefined, ADMIN_TOKEN);
      expect(admin.status).toBe(503);
      expect(admin.body).toMatchObject({ ready: false, providers: { "aws-kms": { status: "down", cachedKeys: 0, detail: expect.any(String) } } });
      expect(JSON.stringify(down.body)).not.toContain(keyArn);
      await restore();
      restored = true;
      const up = await healthBecomes(200);
      expect(up.status).toBe(200);
      expect(up.body).toMatchObject({ ready: true, providers: { "aws-kms": { status: "up" } } });
    } finally {
      if (!restored) await restore();
    }
  }, 40_000);
});

describe("JWT credentials and a YAML configuration file", () => {
  const SECRET = "an-hs256-shared-secret-for-the-black-box-tests";
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  /** An HS256 (a secret) or RS256 (a private key) token, expiring in 5 minutes unless `exp` says otherwise. */
  function jwt(header: Record<string, unknown>, claims: Record<string, unknown>, key: string | Buffer | KeyObject): string {
    const payload = { exp: Math.floor(Date.now() / 1000) + 300, ...claims };
    const input = `${part(header)}.${part(payload)}`;
    const sig =
      typeof key === "string" || Buffer.isBuffer(key) ? createHmac("sha256", key).update(input).digest() : sign("sha256", Buffer.from(input), key);
    return `${input}.${sig.toString("base64url")}`;
  }
  const yamlConfig = (dirName: string) => {
    const path = join(tmp, `${dirName}.yaml`);
    writeFileSync(
      path,
      [
        "providers:",
        "  local:",
        `    path: ${dirName}/keys.json`,
        "tenants:",
        "  defaultKey: { provider: local, keyId: default }",
        "",
      ].join("\n"),
    );
    return path;
  };

  async function roundTrip(server: ServerProcess, token: string): Promise<void> {
    const plaintext = b64("via a JWT");
    const enc = await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext }, token);
    expect(enc.status).toBe(200);
    const dec = await call(server.url, "POST", "/v1/tenants/tenant-a/decrypt", { ciphertext: enc.body.ciphertext }, token);
    expect(dec.body).toEqual({ plaintext });
  }

  describe("HS256, issuer and audience, YAML configuration", () => {
    let server: ServerProcess;
    const claims = { iss: "https://issuer.example", aud: "kms" };
    const token = (extra: Record<string, unknown>, key: string = SECRET) => jwt({ alg: "HS256", typ: "JWT" }, { ...claims, ...extra }, key);

    beforeAll(async () => {
      server = await harness.start({
        KMS_CONFIG_FILE: yamlConfig("hs256"),
        KMS_AUTH: "jwt",
        KMS_JWT_ALG: "HS256",
        KMS_JWT_SECRET: SECRET,
        KMS_JWT_ISSUER: claims.iss,
        KMS_JWT_AUDIENCE: claims.aud,
      });
    }, 15_000);

    afterAll(async () => {
      await stop(server);
    });

    it("a tenant's token round-trips on its routes; an admin token reads the admin API", async () => {
      await roundTrip(server, token({ tenant: "tenant-a" }));
      const cache = await call(server.url, "GET", "/admin/cache", undefined, token({ role: "kms-admin" }));
      expect(cache.status).toBe(200);
      expect(cache.body).toEqual({ encrypt: expect.any(Object), decrypt: expect.any(Object) });
    });

    it("rejections keep the server's error shape (and no development tokens are printed)", async () => {
      const encrypt = (t: string, tenant = "tenant-a") => call(server.url, "POST", `/v1/tenants/${tenant}/encrypt`, { plaintext: b64("x") }, t);
      expectError(await encrypt(token({ tenant: "tenant-a" }), "tenant-b"), 403, "TENANT_MISMATCH");
      expectError(await encrypt(token({ tenant: "tenant-a" }, "another-secret-of-at-least-32-bytes!!")), 401, "UNAUTHENTICATED");
      expectError(await encrypt(token({ tenant: "tenant-a", exp: Math.floor(Date.now() / 1000) - 120 })), 401, "UNAUTHENTICATED");
      expectError(await encrypt(token({ tenant: "tenant-a", aud: "other" })), 401, "UNAUTHENTICATED");
      expectError(await encrypt(`${part({ alg: "none" })}.${part({ tenant: "tenant-a", ...claims, exp: 9e9 })}.`), 401, "UNAUTHENTICATED");
      expectError(await encrypt(token({ role: "kms-admin" })), 403, "FORBIDDEN");
      expectError(await call(server.url, "GET", "/admin/cache", undefined, token({ tenant: "tenant-a" })), 403, "FORBIDDEN");
      expect(server.stdout()).not.toContain("Development tokens");
    });

    it("never logs a token", async () => {
      const secretToken = token({ tenant: "tenant-b", marker: "JWT-LOG-MARKER" });
      await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext: b64("x") }, secretToken);
      // The earlier test's TENANT_MISMATCH line is the first; this request's is the second.
      const mismatches = (out: string) => out.split('"outcome":"TENANT_MISMATCH"').length - 1;
      await waitForStdout(server, (out) => (mismatches(out) >= 2 ? true : undefined), "the access log line");
      expect(server.stdout()).not.toContain(secretToken.split(".")[1]!);
      expect(server.stdout()).not.toContain(secretToken.split(".")[2]!);
    });
  });

  describe("RS256 with a JWKS file", () => {
    let server: ServerProcess;

    beforeAll(async () => {
      const jwksPath = join(tmp, "jwks.json");
      writeFileSync(jwksPath, JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: "k1", use: "sig", alg: "RS256" }] }));
      server = await harness.start({
        KMS_CONFIG_FILE: yamlConfig("rs256"),
        KMS_AUTH: "jwt",
        KMS_JWT_ALG: "RS256",
        KMS_JWT_JWKS_FILE: jwksPath,
      });
    }, 15_000);

    afterAll(async () => {
      await stop(server);
    });

    it("a tenant's token round-trips; an admin token reads /metrics", async () => {
      await roundTrip(server, jwt({ alg: "RS256", kid: "k1" }, { tenant: "tenant-a" }, privateKey));
      const metrics = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${jwt({ alg: "RS256", kid: "k1" }, { role: "kms-admin" }, privateKey)}` } });
      expect(metrics.status).toBe(200);
    });

    it("alg confusion: an HS256 token signed with the public key as the secret is 401", async () => {
      const pem = publicKey.export({ format: "pem", type: "spki" }) as string;
      const forged = jwt({ alg: "HS256", kid: "k1" }, { tenant: "tenant-a", role: "kms-admin" }, pem);
      expectError(await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext: b64("x") }, forged), 401, "UNAUTHENTICATED");
      expectError(await call(server.url, "GET", "/admin/cache", undefined, forged), 401, "UNAUTHENTICATED");
    });
  });
});

describe("static tokens configured as SHA-256 hashes (production)", () => {
  it("a tenant's token works on its routes and the admin's on /metrics; the tokens appear nowhere", async () => {
    const sha = (token: string) => `sha256:${createHash("sha256").update(token).digest("hex")}`;
    const tenantToken = "tenant-a-token-from-a-vault-0123";
    const adminToken = "admin-token-from-a-vault-0123456";
    const server = await harness.start({
      NODE_ENV: "production",
      KMS_ALLOW_LOCAL_IN_PRODUCTION: "true",
      KMS_LOCAL_KEY_STORE: join(tmp, "hashed", "keys.json"),
      KMS_TENANT_TOKEN_HASHES: JSON.stringify({ "tenant-a": sha(tenantToken) }),
      KMS_ADMIN_TOKEN_HASH: sha(adminToken),
    });
    try {
      const enc = await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext: b64("hashed") }, tenantToken);
      expect(enc.status).toBe(200);
      expectError(await call(server.url, "POST", "/v1/tenants/tenant-a/encrypt", { plaintext: b64("x") }, sha(tenantToken).slice(7)), 401, "UNAUTHENTICATED");
      expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(200);
      expect(server.stdout()).not.toContain(tenantToken);
      expect(server.stdout()).not.toContain("Development tokens");
    } finally {
      await stop(server);
    }
  });
});

describe("development tokens", () => {
  it("generates and prints tokens once when none is configured, and they work", async () => {
    const server = await harness.start({ KMS_LOCAL_KEY_STORE: join(tmp, "dev", "keys.json"), KMS_DEMO_TENANTS: "alpha, beta" });
    try {
      // Printed (in one write) right after the listening line.
      await waitForStdout(server, (out) => /admin: \S+/.exec(out)?.[0], "the development tokens");
      const out = server.stdout();
      const alpha = /tenant alpha: (\S+)/.exec(out)?.[1];
      const beta = /tenant beta: (\S+)/.exec(out)?.[1];
      expect(alpha).toBeDefined();
      expect(beta).toBeDefined();
      expect(/admin: (\S+)/.exec(out)?.[1]).toBeDefined();
      expect(out.split(alpha!).length - 1).toBe(1);
      const enc = await call(server.url, "POST", "/v1/tenants/alpha/encrypt", { plaintext: b64("hi") }, alpha);
      expect(enc.status).toBe(200);
      const cross = await call(server.url, "POST", "/v1/tenants/alpha/encrypt", { plaintext: b64("hi") }, beta);
      expectError(cross, 403, "TENANT_MISMATCH");
    } finally {
      await stop(server);
    }
  }, 15_000);
});

describe("graceful shutdown", () => {
  it.each(["SIGTERM", "SIGINT"] as const)("on %s, finishes the request in flight, then exits 0", async (signal) => {
    const server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(tmp, "shutdown", "keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
    });
    // A request whose body is only half sent when the signal arrives: it is in flight.
    const body = Buffer.from(JSON.stringify({ plaintext: b64("the last request") }));
    const { hostname, port } = new URL(server.url);
    const req = request({
      host: hostname,
      port,
      method: "POST",
      path: "/v1/tenants/tenant-a/encrypt",
      headers: {
        "content-type": "application/json",
        "content-length": body.length,
        authorization: `Bearer ${TOKENS["tenant-a"]}`,
        // Node's server answers `100 Continue` as it hands the request to Fastify (it has no
        // `checkContinue` listener): once the client sees it, the server has taken the request.
        expect: "100-continue",
      },
    });
    const response = new Promise<{ status: number; body: string }>((resolveRes, reject) => {
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (d: string) => (text += d));
        res.on("end", () => resolveRes({ status: res.statusCode ?? 0, body: text }));
      });
      req.on("error", reject);
    });
    req.flushHeaders();
    await Promise.race([
      once(req, "continue"),
      response.then((r) => Promise.reject(new Error(`answered before 100 Continue: ${r.status} ${r.body}`))),
    ]);
    req.write(body.subarray(0, 10));
    server.child.kill(signal);
    // The rest of the body goes out only once the server is shutting down.
    await waitForStdout(
      server,
      (out) => logLines(out).find((l) => l.msg === "shutting down: finishing in-flight requests" && l.signal === signal),
      "the shutdown log line",
    );
    req.end(body.subarray(10));
    const [res, code] = await Promise.all([response, exited(server.child)]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ ciphertext: expect.stringMatching(/^[A-Za-z0-9_-]+$/) });
    expect(code).toBe(0);
    expect(server.stdout()).toContain('"msg":"stopped"');
    // The evidence log was closed: its writer lock is gone and every start's record is there, intact.
    const evidenceFile = join(tmp, "shutdown", "evidence.jsonl");
    expect(existsSync(`${evidenceFile}.lock`)).toBe(false);
    const records: unknown[] = [];
    for await (const record of readEvidenceFile(evidenceFile)) records.push(record);
    expect(await verifyEvidence(records)).toMatchObject({ ok: true });
    expect(records.at(-1)).toMatchObject({ type: "config.loaded", outcome: "success" });
  }, 15_000);
});

describe("start-up with an invalid configuration exits non-zero, naming the code and docs link", () => {
  const tokens = { KMS_TENANT_TOKENS: JSON.stringify(TOKENS) };
  const configFile = (name: string, content: string) => {
    const path = join(tmp, name);
    writeFileSync(path, content);
    return path;
  };

  const cases: [string, () => Record<string, string>, KmsErrorCode, string[]][] = [
    [
      "(a) NODE_ENV=production with local and no opt-in",
      () => ({ ...tokens, NODE_ENV: "production", KMS_LOCAL_KEY_STORE: join(tmp, "prod", "keys.json") }),
      "KMS_LOCAL_IN_PRODUCTION",
      [],
    ],
    [
      "(b) a credential in the Azure settings (DefaultAzureCredential reads the environment)",
      () => ({
        ...tokens,
        KMS_CONFIG_FILE: configFile(
          "azure.json",
          JSON.stringify({
            providers: { "azure-key-vault": { vaultUrl: "https://example.vault.azure.net", credential: { clientSecret: "pw-in-file" } } },
            tenants: { defaultKey: { provider: "azure-key-vault", keyId: "tenants" } },
          }),
        ),
      }),
      "KMS_CONFIG_INVALID",
      ["providers.azure-key-vault.credential: a credential cannot come from configuration: azureKeyVault() uses DefaultAzureCredential (its environment)"],
    ],
    [
      "(c) an unknown provider name",
      () => ({
        ...tokens,
        KMS_CONFIG_FILE: configFile(
          "unknown.json",
          JSON.stringify({ providers: { "acme-kms": {} }, tenants: { defaultKey: { provider: "acme-kms", keyId: "k" } } }),
        ),
      }),
      "KMS_PROVIDER_UNKNOWN",
      ["acme-kms"],
    ],
    [
      "(d) a bad cache value",
      () => ({
        ...tokens,
        KMS_LOCAL_KEY_STORE: join(tmp, "cache", "keys.json"),
        KMS_CONFIG_FILE: configFile(
          "cache.json",
          JSON.stringify({
            providers: { local: {} },
            tenants: { defaultKey: { provider: "local", keyId: "default" } },
            cache: { encrypt: { maxAgeMs: -1 } },
          }),
        ),
      }),
      "KMS_CONFIG_INVALID",
      ["cache.encrypt.maxAgeMs"],
    ],
    [
      "(e) invalid JSON in the config file",
      () => ({ ...tokens, KMS_CONFIG_FILE: configFile("broken.json", '{"providers": {"local": {},}') }),
      "KMS_CONFIG_INVALID",
      ["broken.json"],
    ],
    [
      "(f) production without credentials",
      () => ({ NODE_ENV: "production", KMS_ALLOW_LOCAL_IN_PRODUCTION: "true", KMS_LOCAL_KEY_STORE: join(tmp, "p2", "k.json") }),
      "KMS_CONFIG_INVALID",
      ["KMS_TENANT_TOKENS", "KMS_ADMIN_TOKEN"],
    ],
    [
      "(g) a missing config file",
      () => ({ ...tokens, KMS_CONFIG_FILE: join(tmp, "does-not-exist.json") }),
      "KMS_CONFIG_INVALID",
      ["does-not-exist.json"],
    ],
    [
      "(h) a tenant key naming a provider that has no settings",
      () => ({
        ...tokens,
        KMS_CONFIG_FILE: configFile("no-settings.json", JSON.stringify({ providers: {}, tenants: { defaultKey: { provider: "local", keyId: "k" } } })),
      }),
      "KMS_CONFIG_INVALID",
      ["tenants.defaultKey.provider", "add providers.local"],
    ],
    [
      "(i) an invalid PORT",
      () => ({ ...tokens, PORT: "http", KMS_LOCAL_KEY_STORE: join(tmp, "port", "keys.json") }),
      "KMS_CONFIG_INVALID",
      ["PORT"],
    ],
    [
      "(j) a YAML config file with a duplicate key",
      () => ({ ...tokens, KMS_CONFIG_FILE: configFile("dup.yaml", "providers: {local: {}}\nproviders: {}\n") }),
      "KMS_CONFIG_INVALID",
      ["dup.yaml", "a duplicate key (at line 2 column 1)"],
    ],
    [
      "(k) a YAML config file with an alias",
      () => ({ ...tokens, KMS_CONFIG_FILE: configFile("alias.yml", "a: &a [1]\nproviders: {local: *a}\n") }),
      "KMS_CONFIG_INVALID",
      ["alias.yml", "aliases (*name) are not allowed"],
    ],
    [
      "(l) JWT credentials with a short HS256 secret",
      () => ({ KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: "too-short", KMS_LOCAL_KEY_STORE: join(tmp, "jwt", "keys.json") }),
      "KMS_CONFIG_INVALID",
      ["KMS_JWT_SECRET", "at least 32 bytes"],
    ],
  ];

  it.each(cases)("%s", async (_name, env, code, mentions) => {
    const { code: exitCode, output } = await harness.runToExit(env());
    expect(exitCode).toBe(1);
    expect(output).toContain(code);
    expect(output).toContain(docsUrlFor(code));
    for (const m of mentions) expect(output).toContain(m);
  });

  it("a config file without providers exits 1 naming `providers`: no fallback to local", async () => {
    const { code, output } = await harness.runToExit({
      ...tokens,
      KMS_CONFIG_FILE: configFile("no-providers.json", JSON.stringify({ tenants: { defaultKey: { provider: "local", keyId: "k" } } })),
    });
    expect(code).toBe(1);
    expect(output).toContain("  - providers: configuration file ");
    expect(output).toContain(`[KMS_CONFIG_INVALID] ${docsUrlFor("KMS_CONFIG_INVALID")}`);
    // Core's own (vaguer) issue at the same path is not repeated.
    expect(output).toContain("Invalid KMS configuration: 1 problem(s)");
    expect(output).not.toContain("listening on");
  });

  it("NODE_ENV=Production (any case) without tokens exits 1", async () => {
    const { code, output } = await harness.runToExit({
      NODE_ENV: "Production",
      KMS_ALLOW_LOCAL_IN_PRODUCTION: "true",
      KMS_LOCAL_KEY_STORE: join(tmp, "p3", "k.json"),
    });
    expect(code).toBe(1);
    expect(output).toContain(`  - KMS_TENANT_TOKENS: no credentials are configured`);
    expect(output).toContain(`[KMS_CONFIG_INVALID] ${docsUrlFor("KMS_CONFIG_INVALID")}`);
    expect(output).not.toContain("Development tokens");
  });

  it("opting in allows local in production (and it starts)", async () => {
    const server = await harness.start({
      ...tokens,
      NODE_ENV: "production",
      KMS_ALLOW_LOCAL_IN_PRODUCTION: "true",
      KMS_LOCAL_KEY_STORE: join(tmp, "optin", "keys.json"),
    });
    const res = await call(server.url, "GET", "/health/kms");
    expect(res.status).toBe(200);
    await stop(server);
  }, 15_000);
});
