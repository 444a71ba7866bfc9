/**
 * The admin console (`/admin/console`): its fixed static files, the session routes (sign-in with the
 * admin credential, sign-out), security headers on every `/admin` answer, and the admin API routes
 * the console needs besides the existing ones: `GET /admin/overview`, `GET /admin/tenants`,
 * `POST /admin/evidence/verify`, `GET /admin/config/questions` and `POST /admin/config/check`. These
 * are ordinary admin API routes (the bearer admin credential, or a console session with its CSRF
 * token): the console has no route of its own that reaches data.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { KmsHealth } from "@kms/core";
import type { EvidenceManifest } from "@kms/rotation";
import type { Authenticator } from "../auth";
import { HttpError, mapError } from "../errors";
import type { PublicRotationStatus, RotationService } from "../rotation";
import { requireCsrf, sessionOf, type AdminGuard } from "./admin-guard";
import { verifyUploadedExport } from "./evidence-verify";
import { clearedSessionCookie, cookieValue, sessionCookie, SESSION_COOKIE, type Session, type SessionStore } from "./session";
import type { SetupWizard } from "./setup";
import type { StatsHistory, StatsSample } from "./stats";

/** On every `/admin` answer: the page may load only its own files and talk only to its own origin. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The console's files, served from memory (read once at start-up); nothing else under /admin/console. */
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  "/admin/console": { file: "index.html", type: "text/html; charset=utf-8" },
  "/admin/console/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/admin/console/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/admin/console/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
};

/** Where the files are: `static/` next to this module (src/console in tests, dist/console once built: the build copies them). */
export const STATIC_DIR = join(__dirname, "static");

/** `GET /admin/tenants`'s page size: default and largest. */
export const DEFAULT_PAGE_SIZE = 25;
export const MAX_PAGE_SIZE = 100;
/** `POST /admin/evidence/verify` accepts exports up to this size (the body limit of other routes is `KMS_BODY_LIMIT_BYTES`). */
export const EVIDENCE_VERIFY_LIMIT_BYTES = 32 * 1024 * 1024;
/** How long the key statuses behind the rotation alerts are reused, and how many keys are looked at. */
const KEY_STATUS_CACHE_MS = 60_000;
const MAX_ALERT_KEYS = 200;
/**
 * Key statuses come from the rotation providers (the SDK's own timeouts, not core's resilience
 * policy): an answer waits this long for them at most, so a KMS that hangs never hangs the page.
 */
export const DEFAULT_KEY_STATUS_WAIT_MS = 3_000;

/** `promise`'s value, or `fallback()`'s (or its throw) once `ms` passed; the promise carries on, its late failure dropped. */
function withDeadline<T>(promise: Promise<T>, ms: number, fallback: () => T): Promise<T> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolvePromise, reject) => {
    timer = setTimeout(() => {
      try {
        resolvePromise(fallback());
      } catch (error) {
        reject(error);
      }
    }, ms);
    timer.unref();
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Where each alert's runbook section is (the alert rules' own `runbook_url`s). */
const RUNBOOKS = {
  providerFailure: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_PROVIDER_FAILURE.md",
  errorRateHigh: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_PROVIDER_FAILURE.md#kmserrorratehigh",
  circuitOpen: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_PROVIDER_FAILURE.md#kmscircuitopen",
  throttled: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_LATENCY_THROTTLING.md#kmsthrottled",
  cacheHitRateLow: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_LATENCY_THROTTLING.md#kmscachehitratelow",
  rotationOverdue: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_ROTATION_FAILURE.md#kmsrotationoverdue",
  rotationFailing: "https://github.com/kms-toolkit/kms/blob/main/runbooks/KMS_ROTATION_FAILURE.md#kmsrotationfailing",
} as const;

export interface ConsoleDeps {
  auth: Authenticator;
  sessions: SessionStore;
  guard: AdminGuard;
  /** The app's shared, cached health check (the one behind /health/kms and /admin/health). */
  checkHealth: () => Promise<KmsHealth>;
  stats: StatsHistory;
  /** The data-key caches' counters now (`kms.cacheStats()`). */
  cache: () => KmsHealth["cache"];
  wizard: SetupWizard;
  rotation: RotationService | undefined;
  evidenceHmacKey: Buffer | undefined;
  /** How long an answer waits for key statuses (default `DEFAULT_KEY_STATUS_WAIT_MS`). */
  keyStatusWaitMs?: number;
}

export interface Alert {
  name: string;
  severity: "critical" | "warning";
  summary: string;
  runbookUrl: string;
}

