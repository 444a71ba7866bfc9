/**
 * Typed errors. Every failure the toolkit reports is a `KmsError` with a stable `code`; each code has
 * its own section in docs/setup/KMS_TROUBLESHOOTING.md (a test checks), linked from `docsUrl`.
 * Messages never contain key material, plaintext or credentials.
 */
import type { PermissionReport, PublicPermissionCheck, PublicPermissionReport } from "./client-types";

/** Where the repository's files are published: every docs link the toolkit builds starts here. */
export const DOCS_BASE_URL = "https://github.com/kms-toolkit/kms/blob/main/";

/** Where the troubleshooting guide is published; each code is an anchor in it. */
export const TROUBLESHOOTING_URL = `${DOCS_BASE_URL}docs/setup/KMS_TROUBLESHOOTING.md`;

/** Every code, with whether the same call may succeed if simply tried again later. */
export const ERROR_CODES = {
  KMS_ACCESS_DENIED: { retryable: false },
  KMS_KEY_NOT_FOUND: { retryable: false },
  KMS_KEY_DISABLED: { retryable: false },
  KMS_THROTTLED: { retryable: true },
  KMS_UNAVAILABLE: { retryable: true },
  KMS_TIMEOUT: { retryable: true },
  KMS_CIRCUIT_OPEN: { retryable: true },
  KMS_OVERLOADED: { retryable: true },
  KMS_PROVIDER_ERROR: { retryable: false },
  /** A response failed the provider's integrity check in transit (GCP's CRC32C); never used, retried. */
  KMS_INTEGRITY_ERROR: { retryable: true },
  KMS_CONFIG_INVALID: { retryable: false },
  KMS_PROVIDER_UNKNOWN: { retryable: false },
  KMS_PROVIDER_NOT_INSTALLED: { retryable: false },
  KMS_LOCAL_IN_PRODUCTION: { retryable: false },
  KMS_CLOSED: { retryable: false },
  ENVELOPE_MALFORMED: { retryable: false },
  ENVELOPE_AUTH_FAILED: { retryable: false },
  TENANT_MISMATCH: { retryable: false },
  INPUT_INVALID: { retryable: false },
} as const satisfies Record<string, { retryable: boolean }>;

export type KmsErrorCode = keyof typeof ERROR_CODES;

/** "The service is down": the only failures a circuit breaker counts. */
export const OUTAGE_CODES: ReadonlySet<string> = new Set<KmsErrorCode>(["KMS_UNAVAILABLE", "KMS_TIMEOUT"]);

/**
 * "The KMS cannot answer right now" (down, paused by the breaker, throttling, saturated): while
 * these last, cached keys may keep serving past their max age (stale-if-error).
 */
export const UNAVAILABLE_NOW_CODES: ReadonlySet<string> = new Set<string>([...OUTAGE_CODES, "KMS_CIRCUIT_OPEN", "KMS_THROTTLED", "KMS_OVERLOADED"]);

/**
 * Failures below HTTP, by their Node / HTTP-client error code: the KMS did not answer in time
 * (`KMS_TIMEOUT`) or could not be reached or dropped the connection (`KMS_UNAVAILABLE`). One table
 * for every provider, so the same socket failure is the same code whichever SDK met it.
 */
const NETWORK_FAILURES: Readonly<Record<string, "KMS_TIMEOUT" | "KMS_UNAVAILABLE">> = {
  ETIMEDOUT: "KMS_TIMEOUT",
  ECONNABORTED: "KMS_TIMEOUT", // axios's request timeout
  ECONNREFUSED: "KMS_UNAVAILABLE",
  ECONNRESET: "KMS_UNAVAILABLE",
  EPIPE: "KMS_UNAVAILABLE",
  ENOTFOUND: "KMS_UNAVAILABLE",
  EAI_AGAIN: "KMS_UNAVAILABLE",
  EHOSTUNREACH: "KMS_UNAVAILABLE",
  ENETUNREACH: "KMS_UNAVAILABLE",
  ENETDOWN: "KMS_UNAVAILABLE",
  ERR_NETWORK: "KMS_UNAVAILABLE", // axios, when Node gave no code
};
const NETWORK_TEXT = new RegExp(`\\b(${Object.keys(NETWORK_FAILURES).join("|")})\\b|socket hang up`);

