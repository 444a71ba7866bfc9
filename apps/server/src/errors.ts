/**
 * The server's one error shape, `{"error": {"code", "message", "docsUrl"}}`, and the HTTP status of
 * every code. Codes from @kms/core keep their code and docs link; failures that only exist at the
 * HTTP layer (routing, body size, credentials) use the server codes below, documented in
 * apps/server/README.md.
 */
import { docsUrlFor, isKmsError, type KmsError, type KmsErrorCode } from "@kms/core";

/** Codes that only exist at the HTTP layer. */
export type ServerErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "BODY_TOO_LARGE"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "SHUTTING_DOWN"
  | "INTERNAL_ERROR";

export type ErrorCode = KmsErrorCode | ServerErrorCode;

export interface ErrorBody {
  error: { code: string; message: string; docsUrl: string };
}

/** Where the server's own codes are documented; each code is a heading (anchor) there. */
export const SERVER_DOCS_URL = "https://github.com/kms-toolkit/kms/blob/main/apps/server/README.md";

const SERVER_CODES: ReadonlySet<string> = new Set<ServerErrorCode>([
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "BODY_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "SHUTTING_DOWN",
  "INTERNAL_ERROR",
]);

export function docsUrlOf(code: ErrorCode): string {
  return SERVER_CODES.has(code) ? `${SERVER_DOCS_URL}#${code.toLowerCase()}` : docsUrlFor(code as KmsErrorCode);
}

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

/** Status per core code. Anything not listed is a server-side fault: 500. */
const KMS_STATUS: Partial<Record<KmsErrorCode, number>> = {
  INPUT_INVALID: 400,
  ENVELOPE_MALFORMED: 400,
  // The envelope is well-formed but cannot be opened by this tenant with this context.
  ENVELOPE_AUTH_FAILED: 422,
  TENANT_MISMATCH: 422,
  KMS_OVERLOADED: 429,
  KMS_THROTTLED: 429,
  KMS_UNAVAILABLE: 503,
  KMS_CIRCUIT_OPEN: 503,
  KMS_CLOSED: 503,
  KMS_TIMEOUT: 504,
};

export interface MappedError {
  statusCode: number;
  code: ErrorCode;
  body: ErrorBody;
  /** Whether the failure is the server's (logged at error level) rather than the caller's. */
  serverFault: boolean;
}

function body(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message, docsUrl: docsUrlOf(code) } };
}

export function errorResponse(statusCode: number, code: ErrorCode, message: string): MappedError {
  return { statusCode, code, body: body(code, message), serverFault: statusCode >= 500 };
}

function mapKmsError(error: KmsError): MappedError {
  const status = KMS_STATUS[error.code];
  if (status !== undefined) return errorResponse(status, error.code, error.message);
  // A key the operator configured is missing, disabled or not permitted, or a provider failed:
  // the caller gets the code (a disabled BYOK key is something a tenant must be able to see) but
  // not the provider's details, which stay in the server log.
  return errorResponse(
    500,
    error.code,
    `The key service could not complete the request (${error.code}; see ${error.docsUrl})`,
  );
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
    // Ajv messages name the field and the rule (`body/plaintext must match pattern ...`), never the value.
    return errorResponse(400, "INPUT_INVALID", `Invalid request: ${String(e.message)}`);
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