export interface TenantRow {
  tenantId: string;
  provider: string;
  keyId: string;
  status: Omit<PublicRotationStatus, "tenantId" | "provider" | "keyId"> | null;
  /** Why the key's status could not be read (the provider's error code). */
  statusError: { code: string; message: string } | null;
}

export function registerConsole(app: FastifyInstance, deps: ConsoleDeps): void {
  const { auth, sessions, guard, rotation } = deps;
  const keyStatusWaitMs = deps.keyStatusWaitMs ?? DEFAULT_KEY_STATUS_WAIT_MS;
  const onRequest = async (request: FastifyRequest) => guard(request);

  const files = new Map<string, { body: Buffer; type: string }>();
  for (const [path, { file, type }] of Object.entries(STATIC_FILES)) {
    try {
      files.set(path, { body: readFileSync(join(STATIC_DIR, file)), type });
    } catch (error) {
      throw new Error(`the admin console's ${file} is missing from ${STATIC_DIR}: build the server with its build script (it copies src/console/static)`, { cause: error });
    }
  }

  app.addHook("onRequest", async (request, reply) => {
    if (!request.url.startsWith("/admin")) return;
    reply.header("content-security-policy", CONTENT_SECURITY_POLICY);
    reply.header("referrer-policy", "no-referrer");
    reply.header("x-frame-options", "DENY");
    reply.header("cross-origin-opener-policy", "same-origin");
    reply.header("cross-origin-resource-policy", "same-origin");
  });

  for (const [path, file] of files) {
    app.get(path, async (_request, reply) => reply.type(file.type).send(file.body));
  }

  // --- sessions

  const secure = (request: FastifyRequest) => request.protocol === "https";
  const sessionBody = (session: Session) => ({
    signedIn: true,
    csrfToken: session.csrfToken,
    expiresAt: new Date(sessions.expiryOf(session)).toISOString(),
    idleTimeoutMs: sessions.idleTimeoutMs,
  });

  app.post<{ Body: { token: string } }>(
    "/admin/console/session",
    {
      bodyLimit: 16 * 1024,
      schema: {
        body: {
          type: "object",
          required: ["token"],
          additionalProperties: false,
          properties: { token: { type: "string", minLength: 1, maxLength: 8192 } },
        },
      },
    },
    async (request, reply) => {
      const { token } = request.body;
      let credential: { expiresAt?: number };
      try {
        // The admin API's own check (static token digest with timingSafeEqual, or a JWT's signature
        // and claims); a JWT's verified expiry caps the session.
        credential = auth.authorizeAdmin(`Bearer ${token}`);
      } catch (error) {
        if (error instanceof HttpError && error.statusCode === 401) throw new HttpError(401, "UNAUTHENTICATED", "The admin credential is not valid");
        throw error;
      }
      // A session this browser already had ends: one sign-in, one session.
      sessions.delete(cookieValue(request.headers.cookie, SESSION_COOKIE));
      const { id, session } = sessions.create(credential.expiresAt);
      request.log.info("admin console: signed in");
      reply.header("set-cookie", sessionCookie(id, secure(request)));
      return sessionBody(session);
    },
  );

  app.get("/admin/console/session", async (request) => {
    // The page asks on load whether it is signed in: not being signed in is an answer, not an error.
    const session = sessions.touch(cookieValue(request.headers.cookie, SESSION_COOKIE));
    return session === undefined ? { signedIn: false } : sessionBody(session);
  });

  app.delete("/admin/console/session", async (request, reply) => {
    const cookie = cookieValue(request.headers.cookie, SESSION_COOKIE);
    const session = sessionOf(sessions, cookie);
    requireCsrf(sessions, session, request);
    sessions.delete(cookie);
    request.log.info("admin console: signed out");
    reply.header("set-cookie", clearedSessionCookie(secure(request)));
    return reply.code(204).send();
  });

  // --- overview: health, the figures' history, the alerts that would fire

  let keyStatuses: { at: number; result: Promise<PublicRotationStatus[]> } | undefined;
  /** The last complete set, for answers that cannot wait for a new one. */
  let lastKeyStatuses: PublicRotationStatus[] = [];
  /** The rotation status of each distinct key (one tenant's view of it), reused for a minute. */
  const statusesOfKeys = (): Promise<PublicRotationStatus[]> => {
    if (rotation === undefined) return Promise.resolve([]);
    if (keyStatuses === undefined || Date.now() - keyStatuses.at >= KEY_STATUS_CACHE_MS) {
      const seen = new Map<string, string>();
      for (const t of rotation.tenants) {
        const name = `${t.provider}:${t.keyId}`;
        if (!seen.has(name) && seen.size < MAX_ALERT_KEYS) seen.set(name, t.tenantId);
      }
      const result = Promise.allSettled([...seen.values()].map((tenantId) => rotation.status(tenantId))).then((all) => {
        lastKeyStatuses = all.flatMap((r) => (r.status === "fulfilled" && r.value !== undefined ? [r.value] : []));
        return lastKeyStatuses;
      });
      keyStatuses = { at: Date.now(), result };
    }
    return withDeadline(keyStatuses.result, keyStatusWaitMs, () => lastKeyStatuses);
  };

  app.get("/admin/overview", { onRequest }, async (request) => {
    let health: KmsHealth | ({ ready: false; providers: Record<string, never> } & ReturnType<typeof mapError>["body"]);
    try {
      health = await deps.checkHealth();
    } catch (error) {
      const mapped = mapError(error);
      request.log.warn({ code: mapped.code }, "health check failed");
      health = { ready: false, providers: {}, ...mapped.body };
    }
    const samples = deps.stats.samples();
    const keys = await statusesOfKeys();
    // `cache`: the counters now (the health report's copy may be up to `healthCacheMs` old).
    return { health, cache: deps.cache(), history: { intervalMs: deps.stats.intervalMs, samples }, alerts: alertsOf(health, samples, keys) };
  });

  // --- tenants and their keys

  if (rotation !== undefined) {
    let sorted: typeof rotation.tenants | undefined;
    app.get<{ Querystring: { search?: string; offset?: string; limit?: string } }>(
      "/admin/tenants",
      {
        onRequest,
        schema: {
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: {
              search: { type: "string", maxLength: 256 },
              // Query values are strings (nothing is coerced): digits, checked below.
              offset: { type: "string", pattern: "^\\d{1,9}$" },
              limit: { type: "string", pattern: "^\\d{1,3}$" },
            },
          },
        },
      },
      async (request) => {
        const search = (request.query.search ?? "").trim().toLowerCase();
        const offset = Number(request.query.offset ?? 0);
        const limit = Number(request.query.limit ?? DEFAULT_PAGE_SIZE);
        if (limit < 1 || limit > MAX_PAGE_SIZE) throw new HttpError(400, "INPUT_INVALID", `Invalid request: querystring/limit must be from 1 to ${MAX_PAGE_SIZE}`);
        sorted ??= [...rotation.tenants].sort((a, b) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0));
        const matching = search === "" ? sorted : sorted.filter((t) => t.tenantId.toLowerCase().includes(search) || t.keyId.toLowerCase().includes(search));
        const page = matching.slice(offset, offset + limit);
        // One fresh status per distinct key on the page (many tenants usually share a key).
        const byKey = new Map<string, Promise<PublicRotationStatus | undefined>>();
        for (const t of page) {
          const name = `${t.provider}:${t.keyId}`;
          if (!byKey.has(name)) {
            const status = rotation.status(t.tenantId);
            byKey.set(
              name,
              withDeadline(status, keyStatusWaitMs, () => {
                throw new HttpError(504, "KMS_TIMEOUT", "The key service did not describe the key in time");
              }),
            );
          }
        }
        const items: TenantRow[] = await Promise.all(
          page.map(async (t) => {
            try {
              const status = await byKey.get(`${t.provider}:${t.keyId}`)!;
              if (status === undefined) return { tenantId: t.tenantId, provider: t.provider, keyId: t.keyId, status: null, statusError: null };
              const { tenantId: _t, provider: _p, keyId: _k, ...rest } = status;
              return { tenantId: t.tenantId, provider: t.provider, keyId: t.keyId, status: rest, statusError: null };
            } catch (error) {
              const { code, body } = mapError(error);
              return { tenantId: t.tenantId, provider: t.provider, keyId: t.keyId, status: null, statusError: { code, message: body.error.message } };
            }
          }),
        );
        return { total: matching.length, offset, limit, items };
      },
    );
  }

  // --- evidence: verify an export

  app.post<{ Body: { manifest: EvidenceManifest; content: string } }>(
    "/admin/evidence/verify",
    {
      onRequest,
      bodyLimit: EVIDENCE_VERIFY_LIMIT_BYTES,
      schema: {
        body: {
          type: "object",
          required: ["manifest", "content"],
          additionalProperties: false,
          properties: { manifest: { type: "object" }, content: { type: "string" } },
        },
      },
    },
    async (request) => {
      const answer = await verifyUploadedExport(request.body.content, request.body.manifest, deps.evidenceHmacKey);
      if (!answer.ok) request.outcome = "EVIDENCE_INVALID";
      return answer;
    },
  );

  // --- the setup wizard: kms init's questions, and core's check of the file they make

  app.get("/admin/config/questions", { onRequest }, async () => ({ questions: deps.wizard.questions() }));

  app.post<{ Body: { answers: Record<string, string>; fileName?: string } }>(
    "/admin/config/check",
    {
      onRequest,
      bodyLimit: 256 * 1024,
      schema: {
        body: {
          type: "object",
          required: ["answers"],
          additionalProperties: false,
          properties: {
            answers: { type: "object", additionalProperties: { type: "string", maxLength: 65_536 } },
            fileName: { type: "string", maxLength: 256 },
          },
        },
      },
    },
    async (request) => {
      const result = await deps.wizard.check(request.body.answers, request.body.fileName);
      if (!result.ok) request.outcome = "CONFIG_INVALID";
      return result;
    },
  );
}

