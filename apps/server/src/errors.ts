/**
 * The server's one error shape, `{"error": {"code", "message", "retryable", "docsUrl"}}`, and the
 * HTTP status of every code. Codes from @kms/core keep their code and docs link; failures that only
 * exist at the HTTP layer (routing, body size, credentials) use the server codes below, documented in
 * apps/server/README.md.
 *
 * Messages are written by the server, not passed through: a KmsError's message may come from a
 * provider SDK (key ARNs, hostnames, request ids), so its body carries the code's fixed public text
 * and the full error goes to the server log only. The one exception is `INPUT_INVALID` raised by
 * core itself (see core's `publicMessageOf`).
 */
import { DOCS_BASE_URL, docsUrlFor, isKmsError, publicMessageOf, type KmsError, type KmsErrorCode } from "@kms/core";

/** Codes that only exist at the HTTP layer. */
export type ServerErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "BODY_TOO_LARGE"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "SHUTTING_DOWN"
  | "ROTATION_IN_PROGRESS"
  | "INTERNAL_ERROR";

export type ErrorCode = KmsErrorCode | ServerErrorCode;

export interface ErrorBody {
  error: { code: string; message: string; retryable: boolean; docsUrl: string };
}

/** Where the server's own codes are documented; each code is a heading (anchor) there. */
export const SERVER_DOCS_URL = `${DOCS_BASE_URL}apps/server/README.md`;

const SERVER_CODES: ReadonlySet<string> = new Set<ServerErrorCode>([
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "BODY_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "SHUTTING_DOWN",
  "ROTATION_IN_PROGRESS",
  "INTERNAL_ERROR",
]);

export function docsUrlOf(code: ErrorCode): string {
  return SERVER_CODES.has(code) ? `${SERVER_DOCS_URL}#${code.toLowerCase()}` : docsUrlFor(code as KmsErrorCode);
}

/** Only draining is worth retrying (against another instance); the other server codes need a change. */
const SERVER_RETRYABLE: ReadonlySet<string> = new Set<ServerErrorCode>(["SHUTTING_DOWN", "ROTATION_IN_PROGRESS"]);

/** An error the server raises itself, with the status and code it is answered with. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/**
 * Status per core code. Anything not listed is a server-side fault: 500. (`TENANT_MISMATCH` is not
 * listed: core never raises it, and the server's one use of it, a 403 for another tenant's token, is
 * an `HttpError` from auth.ts.)
 */
const KMS_STATUS: Partial<Record<KmsErrorCode, number>> = {
  INPUT_INVALID: 400,
  ENVELOPE_MALFORMED: 400,
  // The envelope is well-formed but cannot be opened by this tenant with this context.
  ENVELOPE_AUTH_FAILED: 422,
  KMS_OVERLOADED: 429,
  KMS_THROTTLED: 429,
  KMS_UNAVAILABLE: 503,
  KMS_CIRCUIT_OPEN: 503,
  KMS_CLOSED: 503,
  // A corrupted answer from the KMS: the upstream failed, the request may succeed when retried.
  KMS_INTEGRITY_ERROR: 502,
  KMS_TIMEOUT: 504,
};

export interface MappedError {
  statusCode: number;
  code: ErrorCode;
  body: ErrorBody;
  /** Whether the failure is the server's (logged at error level) rather than the caller's. */
  serverFault: boolean;
}

export function errorResponse(
  statusCode: number,
  code: ErrorCode,
  message: string,
  retryable = SERVER_RETRYABLE.has(code),
): MappedError {
  return {
    statusCode,
    code,
    body: { error: { code, message, retryable, docsUrl: docsUrlOf(code) } },
    serverFault: statusCode >= 500,
  };
}

function mapKmsError(error: KmsError): MappedError {
  // Unlisted codes are a key the operator configured that is missing, disabled or not permitted, or
  // a failed provider: 500, but the caller still gets the code (a tenant must be able to see that
  // its BYOK key is disabled). `retryable` is the error's own: a provider may know better than the
  // code's default.
  return errorResponse(KMS_STATUS[error.code] ?? 500, error.code, publicMessageOf(error), error.retryable);
}

/**
 * Ajv's messages name the field and the rule (`body/plaintext must match pattern ...`), never the
 * value, but a path below a top-level field holds the caller's own keys (`body/context/<key>`): those
 * are masked, so the message never repeats request content.
 */
function validationMessage(context: unknown, issues: unknown): string {
  const list = Array.isArray(issues) ? (issues as { instancePath?: unknown; message?: unknown }[]) : [];
  const parts = list.map((issue) => {
    const path = String(issue.instancePath ?? "").replace(/^(\/[^/]*)\/.*$/, "$1/*");
    return `${String(context ?? "request")}${path} ${String(issue.message ?? "is not valid")}`;
  });
  return `Invalid request: ${parts.length > 0 ? parts.join(", ") : "the request does not match the schema"}`;
}

interface FastifyLikeError {
  code?: unknown;
  statusCode?: unknown;
  validation?: unknown;
  validationContext?: unknown;
  message?: unknown;
}

/** Maps anything thrown while handling a request to the one error shape. */
export function mapError(error: unknown): MappedError {
  if (isKmsError(error)) return mapKmsError(error);
  if (error instanceof HttpError) return errorResponse(error.statusCode, error.code, error.message);
  const e = (typeof error === "object" && error !== null ? error : {}) as FastifyLikeError;
  if (e.validation !== undefined) {
    return errorResponse(400, "INPUT_INVALID", validationMessage(e.validationContext, e.validation));
  }
  switch (e.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return errorResponse(413, "BODY_TOO_LARGE", "Request body is too large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return errorResponse(415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return errorResponse(400, "INPUT_INVALID", "Request body is empty");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return errorResponse(400, "INPUT_INVALID", "Request body is not valid JSON");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return errorResponse(400, "INPUT_INVALID", "Request body size does not match Content-Length");
    case "FST_ERR_BAD_URL":
      return errorResponse(400, "INPUT_INVALID", "The URL is not valid");
    case "FST_ERR_MAX_PARAM_LENGTH":
      return errorResponse(414, "INPUT_INVALID", "A URL parameter is too long");
  }
  const status = typeof e.statusCode === "number" ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Other client errors raised by the framework (e.g. JSON parse errors, prototype poisoning).
    return errorResponse(status === 400 ? 400 : status, "INPUT_INVALID", "The request is not valid");
  }
  return errorResponse(500, "INTERNAL_ERROR", "Internal server error");
}