/** A failure that never got an HTTP answer: its system code (or `socket hang up`) and core's code for it. */
export interface NetworkFailure {
  readonly name: string;
  readonly code: "KMS_TIMEOUT" | "KMS_UNAVAILABLE";
}

/**
 * Classifies an SDK rejection that carries a socket-level failure, by its `code`, else by a code named
 * in its message (some SDKs wrap a Node error from another realm, e.g. under jest, as text only); the
 * text is matched, never copied. Undefined for anything else.
 */
export function networkFailureOf(error: unknown): NetworkFailure | undefined {
  const e = (typeof error === "object" && error !== null ? error : {}) as { code?: unknown; message?: unknown };
  if (typeof e.code === "string" && Object.hasOwn(NETWORK_FAILURES, e.code)) return { name: e.code, code: NETWORK_FAILURES[e.code]! };
  const found = typeof e.message === "string" ? NETWORK_TEXT.exec(e.message)?.[0] : undefined;
  if (found === undefined) return undefined;
  return { name: found, code: NETWORK_FAILURES[found] ?? "KMS_UNAVAILABLE" };
}

export function docsUrlFor(code: KmsErrorCode): string {
  return `${TROUBLESHOOTING_URL}#${code.toLowerCase()}`;
}

const BRAND = Symbol.for("kms.error");

export interface KmsErrorOptions {
  /** The provider id the failure came from, when one did. */
  provider?: string;
  /** The underlying error (an SDK error, a system error). Never put secrets in it. */
  cause?: unknown;
  /** Overrides the code's default retryability (e.g. a provider knows better). */
  retryable?: boolean;
  /** Provider request id, for support tickets. */
  requestId?: string;
}

export class KmsError extends Error {
  readonly code: KmsErrorCode;
  readonly retryable: boolean;
  readonly provider: string | undefined;
  readonly docsUrl: string;
  readonly requestId: string | undefined;

  constructor(code: KmsErrorCode, message: string, options: KmsErrorOptions = {}) {
    super(`${message} (${code}; see ${docsUrlFor(code)})`, { cause: options.cause });
    this.name = "KmsError";
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.provider = options.provider;
    this.docsUrl = docsUrlFor(code);
    this.requestId = options.requestId;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** JSON form for logs and HTTP bodies: no stack, no cause (causes may hold SDK internals). */
  toJSON(): { code: KmsErrorCode; message: string; retryable: boolean; provider?: string; docsUrl: string } {
    return {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      ...(this.provider === undefined ? {} : { provider: this.provider }),
      docsUrl: this.docsUrl,
    };
  }
}

/** One problem found in a configuration, located by its path (`cache.encrypt.maxAgeMs`). */
export interface ConfigIssue {
  path: string;
  code: KmsErrorCode;
  message: string;
  docsUrl: string;
}

export function configIssue(path: string, code: KmsErrorCode, message: string): ConfigIssue {
  return { path, code, message, docsUrl: docsUrlFor(code) };
}

/**
 * Every problem in a configuration at once. Its own `code` is the first issue's code when all issues
 * share it, otherwise `KMS_CONFIG_INVALID`; each issue keeps its own code and docs link.
 */
export class KmsConfigError extends KmsError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    const codes = new Set(issues.map((i) => i.code));
    const code: KmsErrorCode = codes.size === 1 ? issues[0]!.code : "KMS_CONFIG_INVALID";
    const lines = issues.map((i) => `  - ${i.path || "(root)"}: ${i.message} [${i.code}] ${i.docsUrl}`);
    super(code, `Invalid KMS configuration: ${issues.length} problem(s):\n${lines.join("\n")}\n`);
    this.name = "KmsConfigError";
    this.issues = issues;
  }
}

