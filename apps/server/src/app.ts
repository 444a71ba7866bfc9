/**
 * The HTTP application: tenant encrypt/decrypt, health, one error shape. `buildApp` returns the
 * Fastify instance un-started, so tests can drive it with `app.inject` and `main.ts` can listen.
 */
import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from "fastify";
import { fromBase64Url, isKmsError, publicPermissionReport, toBase64Url, type KmsClient, type KmsHealth } from "@kms/core";
import { exportEvidence, permissionsValidatedEvent, type EvidenceLog } from "@kms/rotation";
import type { Authenticator } from "./auth";
import { DEFAULT_BODY_LIMIT_BYTES } from "./config";
import { type ErrorBody, HttpError, errorResponse, mapError } from "./errors";
import type { RotationService } from "./rotation";
import { createAdminGuard } from "./console/admin-guard";
import { registerConsole } from "./console/routes";
import { createSessionStore, type SessionStoreOptions } from "./console/session";
import { createSetupWizard } from "./console/setup";
import { createStatsHistory } from "./console/stats";
import { REGISTRY } from "./registry";

declare module "fastify" {
  interface FastifyRequest {
    /** The tenant id of a tenant route (for the access log). */
    tenantId: string | undefined;
    /** The error code the request was answered with (for the access log). */
    outcome: string | undefined;
  }
}

/** Pino options, as Fastify accepts them. */
export type LoggerOptions = Exclude<NonNullable<FastifyServerOptions["logger"]>, boolean>;

export interface BuildAppOptions {
  kms: KmsClient;
  auth: Authenticator;
  /**
   * A logger instance, pino options (merged over the defaults, which redact credentials), or
   * `false` for no logging. Default: JSON lines to stdout at level `info`.
   */
  logger?: FastifyBaseLogger | LoggerOptions | false;
  /** Largest accepted request body. Default 1 MiB. */
  bodyLimitBytes?: number;
  /** How long one KMS health result answers `GET /health/kms`. Default 5 s (`HEALTH_CACHE_MS`). */
  healthCacheMs?: number;
  /**
   * Where `GET /metrics` (admin credential) reads its Prometheus exposition from: a prom-client
   * `Registry` holding this server's metrics (see `src/metrics.ts`). Without it there is no
   * `/metrics` route.
   */
  metrics?: MetricsSource;
  /**
   * The evidence log: a `permissions.validated` record per `POST /admin/validate-kms`, and
   * `GET /admin/evidence/export`. Without it neither is there.
   */
  evidence?: EvidenceLog;
  /** Signs evidence exports (the manifest's `signature`). Never logged. */
  evidenceHmacKey?: Buffer;
  /** Rotation status and on-demand rotation per tenant. Without it there are no rotation routes. */
  rotation?: RotationService;
  /**
   * For the benchmark only (`KMS_BENCH_NOOP_ROUTE`, refused in production): `POST
   * /v1/tenants/:tenantId/noop`, the encrypt route without the encryption. Same credential check,
   * body limit, schema and base64 decoding; it answers the plaintext back. Default: absent.
   */
  noopRoute?: boolean;
  /**
   * The admin console (`/admin/console`, src/console/): session timeouts, the figures' sampling
   * interval (`statsIntervalMs`, default 10 s) and how long an answer waits for key statuses
   * (`keyStatusWaitMs`, default 3 s). Always served; these only tune it.
   */
  console?: SessionStoreOptions & { statsIntervalMs?: number; keyStatusWaitMs?: number };
}

/** What `GET /metrics` needs of a prom-client `Registry`. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/**
 * `/health/kms` is unauthenticated and its check calls every provider: one result (and one call in
 * flight, shared by concurrent requests) answers for this long, so request volume never becomes
 * provider load.
 */
export const HEALTH_CACHE_MS = 5_000;

