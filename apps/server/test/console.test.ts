/**
 * The admin console's server side, in process (the app on an ephemeral port, called with fetch):
 * static files and their security headers, sign-in, the session cookie's flags, CSRF refusals,
 * expiry, sign-out, and the admin API routes the console added (tenant listing over 10,000
 * tenants, overview, evidence verification, the setup wizard's check, which must build what
 * `kms init` builds). The browser tests are in console.browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createHmac } from "node:crypto";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { buildSetupConfig, setupConfigText, type KmsClient, type KmsEvent, type KmsHealth, type PermissionReport } from "@kms/core";
import { createEvidenceLog, exportEvidence, memoryEvidenceStore, type EvidenceLog, type EvidenceManifest } from "@kms/rotation";
import { buildApp } from "../src/app";
import { createTokenAuth, digestsOf } from "../src/auth";
import { createJwtAuth } from "../src/jwt";
import { alertsOf, CONTENT_SECURITY_POLICY } from "../src/console/routes";
import { clearedSessionCookie, createSessionStore, sessionCookie } from "../src/console/session";
import { createSetupWizard } from "../src/console/setup";
import type { PublicRotationStatus, RotationService } from "../src/rotation";
import { REGISTRY } from "../src/registry";

const ADMIN = "console-admin-token-0123456789";
const TENANT_TOKEN = "console-tenant-token-0123456789";
const HMAC_KEY = Buffer.from("console-test-hmac-key-0123456789abcdef", "utf8");
const COOKIE = /^kms_console_session=([A-Za-z0-9_-]{43}); Path=\/admin; HttpOnly; SameSite=Strict$/;

/** The parts of a KmsClient the admin API and the console use. */
class MiniKms {
  listeners: ((event: KmsEvent) => void)[] = [];
  invalidated: string[] = [];
  permissionsOk = true;
  health: KmsHealth = {
    ready: true,
    providers: { "aws-kms": { healthy: true, status: "up", insecure: false, circuit: "closed", latencyMs: 12, cachedKeys: 3 } },
    cache: { encrypt: { entries: 2, hits: 40, misses: 2 }, decrypt: { entries: 1, hits: 10, misses: 1 } },
  };
  async checkHealth(): Promise<KmsHealth> {
    return this.health;
  }
  cacheStats(): KmsHealth["cache"] {
    return this.health.cache;
  }
  onEvent(listener: (event: KmsEvent) => void): () => void {
    this.listeners.push(listener);
    return () => undefined;
  }
  invalidateTenant(tenantId: string): void {
    this.invalidated.push(tenantId);
  }
  async validatePermissions(): Promise<PermissionReport> {
    return { ok: this.permissionsOk, keys: [{ provider: "aws-kms", keyId: "alias/k", checks: [{ permission: "kms:Encrypt", ok: this.permissionsOk }] }] };
  }
  async close(): Promise<void> {}
}

/** 10,000 tenants on 7 keys; `status` calls are counted. */
function fakeRotation(): RotationService & { statusCalls: string[]; versions: Map<string, number>; hanging: Set<string> } {
  const tenants = Array.from({ length: 10_000 }, (_, i) => ({ tenantId: `tenant-${String(i).padStart(5, "0")}`, provider: "aws-kms", keyId: `alias/key-${i % 7}` }));
  const versions = new Map<string, number>();
  const statusCalls: string[] = [];
  /** Keys whose description never comes (a KMS that hangs). */
  const hanging = new Set<string>();
  const find = (tenantId: string) => tenants.find((t) => t.tenantId === tenantId);
  return {
    tenants,
    statusCalls,
    versions,
    hanging,
    async status(tenantId) {
      statusCalls.push(tenantId);
      const t = find(tenantId);
      if (t === undefined) return undefined;
      if (hanging.has(t.keyId)) return new Promise<never>(() => undefined);
      const status: PublicRotationStatus = {
        ...t,
        currentVersion: String(versions.get(t.keyId) ?? 1),
        lastRotatedAt: "2026-01-01T00:00:00.000Z",
        nextDueAt: "2026-04-01T00:00:00.000Z",
        ageMs: 1000,
        cryptoperiodMs: 90 * 86_400_000,
        overdue: t.keyId === "alias/key-3",
        lastError: null,
      };
      return status;
    },
    async rotate(tenantId) {
      const t = find(tenantId);
      if (t === undefined) return undefined;
      const previous = versions.get(t.keyId) ?? 1;
      versions.set(t.keyId, previous + 1);
      return { tenantId, provider: t.provider, keyId: t.keyId, previousVersion: String(previous), currentVersion: String(previous + 1) };
    },
    start() {},
    async stop() {},
  };
}