/**
 * The alert rules of runbooks/alerts/kms.rules.yml that this server's own figures can evaluate,
 * evaluated now over the history (without their `for:` durations: "would fire"), plus readiness.
 */
export function alertsOf(health: KmsHealth | { ready: false; providers: Record<string, never> }, samples: readonly StatsSample[], keys: readonly PublicRotationStatus[]): Alert[] {
  const alerts: Alert[] = [];
  for (const [id, p] of Object.entries(health.providers)) {
    if (p.status === "down") alerts.push({ name: "KmsProviderDown", severity: "critical", summary: `Provider ${id} is down and nothing from it is cached: its tenants cannot be served`, runbookUrl: RUNBOOKS.providerFailure });
    if (p.circuit === "open") alerts.push({ name: "KmsCircuitOpen", severity: "critical", summary: `The circuit breaker of ${id} is open`, runbookUrl: RUNBOOKS.circuitOpen });
  }
  if (Object.keys(health.providers).length === 0 && !health.ready) {
    alerts.push({ name: "KmsProviderDown", severity: "critical", summary: "The KMS health check failed", runbookUrl: RUNBOOKS.providerFailure });
  }
  const window = (ms: number) => {
    const last = samples.at(-1)?.at ?? 0;
    const within = samples.filter((s) => s.at > last - ms);
    const seconds = Math.max(1, within.reduce((n, s) => n + s.intervalMs, 0) / 1000);
    const sum = (f: (s: StatsSample) => number) => within.reduce((n, s) => n + f(s), 0);
    return { seconds, hits: sum((s) => s.hits), misses: sum((s) => s.misses), calls: sum((s) => s.kmsCalls), errors: sum((s) => s.kmsErrors), throttled: sum((s) => s.kmsThrottled) };
  };
  const five = window(5 * 60_000);
  if (five.calls / five.seconds > 0.1 && five.errors / five.calls > 0.01) {
    alerts.push({ name: "KmsErrorRateHigh", severity: "critical", summary: `${Math.round((100 * five.errors) / five.calls)} % of KMS calls failed in the last 5 minutes`, runbookUrl: RUNBOOKS.errorRateHigh });
  }
  if (five.throttled > 0) {
    alerts.push({ name: "KmsThrottled", severity: "warning", summary: `The KMS throttled ${five.throttled} call(s) in the last 5 minutes`, runbookUrl: RUNBOOKS.throttled });
  }
  const ten = window(10 * 60_000);
  const lookups = ten.hits + ten.misses;
  if (lookups / ten.seconds > 1 && ten.hits / lookups < 0.8) {
    alerts.push({ name: "KmsCacheHitRateLow", severity: "warning", summary: `Cache hit rate ${Math.round((100 * ten.hits) / lookups)} % over the last 10 minutes (SLO 80 %)`, runbookUrl: RUNBOOKS.cacheHitRateLow });
  }
  const overdue = keys.filter((k) => k.overdue);
  if (overdue.length > 0) {
    alerts.push({ name: "KmsRotationOverdue", severity: "warning", summary: `${overdue.length} key(s) older than their cryptoperiod: ${overdue.map((k) => `${k.provider}:${k.keyId}`).join(", ")}`, runbookUrl: RUNBOOKS.rotationOverdue });
  }
  const failing = keys.filter((k) => k.lastError !== null);
  if (failing.length > 0) {
    alerts.push({ name: "KmsRotationFailing", severity: "critical", summary: `The last rotation of ${failing.length} key(s) failed`, runbookUrl: RUNBOOKS.rotationFailing });
  }
  return alerts;
}