/** Paths pino replaces with "[Redacted]", in case a serializer ever logs headers. */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "headers.cookie",
  "authorization",
  "plaintext",
  "ciphertext",
  "token",
];

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The `actor` of evidence records the admin API writes. */
export const ADMIN_ACTOR = "admin-api";
/** ISO 8601 UTC: a date, or a date and time (seconds and fraction optional), `Z` or an offset. */
const ISO_TIME = "^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2}))?$";

/** A query time the pattern admitted that is also a real date (no month 13). */
function parseTime(text: string, field: string): Date {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new HttpError(400, "INPUT_INVALID", `Invalid request: querystring/${field} is not a valid time`);
  return date;
}
/** Standard base64 alphabet with optional padding; the full canonical check is in `decodeBase64`. */
const BASE64 = "^[A-Za-z0-9+/]*={0,2}$";
/** Unpadded base64url, the envelope text form. */
const BASE64URL = "^[A-Za-z0-9_-]+$";

/**
 * The shape of an encryption context only: an object of string values. Its limits (pair count, key
 * and value sizes, characters, the canonical size of tenant id plus context, reserved keys) are
 * core's, checked by core on every call and reported as `INPUT_INVALID` with core's own message
 * (errors.ts): a second set of limits here could only drift from them. Core checks the context
 * before any provider call, so an invalid one costs no KMS request.
 */
const contextSchema = {
  type: "object",
  additionalProperties: { type: "string" },
} as const;

const paramsSchema = {
  type: "object",
  required: ["tenantId"],
  additionalProperties: false,
  properties: { tenantId: { type: "string", minLength: 1, maxLength: 256 } },
} as const;

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        retryable: { type: "boolean" },
        docsUrl: { type: "string" },
      },
    },
  },
} as const;

interface TenantRoute<B> {
  Params: { tenantId: string };
  Body: B;
}
type EncryptRoute = TenantRoute<{ plaintext: string; context?: Record<string, string> }>;
type DecryptRoute = TenantRoute<{ ciphertext: string; context?: Record<string, string> }>;
type RewrapRoute = DecryptRoute;

function isLogger(value: unknown): value is FastifyBaseLogger {
  return typeof value === "object" && value !== null && typeof (value as FastifyBaseLogger).child === "function";
}

/** Strict base64: the pattern admits the alphabet; this rejects bad lengths and non-canonical padding bits. */
function decodeBase64(text: string, field: string): Buffer {
  const bytes = Buffer.from(text, "base64");
  if (text.length % 4 !== 0 || bytes.toString("base64") !== text) {
    bytes.fill(0);
    throw new HttpError(400, "INPUT_INVALID", `Invalid request: body/${field} must be canonical, padded base64`);
  }
  return bytes;
}

function sendError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const mapped = mapError(error);
  request.outcome = mapped.code;
  // A KmsError's body carries only its code's fixed text: the full error (provider message, cause,
  // request id; never key material) is logged so that operators keep the detail.
  if (mapped.serverFault) {
    request.log.error({ err: error, code: mapped.code }, "request failed");
  } else if (isKmsError(error)) {
    request.log.warn({ err: error, code: mapped.code }, "request failed");
  }
  if (mapped.statusCode === 401) reply.header("www-authenticate", 'Bearer realm="kms"');
  if (mapped.statusCode === 429) reply.header("retry-after", "1");
  return reply.code(mapped.statusCode).send(mapped.body);
}