let app: FastifyInstance;
let base: string;
let clock = Date.UTC(2026, 10, 1);
const kms = new MiniKms();
const rotation = fakeRotation();
let evidence: EvidenceLog;
const logLines: string[] = [];
/** Every session id and CSRF token handed out, to look for in the log. */
const secretsSeen: string[] = [];

interface Res {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

async function call(method: string, path: string, options: { cookie?: string; csrf?: string; bearer?: string; body?: unknown } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  if (options.csrf !== undefined) headers["x-csrf-token"] = options.csrf;
  if (options.bearer !== undefined) headers.authorization = `Bearer ${options.bearer}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    // HTML, JS, CSS
  }
  return { status: res.status, headers: res.headers, body, text };
}

const code = (res: Res) => (res.body.error as { code?: string } | undefined)?.code;

interface SignedIn {
  cookie: string;
  csrf: string;
  setCookie: string;
  body: Record<string, unknown>;
}

async function signIn(token = ADMIN): Promise<SignedIn> {
  const res = await call("POST", "/admin/console/session", { body: { token } });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get("set-cookie")!;
  const id = COOKIE.exec(setCookie)?.[1];
  expect(id).toBeDefined();
  secretsSeen.push(id!, res.body.csrfToken as string);
  return { cookie: `kms_console_session=${id}`, csrf: res.body.csrfToken as string, setCookie, body: res.body };
}

beforeAll(async () => {
  evidence = createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: HMAC_KEY });
  for (const tenantId of ["tenant-00001", "tenant-00002", "tenant-00001"]) {
    await evidence.append({ type: "key.rotated", tenantId, provider: "aws-kms", keyId: "alias/key-1", actor: "test", outcome: "success", previousVersion: "1", keyVersion: "2" });
  }
  app = buildApp({
    kms: kms as unknown as KmsClient,
    auth: createTokenAuth(digestsOf({ tenants: { "tenant-a": TENANT_TOKEN }, admin: ADMIN })),
    logger: { level: "debug", stream: new Writable({ write: (chunk, _enc, done) => (logLines.push(String(chunk)), done()) }) },
    rotation,
    evidence,
    evidenceHmacKey: HMAC_KEY,
    console: { now: () => clock, keyStatusWaitMs: 200 },
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address() as { port: number };
  base = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await app.close();
});

describe("static files", () => {
  it.each([
    ["/admin/console", "text/html; charset=utf-8"],
    ["/admin/console/", "text/html; charset=utf-8"],
    ["/admin/console/app.js", "text/javascript; charset=utf-8"],
    ["/admin/console/app.css", "text/css; charset=utf-8"],
  ])("GET %s: %s with the strict headers", async (path, type) => {
    const res = await call("GET", path);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(type);
    expect(res.headers.get("content-security-policy")).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  it("the page loads nothing from elsewhere and has no inline script or style (the CSP would block them)", async () => {
    const html = (await call("GET", "/admin/console")).text;
    expect(html).not.toMatch(/<script(?![^>]*\ssrc="\/admin\/console\/app\.js")/);
    expect(html).not.toMatch(/\sstyle=|<style|\son[a-z]+=/i);
    expect(html).not.toMatch(/https?:\/\//);
    const js = (await call("GET", "/admin/console/app.js")).text;
    // No HTML injection and no browser storage for anything.
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|localStorage|sessionStorage|eval\(/);
  });

  it("nothing else under /admin/console is served", async () => {
    const res = await call("GET", "/admin/console/app.ts");
    expect({ status: res.status, code: code(res) }).toEqual({ status: 404, code: "NOT_FOUND" });
  });
});

describe("sign-in, session cookie and CSRF", () => {
  it("signs in with the admin credential: the cookie is HttpOnly, SameSite=Strict, Path=/admin, no Secure over plain HTTP", async () => {
    const { setCookie, body, cookie, csrf } = await signIn();
    expect(setCookie).toMatch(COOKIE);
    expect(body).toEqual({ signedIn: true, csrfToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), expiresAt: new Date(clock + 15 * 60_000).toISOString(), idleTimeoutMs: 900_000 });
    expect(csrf).not.toBe(cookie.split("=")[1]);
    expect(setCookie + JSON.stringify(body)).not.toContain(ADMIN);
    const status = await call("GET", "/admin/console/session", { cookie });
    expect(status.body).toEqual({ ...body });
  });

  it("Secure is added when the request came over TLS", () => {
    expect(sessionCookie("x".repeat(43), true)).toBe(`kms_console_session=${"x".repeat(43)}; Path=/admin; HttpOnly; SameSite=Strict; Secure`);
    expect(clearedSessionCookie(true)).toBe("kms_console_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
  });

  it("refuses a wrong credential (401) and a tenant's (403), and sets no cookie", async () => {
    for (const [token, status, errorCode] of [
      ["not-the-admin-token", 401, "UNAUTHENTICATED"],
      ["has spaces and ünïcode", 401, "UNAUTHENTICATED"],
      [TENANT_TOKEN, 403, "FORBIDDEN"],
    ] as const) {
      const res = await call("POST", "/admin/console/session", { body: { token } });
      expect({ status: res.status, code: code(res), cookie: res.headers.get("set-cookie") }).toEqual({ status, code: errorCode, cookie: null });
    }
    const bad = await call("POST", "/admin/console/session", { body: { token: ADMIN, extra: 1 } });
    expect({ status: bad.status, code: code(bad) }).toEqual({ status: 400, code: "INPUT_INVALID" });
  });

  it("a form post (not JSON) is refused: the credential only travels as JSON", async () => {
    const res = await fetch(`${base}/admin/console/session`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `token=${ADMIN}` });
    expect(res.status).toBe(415);
  });

  const STATE_CHANGING: [string, string, unknown][] = [
    ["POST", "/admin/validate-kms", undefined],
    ["DELETE", "/admin/tenants/tenant-00001/cache", undefined],
    ["POST", "/admin/tenants/tenant-00001/rotate", undefined],
    ["POST", "/admin/evidence/verify", { manifest: {}, content: "" }],
    ["POST", "/admin/config/check", { answers: {} }],
    ["DELETE", "/admin/console/session", undefined],
  ];
  const READS: [string, string][] = [
    ["GET", "/admin/cache"],
    ["GET", "/admin/health"],
    ["GET", "/admin/overview"],
    ["GET", "/admin/tenants"],
    ["GET", "/admin/tenants/tenant-00001/rotation"],
    ["GET", "/admin/evidence/export"],
    ["GET", "/admin/config/questions"],
  ];

  it.each([...STATE_CHANGING, ...READS.map(([m, p]) => [m, p, undefined] as [string, string, unknown])])(
    "%s %s without a cookie or credential → 401 UNAUTHENTICATED",
    async (method, path, body) => {
      const res = await call(method, path, { body });
      expect({ status: res.status, code: code(res) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    },
  );

  it.each(STATE_CHANGING)("%s %s with the cookie but without the CSRF token → 403, with a wrong one → 403; nothing happens", async (method, path, body) => {
    const session = await signIn();
    const other = await signIn();
    const before = { invalidated: kms.invalidated.length, versions: JSON.stringify([...rotation.versions]) };
    for (const csrf of [undefined, "", "x".repeat(43), other.csrf, session.csrf.slice(1)]) {
      const res = await call(method, path, { cookie: session.cookie, ...(csrf === undefined ? {} : { csrf }), body });
      expect({ status: res.status, code: code(res) }).toEqual({ status: 403, code: "FORBIDDEN" });
    }
    expect({ invalidated: kms.invalidated.length, versions: JSON.stringify([...rotation.versions]) }).toEqual(before);
    // The session is still good: the refusals did not end it.
    expect((await call("GET", "/admin/console/session", { cookie: session.cookie })).body.signedIn).toBe(true);
  });

  it.each(READS)("%s %s with the cookie and no CSRF token → 200 (reads need none)", async (method, path) => {
    const { cookie } = await signIn();
    expect((await call(method, path, { cookie })).status).toBe(200);
  });

  it("with the cookie and its CSRF token, state-changing calls work", async () => {
    const { cookie, csrf } = await signIn();
    const del = await call("DELETE", "/admin/tenants/tenant-00001/cache", { cookie, csrf });
    expect(del.status).toBe(204);
    expect(kms.invalidated.at(-1)).toBe("tenant-00001");
    const validate = await call("POST", "/admin/validate-kms", { cookie, csrf });
    expect({ status: validate.status, body: validate.body }).toEqual({
      status: 200,
      body: { ok: true, keys: [{ provider: "aws-kms", keyId: "alias/k", checks: [{ permission: "kms:Encrypt", ok: true }] }] },
    });
  });

  it("an unknown or malformed session cookie → 401", async () => {
    for (const cookie of ["kms_console_session=" + "A".repeat(43), "kms_console_session=short", "kms_console_session="]) {
      const res = await call("GET", "/admin/cache", { cookie });
      expect({ status: res.status, code: code(res) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    }
  });

  it("the bearer credential keeps working, and a request with one is judged by it alone", async () => {
    expect((await call("GET", "/admin/cache", { bearer: ADMIN })).status).toBe(200);
    const { cookie } = await signIn();
    const res = await call("GET", "/admin/cache", { cookie, bearer: "not-the-admin-token" });
    expect({ status: res.status, code: code(res) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    const tenant = await call("GET", "/admin/cache", { cookie, bearer: TENANT_TOKEN });
    expect({ status: tenant.status, code: code(tenant) }).toEqual({ status: 403, code: "FORBIDDEN" });
    // Bearer callers are not browsers: no CSRF token is asked of them.
    expect((await call("DELETE", "/admin/tenants/tenant-00002/cache", { bearer: ADMIN })).status).toBe(204);
  });

  it("a session idle for 15 minutes is gone (401); use keeps it alive", async () => {
    const { cookie } = await signIn();
    clock += 14 * 60_000;
    expect((await call("GET", "/admin/cache", { cookie })).status).toBe(200);
    clock += 14 * 60_000;
    expect((await call("GET", "/admin/cache", { cookie })).status).toBe(200);
    clock += 15 * 60_000;
    const res = await call("GET", "/admin/cache", { cookie });
    expect({ status: res.status, code: code(res) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    expect((await call("GET", "/admin/console/session", { cookie })).body).toEqual({ signedIn: false });
  });

  it("a session ends 8 hours after sign-in however much it is used (401)", async () => {
    const { cookie } = await signIn();
    for (let i = 0; i < 8 * 6 - 1; i++) {
      clock += 10 * 60_000;
      expect((await call("GET", "/admin/cache", { cookie })).status).toBe(200);
    }
    clock += 10 * 60_000;
    expect((await call("GET", "/admin/cache", { cookie })).status).toBe(401);
  });

  it("sign-out deletes the session and clears the cookie; the old cookie is then refused", async () => {
    const { cookie, csrf } = await signIn();
    const out = await call("DELETE", "/admin/console/session", { cookie, csrf });
    expect(out.status).toBe(204);
    expect(out.headers.get("set-cookie")).toBe("kms_console_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    for (const [method, path] of [["GET", "/admin/cache"], ["GET", "/admin/overview"]]) {
      const res = await call(method!, path!, { cookie });
      expect({ status: res.status, code: code(res) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    }
    const del = await call("DELETE", "/admin/tenants/tenant-00001/cache", { cookie, csrf });
    expect({ status: del.status, code: code(del) }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    expect((await call("DELETE", "/admin/console/session", { cookie, csrf })).status).toBe(401);
    expect((await call("GET", "/admin/console/session", { cookie })).body).toEqual({ signedIn: false });
  });

  it("signing in again ends the browser's previous session", async () => {
    const first = await signIn();
    const res = await call("POST", "/admin/console/session", { cookie: first.cookie, body: { token: ADMIN } });
    expect(res.status).toBe(200);
    expect((await call("GET", "/admin/cache", { cookie: first.cookie })).status).toBe(401);
  });

  it("signing in with an admin JWT: its verified expiry caps the session", async () => {
    const secret = Buffer.from("console-jwt-secret-of-at-least-32-bytes!", "utf8");
    const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const exp = Math.floor(clock / 1000) + 300; // 5 minutes: sooner than the 15-minute idle timeout
    const input = `${part({ alg: "HS256", typ: "JWT" })}.${part({ role: "kms-admin", exp })}`;
    const token = `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    const jwtApp = buildApp({
      kms: kms as unknown as KmsClient,
      auth: createJwtAuth({ algorithm: "HS256", secret, now: () => clock }),
      logger: false,
      console: { now: () => clock },
    });
    try {
      await jwtApp.listen({ host: "127.0.0.1", port: 0 });
      const jwtBase = `http://127.0.0.1:${(jwtApp.server.address() as { port: number }).port}`;
      const res = await fetch(`${jwtBase}/admin/console/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ signedIn: true, expiresAt: new Date(exp * 1000).toISOString() });
      const id = COOKIE.exec(res.headers.get("set-cookie")!)![1]!;
      clock += 300_000;
      const after = await fetch(`${jwtBase}/admin/cache`, { headers: { cookie: `kms_console_session=${id}` } });
      expect({ status: after.status, code: ((await after.json()) as { error: { code: string } }).error.code }).toEqual({ status: 401, code: "UNAUTHENTICATED" });
    } finally {
      await jwtApp.close();
    }
    // A static admin token has no expiry of its own.
    expect(createTokenAuth(digestsOf({ tenants: {}, admin: ADMIN })).authorizeAdmin(`Bearer ${ADMIN}`)).toEqual({});
  });

  it("a credential's expiry caps a stored session; the store keeps at most maxSessions", () => {
    let now = 0;
    const store = createSessionStore({ now: () => now, maxSessions: 2 });
    const a = store.create(60_000);
    expect(a.session.expiresAt).toBe(60_000);
    const b = store.create();
    expect(b.session.expiresAt).toBe(8 * 3_600_000);
    store.create();
    expect(store.size).toBe(2);
    expect(store.touch(a.id)).toBeUndefined();
    now = 59_999;
    expect(store.touch(b.id)).toBeDefined();
  });
});

describe("admin API routes the console uses", () => {
  it("GET /admin/tenants pages through 10,000 tenants, searches, and describes each distinct key once per page", async () => {
    const first = await call("GET", "/admin/tenants", { bearer: ADMIN });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ total: 10_000, offset: 0, limit: 25 });
    const items = first.body.items as { tenantId: string; keyId: string; status: { currentVersion: string } | null; statusError: unknown }[];
    expect(items.map((t) => t.tenantId)).toEqual(Array.from({ length: 25 }, (_, i) => `tenant-${String(i).padStart(5, "0")}`));
    expect(items[0]).toEqual({
      tenantId: "tenant-00000",
      provider: "aws-kms",
      keyId: "alias/key-0",
      status: expect.objectContaining({ currentVersion: expect.any(String), nextDueAt: "2026-04-01T00:00:00.000Z", overdue: false, lastError: null }),
      statusError: null,
    });

    rotation.statusCalls.length = 0;
    const last = await call("GET", "/admin/tenants?offset=9990&limit=100", { bearer: ADMIN });
    expect((last.body.items as unknown[]).length).toBe(10);
    expect(new Set(rotation.statusCalls).size).toBe(7);
    expect(rotation.statusCalls).toHaveLength(7);

    const search = await call("GET", "/admin/tenants?search=TENANT-0999", { bearer: ADMIN });
    expect(search.body.total).toBe(10);
    const byKey = await call("GET", "/admin/tenants?search=alias/key-6&limit=1", { bearer: ADMIN });
    expect(byKey.body.total).toBe(Math.ceil((10_000 - 6) / 7));
    const none = await call("GET", "/admin/tenants?search=nobody", { bearer: ADMIN });
    expect(none.body).toEqual({ total: 0, offset: 0, limit: 25, items: [] });

    for (const query of ["limit=0", "limit=101", "offset=-1", "offset=x", "unknown=1", `search=${"s".repeat(257)}`]) {
      const res = await call("GET", `/admin/tenants?${query}`, { bearer: ADMIN });
      expect({ query, status: res.status, code: code(res) }).toEqual({ query, status: 400, code: "INPUT_INVALID" });
    }
  });

  it("a key whose description does not come in time is listed with KMS_TIMEOUT, not a hung answer", async () => {
    rotation.hanging.add("alias/key-2");
    try {
      const res = await call("GET", "/admin/tenants?search=tenant-0000&limit=3", { bearer: ADMIN });
      expect(res.status).toBe(200);
      const items = res.body.items as { tenantId: string; status: unknown; statusError: unknown }[];
      expect(items.map((t) => [t.tenantId, t.status === null, t.statusError])).toEqual([
        ["tenant-00000", false, null],
        ["tenant-00001", false, null],
        ["tenant-00002", true, { code: "KMS_TIMEOUT", message: expect.any(String) }],
      ]);
    } finally {
      rotation.hanging.clear();
    }
  });

  it("rotating through the API changes the version the listing shows", async () => {
    const { cookie, csrf } = await signIn();
    const before = await call("GET", "/admin/tenants?search=tenant-00005", { cookie });
    const version = (res: Res) => (res.body.items as { status: { currentVersion: string } }[])[0]!.status.currentVersion;
    const rotated = await call("POST", "/admin/tenants/tenant-00005/rotate", { cookie, csrf });
    expect(rotated.status).toBe(200);
    const after = await call("GET", "/admin/tenants?search=tenant-00005", { cookie });
    expect(Number(version(after))).toBe(Number(version(before)) + 1);
  });

  it("GET /admin/overview: health, the figures' history, and the alerts that would fire", async () => {
    const res = await call("GET", "/admin/overview", { bearer: ADMIN });
    expect(res.status).toBe(200);
    expect(res.body.health).toEqual(kms.health);
    const history = res.body.history as { intervalMs: number; samples: unknown[] };
    expect(history.intervalMs).toBe(10_000);
    expect(history.samples.at(-1)).toEqual(expect.objectContaining({ hits: expect.any(Number), misses: expect.any(Number), entries: 3, kmsCalls: expect.any(Number) }));
    // alias/key-3 is overdue in the fake.
    expect((res.body.alerts as { name: string }[]).map((a) => a.name)).toEqual(["KmsRotationOverdue"]);
  });

  it("alertsOf evaluates the alert rules' conditions on the figures", () => {
    const sample = (over: Partial<Parameters<typeof alertsOf>[1][number]>) => ({ at: 0, intervalMs: 10_000, hits: 0, misses: 0, entries: 0, kmsCalls: 0, kmsErrors: 0, kmsThrottled: 0, ...over });
    const down = { ready: false, providers: { p: { healthy: false, status: "down" as const, insecure: false, circuit: "open" as const, latencyMs: 1, cachedKeys: 0 } }, cache: kms.health.cache };
    const names = alertsOf(down, [sample({ at: 10_000, hits: 10, misses: 90, kmsCalls: 100, kmsErrors: 50, kmsThrottled: 3 })], []).map((a) => a.name);
    expect(names).toEqual(["KmsProviderDown", "KmsCircuitOpen", "KmsErrorRateHigh", "KmsThrottled", "KmsCacheHitRateLow"]);
    expect(alertsOf(kms.health, [sample({ at: 10_000, hits: 95, misses: 5, kmsCalls: 5 })], [])).toEqual([]);
  });

  describe("POST /admin/evidence/verify", () => {
    const exported = async () => (await call("GET", "/admin/evidence/export", { bearer: ADMIN })).body as { manifest: EvidenceManifest; content: string };

    it("an intact export verifies (signature and MACs with the server's key)", async () => {
      const { manifest, content } = await exported();
      const res = await call("POST", "/admin/evidence/verify", { bearer: ADMIN, body: { manifest, content } });
      // Three records from the set-up, and a permissions.validated per validation run above.
      expect(manifest.count).toBeGreaterThanOrEqual(3);
      expect(res.body).toEqual({ ok: true, count: manifest.count });
      const csv = await exportEvidence(evidence, { format: "csv", filter: { tenantId: "tenant-00001" }, hmacKey: HMAC_KEY });
      expect((await call("POST", "/admin/evidence/verify", { bearer: ADMIN, body: csv })).body).toEqual({ ok: true, count: 2 });
    });

    it("a tampered record is named: the first bad one, its position and the record as uploaded", async () => {
      const { manifest, content } = await exported();
      const lines = content.split("\n");
      lines[1] = lines[1]!.replace('"keyVersion":"2"', '"keyVersion":"9"');
      const res = await call("POST", "/admin/evidence/verify", { bearer: ADMIN, body: { manifest, content: lines.join("\n") } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        ok: false,
        count: 2,
        firstBad: { seq: 2, position: 2, reason: expect.any(String) },
        record: expect.objectContaining({ seq: 2, keyVersion: "9", tenantId: "tenant-00002" }),
      });
    });

    it("a forged manifest fails on its signature; a dropped record is found", async () => {
      const { manifest, content } = await exported();
      const forged = await call("POST", "/admin/evidence/verify", { bearer: ADMIN, body: { manifest: { ...manifest, count: 2 }, content } });
      expect(forged.body).toMatchObject({ ok: false, firstBad: { reason: "signature" } });
      const dropped = content.split("\n").filter((_, i) => i !== 1).join("\n");
      const res = await call("POST", "/admin/evidence/verify", { bearer: ADMIN, body: { manifest, content: dropped } });
      expect(res.body).toMatchObject({ ok: false, firstBad: { position: 2 } });
    });
  });

  describe("the setup wizard (GET /admin/config/questions, POST /admin/config/check)", () => {
    it("asks kms init's questions, in its order", async () => {
      const res = await call("GET", "/admin/config/questions", { bearer: ADMIN });
      const questions = res.body.questions as { flag: string; defaults: Record<string, string> }[];
      expect(questions.map((q) => q.flag)).toEqual([
        "provider",
        "key",
        "region",
        "endpoint",
        "ca-cert",
        "vault-address",
        "vault-url",
        "credentials",
        "local-path",
        "cache-max-age-ms",
        "cache-capacity",
        "rotation-days",
      ]);
      expect(questions.find((q) => q.flag === "key")!.defaults).toEqual({ local: "default", vault: "default" });
    });

    // [answers, file name] whose file must be what `kms init` writes for the same answers.
    const cases: [Record<string, string>, string][] = [
      [{ provider: "local" }, "kms.config.json"],
      [{ provider: "aws-kms", key: "alias/tenants", region: "eu-west-1", endpoint: "http://127.0.0.1:4566", "cache-capacity": "500" }, "kms.config.yaml"],
      [{ provider: "vault", "vault-address": "https://vault.example.com:8200", "rotation-days": "30" }, "kms.yml"],
      [{ provider: "azure-key-vault", key: "tenants", "vault-url": "https://my-vault.vault.azure.net/", "cache-max-age-ms": "60000" }, "azure.json"],
      [{ provider: "gcp-kms", key: "projects/my-project/locations/global/keyRings/r/cryptoKeys/k" }, "gcp.json"],
    ];

    it.each(cases)("builds what kms init builds for %j (%s), checked by core", async (answers, fileName) => {
      const res = await call("POST", "/admin/config/check", { bearer: ADMIN, body: { answers, fileName } });
      expect(res.body).toMatchObject({ ok: true, issues: [], fileName });
      // kms init builds and renders with the same core functions (their exact outputs: packages/core/test/setup.test.ts).
      const wizard = createSetupWizard(REGISTRY, {});
      const filled: Record<string, string> = {};
      for (const q of wizard.questions()) {
        const applies = q.providers === undefined || q.providers.includes(answers.provider!);
        if (applies) filled[q.flag] = answers[q.flag] ?? q.defaults[answers.provider!] ?? "";
      }
      expect(res.body.config).toEqual(buildSetupConfig(filled));
      expect(res.body.text).toBe(setupConfigText(buildSetupConfig(filled), fileName));
    });

    it("reports each bad answer by question, as kms init would refuse it", async () => {
      const res = await call("POST", "/admin/config/check", {
        bearer: ADMIN,
        body: { answers: { provider: "aws-kms", key: "", region: "mars-1", "cache-capacity": "0", credentials: "sometimes", "rotation-days": "4000" }, fileName: "../etc/passwd" },
      });
      expect(res.status).toBe(200);
      expect(res.body.ok).toBe(false);
      expect((res.body.issues as { flag: string }[]).map((i) => i.flag)).toEqual(["key", "region", "credentials", "cache-capacity", "rotation-days", "file"]);
      const unknown = await call("POST", "/admin/config/check", { bearer: ADMIN, body: { answers: { provider: "acme" } } });
      expect(unknown.body).toEqual({ ok: false, issues: [{ flag: "provider", message: "must be one of local, aws-kms, vault, gcp-kms, azure-key-vault" }] });
    });

    it("an answer beyond core's limits (a cache max age above the hard max age) is refused before any file is built", async () => {
      const res = await call("POST", "/admin/config/check", { bearer: ADMIN, body: { answers: { provider: "local", "cache-max-age-ms": "999999999999" } } });
      expect(res.body.ok).toBe(false);
      expect(res.body.issues).toEqual([{ flag: "cache-max-age-ms", message: expect.stringMatching(/^must be an integer from 1 to \d+$/) }]);
    });
  });

  it("the CSP constant is the one documented", () => {
    expect(CONTENT_SECURITY_POLICY).toContain("frame-ancestors 'none'");
  });
});

describe("the log", () => {
  it("has sign-ins and sign-outs, and never the credential, a session id or a CSRF token", () => {
    const log = logLines.join("");
    expect(log).toContain('"msg":"admin console: signed in"');
    expect(log).toContain('"msg":"admin console: signed out"');
    expect(secretsSeen.length).toBeGreaterThan(20);
    for (const secret of [ADMIN, TENANT_TOKEN, ...secretsSeen]) expect(log).not.toContain(secret);
  });
});