/**
 * The public text of every code: what an answer to a caller (an HTTP body, a CLI's error line) says
 * instead of the error's own message, which may come from a provider SDK (key ARNs, hostnames,
 * request ids). A `Record` over every code, so a code added here does not compile without a text.
 */
export const PUBLIC_MESSAGES: Readonly<Record<KmsErrorCode, string>> = {
  KMS_ACCESS_DENIED: "The key service refused access to the tenant's key",
  KMS_KEY_NOT_FOUND: "The tenant's key was not found",
  KMS_KEY_DISABLED: "The tenant's key is disabled",
  KMS_THROTTLED: "The key service is throttling requests; retry later",
  KMS_UNAVAILABLE: "The key service is unavailable; retry later",
  KMS_TIMEOUT: "The key service did not answer in time; retry later",
  KMS_CIRCUIT_OPEN: "Calls to the key service are paused after repeated failures; retry later",
  KMS_OVERLOADED: "Too many key service requests are waiting; retry later",
  KMS_PROVIDER_ERROR: "The key service could not complete the request",
  KMS_INTEGRITY_ERROR: "The key service's answer was corrupted in transit; retry later",
  KMS_CONFIG_INVALID: "The key service configuration is invalid",
  KMS_PROVIDER_UNKNOWN: "The key service configuration names an unknown provider",
  KMS_PROVIDER_NOT_INSTALLED: "A key service provider the configuration needs is not installed",
  KMS_LOCAL_IN_PRODUCTION: "The local key provider is not allowed in production",
  KMS_CLOSED: "The key service client is closed",
  ENVELOPE_MALFORMED: "The ciphertext is not a well-formed envelope",
  ENVELOPE_AUTH_FAILED: "The ciphertext cannot be decrypted with this tenant and context",
  TENANT_MISMATCH: "The credential belongs to another tenant",
  INPUT_INVALID: "The request is not valid",
};

/**
 * The message to show a caller for a KmsError: its code's fixed text, except for `INPUT_INVALID`
 * raised by core itself (no `provider`: core's resilience layer sets it on every error a provider
 * raises). Core writes those messages and names positions and lengths only, never a tenant id, a
 * context key or a value, so the caller learns which of core's rules the input broke. The
 * ` (CODE; see URL)` suffix KmsError appends is dropped: callers show `code` and `docsUrl` themselves.
 */
export function publicMessageOf(error: KmsError): string {
  if (error.code === "INPUT_INVALID" && error.provider === undefined) {
    const suffix = ` (${error.code}; see ${error.docsUrl})`;
    return error.message.endsWith(suffix) ? error.message.slice(0, -suffix.length) : error.message;
  }
  // `??`: an error from another copy of core may carry a code this table predates.
  return PUBLIC_MESSAGES[error.code] ?? PUBLIC_MESSAGES.KMS_PROVIDER_ERROR;
}

/**
 * A permission report without the errors' own messages (a provider SDK's text can name hosts,
 * principals and request ids): each failure keeps its code, the code's public text, the provider's
 * remediation and a docs link (the check's own, else the code's troubleshooting section).
 */
export function publicPermissionReport(report: PermissionReport): PublicPermissionReport {
  return {
    ok: report.ok,
    keys: report.keys.map(({ provider, keyId, checks }) => ({
      provider,
      keyId,
      checks: checks.map((check): PublicPermissionCheck => {
        const docsUrl = check.docsUrl ?? check.error?.docsUrl;
        return {
          permission: check.permission,
          ok: check.ok,
          ...(check.remediation === undefined ? {} : { remediation: check.remediation }),
          ...(docsUrl === undefined ? {} : { docsUrl }),
          ...(check.error === undefined ? {} : { error: { code: check.error.code, message: PUBLIC_MESSAGES[check.error.code] ?? PUBLIC_MESSAGES.KMS_PROVIDER_ERROR } }),
        };
      }),
    })),
  };
}

/** Works across duplicate copies of this package, where `instanceof` does not. */
export function isKmsError(value: unknown): value is KmsError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}