export function buildApp(options: BuildAppOptions): FastifyInstance {
  const { kms, auth } = options;
  const loggerOption = options.logger;
  const loggerSettings = isLogger(loggerOption)
    ? { loggerInstance: loggerOption }
    : {
        logger:
          loggerOption === false
            ? false
            : {
                level: "info",
                ...loggerOption,
                redact: { paths: [...REDACT_PATHS, ...redactPathsOf(loggerOption)], censor: "[Redacted]" },
              },
      };
  let closing = false;

  const healthCacheMs = options.healthCacheMs ?? HEALTH_CACHE_MS;
  let healthCache: { result: Promise<KmsHealth>; expiresAt: number } | undefined;
  /**
   * The shared result of `kms.checkHealth()`. It expires `healthCacheMs` after it settles, failed or
   * not: a failing KMS is exactly the one that must not be called harder.
   */
  const checkHealth = (log: FastifyBaseLogger): Promise<KmsHealth> => {
    if (healthCache === undefined || Date.now() >= healthCache.expiresAt) {
      const entry = { result: kms.checkHealth(), expiresAt: Infinity };
      const settled = () => {
        entry.expiresAt = Date.now() + healthCacheMs;
      };
      // Logged once per check, not once per request: the route is unauthenticated.
      entry.result.then(
        (health) => {
          settled();
          if (!health.ready) log.warn({ health }, "KMS not ready");
        },
        (error: unknown) => {
          settled();
          log.error({ err: error }, "health check failed");
        },
      );
      healthCache = entry;
    }
    return healthCache.result;
  };

  const app = Fastify({
    ...loggerSettings,
    bodyLimit: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    // One access-log line per request is written in onResponse (with tenant and outcome).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "reqId" }),
    requestIdHeader: false,
    // Tenant ids may be up to 256 characters, percent-encoded in the path (the default is 100).
    routerOptions: { maxParamLength: 1024 },
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Shutdown answers new requests with our own 503 (below), in the one error shape.
    return503OnClosing: false,
    ajv: {
      customOptions: {
        // Reject what the schema does not allow rather than silently dropping or coercing it.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false,
      },
    },
    frameworkErrors: (error, request, reply) => {
      sendError(request, reply, error);
    },
    clientErrorHandler: (error: NodeJS.ErrnoException, socket: Socket) => {
      if (error.code === "ECONNRESET" || socket.destroyed || !socket.writable) {
        socket.destroy();
        return;
      }
      const mapped =
        error.code === "HPE_HEADER_OVERFLOW"
          ? errorResponse(431, "INPUT_INVALID", "Request headers are too large")
          : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? errorResponse(408, "INPUT_INVALID", "The request was not received in time")
            : errorResponse(400, "INPUT_INVALID", "Malformed HTTP request");
      const json = JSON.stringify(mapped.body);
      socket.end(
        `HTTP/1.1 ${mapped.statusCode} Error\r\nConnection: close\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
      );
    },
  });

  // JSON only: a text/plain body is answered 415 rather than parsed as a string.
  app.removeContentTypeParser("text/plain");
  app.decorateRequest("tenantId", undefined);
  app.decorateRequest("outcome", undefined);

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    reply.header("cache-control", "no-store");
    reply.header("x-content-type-options", "nosniff");
    if (closing) {
      reply.header("connection", "close");
      return sendError(request, reply, new HttpError(503, "SHUTTING_DOWN", "The server is shutting down"));
    }
  });

  app.addHook("preClose", async () => {
    closing = true;
  });

  // While draining, responses to requests that were already in flight close their connection, so
  // keep-alive sockets do not hold the shutdown open until their idle timeout.
  app.addHook("onSend", async (_request, reply) => {
    if (closing) reply.header("connection", "close");
  });

  app.addHook("onResponse", async (request, reply) => {
    const statusCode = reply.statusCode;
    const line = {
      method: request.method,
      route: request.routeOptions.url ?? "(unmatched)",
      tenantId: request.tenantId,
      statusCode,
      outcome: request.outcome ?? (statusCode < 400 ? "OK" : `HTTP_${statusCode}`),
      durationMs: Math.round(reply.elapsedTime * 100) / 100,
    };
    if (statusCode >= 500) request.log.error(line, "request completed");
    else if (statusCode >= 400) request.log.warn(line, "request completed");
    else request.log.info(line, "request completed");
  });

  app.setErrorHandler((error, request, reply) => sendError(request, reply, error));
  // The URL is not echoed: an error body reflects no request input.
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new HttpError(404, "NOT_FOUND", "No such route")));

  /** Checks the tenant's credential before the body is even read. */
  const authorizeTenant = async (request: FastifyRequest<{ Params: { tenantId: string } }>) => {
    const { tenantId } = request.params;
    request.tenantId = tenantId;
    auth.authorizeTenant(request.headers.authorization, tenantId);
  };

  const responses = (okSchema: object) => ({
    200: okSchema,
    "4xx": errorSchema,
    "5xx": errorSchema,
  });

  const encryptBodySchema = {
    type: "object",
    required: ["plaintext"],
    additionalProperties: false,
    properties: { plaintext: { type: "string", pattern: BASE64 }, context: contextSchema },
  };

  app.post<EncryptRoute>(
    "/v1/tenants/:tenantId/encrypt",
    {
      onRequest: authorizeTenant,
      schema: {
        params: paramsSchema,
        body: encryptBodySchema,
        response: responses({ type: "object", properties: { ciphertext: { type: "string" } } }),
      },
    },
    async (request) => {
      const { tenantId } = request.params;
      const plaintext = decodeBase64(request.body.plaintext, "plaintext");
      try {
        const ciphertext = await kms.encryptToBase64Url(tenantId, plaintext, request.body.context);
        return { ciphertext };
      } finally {
        plaintext.fill(0);
      }
    },
  );

  /** Decrypt's and rewrap's body: an envelope and the context it was sealed under. */
  const ciphertextBodySchema = {
    type: "object",
    required: ["ciphertext"],
    additionalProperties: false,
    properties: { ciphertext: { type: "string", pattern: BASE64URL }, context: contextSchema },
  };

  app.post<DecryptRoute>(
    "/v1/tenants/:tenantId/decrypt",
    {
      onRequest: authorizeTenant,
      schema: {
        params: paramsSchema,
        body: ciphertextBodySchema,
        response: responses({ type: "object", properties: { plaintext: { type: "string" } } }),
      },
    },
    async (request) => {
      const { tenantId } = request.params;
      const plaintext = await kms.decryptFromBase64Url(tenantId, request.body.ciphertext, request.body.context);
      try {
        return { plaintext: plaintext.toString("base64") };
      } finally {
        plaintext.fill(0);
      }
    },
  );

  app.post<RewrapRoute>(
    "/v1/tenants/:tenantId/rewrap",
    {
      onRequest: authorizeTenant,
      schema: {
        params: paramsSchema,
        body: ciphertextBodySchema,
        response: responses({ type: "object", properties: { ciphertext: { type: "string" } } }),
      },
    },
    async (request) => {
      const { tenantId } = request.params;
      // Core's strict decoding (ENVELOPE_MALFORMED otherwise). The data key stays inside core: it is
      // unwrapped, the whole envelope authenticated for this tenant and context, then wrapped again
      // under the tenant's current key; the payload bytes are not touched.
      const envelope = fromBase64Url(request.body.ciphertext);
      const rewrapped = await kms.rewrap(tenantId, envelope, request.body.context);
      return { ciphertext: toBase64Url(rewrapped) };
    },
  );

  if (options.noopRoute === true) {
    app.post<EncryptRoute>(
      "/v1/tenants/:tenantId/noop",
      {
        onRequest: authorizeTenant,
        schema: {
          params: paramsSchema,
          body: encryptBodySchema,
          response: responses({ type: "object", properties: { plaintext: { type: "string" } } }),
        },
      },
      async (request) => {
        decodeBase64(request.body.plaintext, "plaintext").fill(0);
        return { plaintext: request.body.plaintext };
      },
    );
  }

  app.get("/health/live", async () => ({ status: "ok" }));

  app.get("/health/kms", async (request, reply) => {
    try {
      const health = await checkHealth(app.log);
      if (!health.ready) request.outcome = "NOT_READY";
      return reply.code(health.ready ? 200 : 503).send(publicHealth(health));
    } catch (error) {
      // Health is about availability: whatever went wrong, the answer is "not ready".
      const mapped = mapError(error);
      request.outcome = mapped.code;
      const body: ErrorBody & { ready: false; providers: Record<string, never> } = {
        ready: false,
        providers: {},
        ...mapped.body,
      };
      return reply.code(503).send(body);
    }
  });

  // --- admin API: the admin token only (a tenant's token is 403 FORBIDDEN, none or unknown 401).
  // Checked in onRequest, before any body is read. Nothing here returns key material or tenant data.

  // The admin credential, or an admin console session (cookie, plus its CSRF token on methods that
  // change state): src/console/admin-guard.ts.
  const sessions = createSessionStore(options.console);
  const adminGuard = createAdminGuard(auth, sessions);
  const authorizeAdmin = async (request: FastifyRequest) => {
    adminGuard(request);
  };

  const evidence = options.evidence;
  app.post("/admin/validate-kms", { onRequest: authorizeAdmin }, async (request) => {
    const report = await kms.validatePermissions();
    const body = publicPermissionReport(report);
    if (evidence !== undefined) {
      // Counts only (@kms/rotation's one definition, shared with `kms validate --evidence`).
      await evidence.append(permissionsValidatedEvent(report, ADMIN_ACTOR, { httpRequestId: request.id }));
    }
    if (!report.ok) {
      request.outcome = "PERMISSIONS_FAILED";
      // The full errors (provider messages, request ids) go to the log under this request's id.
      const failed = report.keys.flatMap((k) =>
        k.checks
          .filter((c) => !c.ok)
          .map((c) => ({ provider: k.provider, keyId: k.keyId, permission: c.permission, code: c.error?.code, error: c.error?.message })),
      );
      request.log.warn({ failed }, "KMS permission checks failed");
    }
    return body;
  });

  app.get("/admin/cache", { onRequest: authorizeAdmin }, async () => kms.cacheStats());

  app.delete<{ Params: { tenantId: string } }>(
    "/admin/tenants/:tenantId/cache",
    { onRequest: authorizeAdmin, schema: { params: paramsSchema } },
    async (request, reply) => {
      const { tenantId } = request.params;
      request.tenantId = tenantId;
      kms.invalidateTenant(tenantId);
      request.log.info({ tenantId }, "tenant cache invalidated");
      return reply.code(204).send();
    },
  );

  app.get("/admin/health", { onRequest: authorizeAdmin }, async (request, reply) => {
    try {
      // The same shared, cached check as /health/kms: the KMS still sees at most one health check
      // per `healthCacheMs`, however the two routes are called.
      const health = await checkHealth(app.log);
      if (!health.ready) request.outcome = "NOT_READY";
      return reply.code(health.ready ? 200 : 503).send(health);
    } catch (error) {
      const mapped = mapError(error);
      request.outcome = mapped.code;
      return reply.code(503).send({ ready: false, providers: {}, ...mapped.body });
    }
  });

  const rotation = options.rotation;
  if (rotation !== undefined) {
    app.get<{ Params: { tenantId: string } }>(
      "/admin/tenants/:tenantId/rotation",
      { onRequest: authorizeAdmin, schema: { params: paramsSchema } },
      async (request) => {
        const { tenantId } = request.params;
        request.tenantId = tenantId;
        const status = await rotation.status(tenantId);
        if (status === undefined) throw new HttpError(404, "NOT_FOUND", "No key is configured for this tenant");
        return status;
      },
    );

    app.post<{ Params: { tenantId: string } }>(
      "/admin/tenants/:tenantId/rotate",
      { onRequest: authorizeAdmin, schema: { params: paramsSchema } },
      async (request) => {
        const { tenantId } = request.params;
        request.tenantId = tenantId;
        const result = await rotation.rotate(tenantId, ADMIN_ACTOR);
        if (result === undefined) throw new HttpError(404, "NOT_FOUND", "No key is configured for this tenant");
        request.log.info({ tenantId, provider: result.provider, previousVersion: result.previousVersion, currentVersion: result.currentVersion }, "key rotated on demand");
        return result;
      },
    );
  }

  if (evidence !== undefined) {
    app.get<{ Querystring: { format?: "jsonl" | "csv"; tenant?: string; since?: string; until?: string } }>(
      "/admin/evidence/export",
      {
        onRequest: authorizeAdmin,
        schema: {
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: {
              format: { type: "string", enum: ["jsonl", "csv"] },
              tenant: { type: "string", minLength: 1, maxLength: 256 },
              since: { type: "string", pattern: ISO_TIME },
              until: { type: "string", pattern: ISO_TIME },
            },
          },
        },
      },
      async (request) => {
        const { format = "jsonl", tenant, since, until } = request.query;
        const sinceDate = since === undefined ? undefined : parseTime(since, "since");
        const untilDate = until === undefined ? undefined : parseTime(until, "until");
        if (sinceDate !== undefined && untilDate !== undefined && sinceDate.getTime() > untilDate.getTime()) {
          throw new HttpError(400, "INPUT_INVALID", "Invalid request: querystring/since must not be after until");
        }
        const filter = {
          ...(tenant === undefined ? {} : { tenantId: tenant }),
          ...(sinceDate === undefined ? {} : { since: sinceDate }),
          ...(untilDate === undefined ? {} : { until: untilDate }),
        };
        const { manifest, content } = await exportEvidence(evidence, {
          format,
          filter,
          ...(options.evidenceHmacKey === undefined ? {} : { hmacKey: options.evidenceHmacKey }),
        });
        return { manifest, content };
      },
    );
  }

  const metrics = options.metrics;
  if (metrics !== undefined) {
    app.get("/metrics", { onRequest: authorizeAdmin }, async (_request, reply) => {
      const text = await metrics.metrics();
      return reply.type(metrics.contentType).send(text);
    });
  }

  const stats = createStatsHistory(kms, { intervalMs: options.console?.statsIntervalMs });
  app.addHook("onClose", async () => stats.stop());
  registerConsole(app, {
    auth,
    sessions,
    guard: adminGuard,
    checkHealth: () => checkHealth(app.log),
    stats,
    cache: () => kms.cacheStats(),
    wizard: createSetupWizard(REGISTRY),
    rotation: options.rotation,
    evidenceHmacKey: options.evidenceHmacKey,
    keyStatusWaitMs: options.console?.keyStatusWaitMs,
  });

  return app;
}

function redactPathsOf(options: LoggerOptions | undefined): string[] {
  const redact = options?.redact;
  if (redact === undefined) return [];
  return Array.isArray(redact) ? redact : redact.paths;
}

/** `/health/kms`'s body: readiness and, per provider, only what an unauthenticated caller may see. */
export interface PublicHealth {
  ready: boolean;
  providers: Record<string, Pick<KmsHealth["providers"][string], "healthy" | "status" | "insecure" | "circuit">>;
  /** The shared cache tier's status, when configured (never its error: `/admin/health` has that). */
  sharedCache?: NonNullable<KmsHealth["sharedCache"]>["status"];
}

/**
 * What an unauthenticated caller may see: readiness and, per provider, health, status (up, degraded:
 * served from the cache, down), the insecure flag and the circuit state; and the shared cache tier's
 * status (up, degraded). A provider's own `detail` (it may name key ids), its last error, the shared
 * tier's last error (it may name Redis's address) and the cache figures go to the log and the admin
 * API only.
 */
function publicHealth(health: KmsHealth): PublicHealth {
  const providers: PublicHealth["providers"] = {};
  for (const [id, { healthy, status, insecure, circuit }] of Object.entries(health.providers)) providers[id] = { healthy, status, insecure, circuit };
  // A degraded shared tier is skipped (the in-process tier and the KMS serve): `ready` ignores it.
  return { ready: health.ready, providers, ...(health.sharedCache === undefined ? {} : { sharedCache: health.sharedCache.status }) };
}
