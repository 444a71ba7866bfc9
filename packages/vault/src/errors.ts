/**
 * Vault's failures as core's error codes: one table, one function. Inputs are node-vault's
 * `ApiResponseError` (`.response.statusCode`, `.response.body.errors`) and axios / Node network
 * errors. Messages are written here, never copied from Vault: they name the operation, the key, the
 * Vault path and capability involved, and the fix, and never a token, plaintext or context value.
 *
 * | Vault says                                                        | code                   |
 * |-------------------------------------------------------------------|------------------------|
 * | 403 (permission denied: policy, expired or revoked token)         | KMS_ACCESS_DENIED      |
 * | 404; 400 `encryption key not found` / `key not found` / `no existing key named` / `could not delete key; not found` | KMS_KEY_NOT_FOUND |
 * | 400 `… disallowed by policy (too old)` (min_*_version)            | KMS_KEY_DISABLED       |
 * | 429 (rate limit quota)                                            | KMS_THROTTLED          |
 * | 500 `cipher: message authentication failed`; 400 `invalid ciphertext…` | ENVELOPE_AUTH_FAILED |
 * | 503 (sealed, standby without forwarding), other 5xx, 412          | KMS_UNAVAILABLE        |
 * | ECONNREFUSED, ECONNRESET / socket hang up, EPIPE, DNS, unreachable | KMS_UNAVAILABLE       |
 * | the SDK's own request timeout (ECONNABORTED, ETIMEDOUT)           | KMS_TIMEOUT            |
 * | anything else                                                     | KMS_PROVIDER_ERROR     |
 *
 * Core's own timeout aborts the call's signal; the provider then rejects with the signal's reason
 * (core's KMS_TIMEOUT), and core would report KMS_TIMEOUT whatever the provider did.
 *
 * Causes: an `ApiResponseError` is kept as the cause (it holds only the status and Vault's error
 * body). An axios error is not: it carries the request config, whose headers hold the
 * `X-Vault-Token` and whose body holds the plaintext of an encrypt call. It is replaced by a
 * `VaultTransportError` with only its code and message.
 */
import { KmsError, type KmsErrorCode, type NetworkFailure, isKmsError, networkFailureOf } from "@kms/core";

/** What the provider was doing: every message names it. */
export interface VaultCall {
  /** The provider method (or `login`, `renew`). */
  readonly operation: string;
  /** The Vault path, as a policy names it. */
  readonly path: string;
  /** The capability the path needs. */
  readonly capability: "read" | "update" | "delete";
  /** The transit key, when the call is about one. */
  readonly keyId?: string;
  readonly mount: string;
  readonly endpoint: string;
  readonly requestTimeoutMs: number;
}

/** The facts of one failure that the table matches on. */
interface Failure {
  /** HTTP status, when Vault answered. */
  readonly status?: number;
  /** Vault's error strings, joined (matched on, never copied). */
  readonly text: string;
  /** The socket-level failure, when Vault did not answer (core's one classification). */
  readonly network?: NetworkFailure;
  readonly requestId?: string;
}

interface Row {
  readonly code: KmsErrorCode;
  matches(f: Failure): boolean;
  message(f: Failure, c: VaultCall): string;
}


const forKey = (c: VaultCall) => (c.keyId === undefined ? "" : ` for key "${c.keyId}"`);
const keyNamed = (c: VaultCall) => (c.keyId === undefined ? `"${c.path}"` : `transit key "${c.keyId}"`);

/** Matched in order; the first row that matches decides. */
const TABLE: readonly Row[] = [
  {
    code: "KMS_ACCESS_DENIED",
    matches: (f) => f.status === 403,
    message: (_f, c) =>
      `permission denied: ${c.operation}${forKey(c)} needs "${c.capability}" on "${c.path}". ` +
      `Add to the ${c.operation === "disableKey" ? "key-administration token's Vault policy (never the application's)" : "token's Vault policy"}: ` +
      `path "${c.path}" { capabilities = ["${c.capability}"] } ` +
      "(if the policy already has it, the token has expired or been revoked)",
  },
  {
    code: "KMS_KEY_NOT_FOUND",
    matches: (f) =>
      f.status === 404 || (f.status === 400 && /encryption key not found|^key not found|no existing key named|could not delete key; not found/.test(f.text)),
    message: (_f, c) =>
      c.keyId === undefined
        ? `"${c.path}" was not found (${c.operation}); check the mount path "${c.mount}"`
        : c.operation === "disableKey"
          ? `transit key "${c.keyId}" was not found at mount "${c.mount}" (${c.operation}): nothing was destroyed. ` +
            "Check the key name and the mount (it may have been deleted already)"
          : `transit key "${c.keyId}" was not found at mount "${c.mount}" (${c.operation}). ` +
            `Create it: vault write -f ${c.mount}/keys/${c.keyId} derived=true`,
  },
  {
    code: "KMS_KEY_DISABLED",
    matches: (f) => f.status === 400 && /disallowed by policy/.test(f.text),
    message: (_f, c) =>
      `${keyNamed(c)} refused the key version for ${c.operation}: it is below the key's min_decryption_version or ` +
      `min_encryption_version (Vault's closest state to a disabled key). Lower them with vault write ${c.mount}/keys/${c.keyId ?? "<name>"}/config`,
  },
  {
    code: "KMS_THROTTLED",
    matches: (f) => f.status === 429,
    message: (_f, c) => `Vault's rate limit quota refused ${c.operation}${forKey(c)} on "${c.path}"`,
  },
  {
    code: "ENVELOPE_AUTH_FAILED",
    matches: (f) => (f.status === 500 && /message authentication failed/.test(f.text)) || (f.status === 400 && /invalid ciphertext/.test(f.text)),
    // Deliberately vague: which check failed is no business of the caller's.
    message: (_f, c) => `the wrapped data key does not decrypt under ${keyNamed(c)} with this encryption context`,
  },
  {
    code: "KMS_UNAVAILABLE",
    matches: (f) => f.status !== undefined && (f.status >= 500 || f.status === 412),
    message: (f, c) =>
      f.status === 503 && /sealed/i.test(f.text)
        ? `Vault at ${c.endpoint} is sealed (${c.operation}${forKey(c)})`
        : `Vault at ${c.endpoint} answered HTTP ${f.status} to ${c.operation}${forKey(c)} on "${c.path}"`,
  },
  {
    code: "KMS_TIMEOUT",
    matches: (f) => f.network?.code === "KMS_TIMEOUT",
    message: (_f, c) => `no answer from Vault at ${c.endpoint} within ${c.requestTimeoutMs} ms (${c.operation}${forKey(c)})`,
  },
  {
    code: "KMS_UNAVAILABLE",
    matches: (f) => f.network?.code === "KMS_UNAVAILABLE",
    message: (f, c) => `cannot reach Vault at ${c.endpoint} (${f.network!.name}) for ${c.operation}${forKey(c)}`,
  },
];

/** Maps anything node-vault rejected with to a KmsError (a KmsError passes through unchanged). */
export function mapVaultError(error: unknown, call: VaultCall): KmsError {
  if (isKmsError(error)) return error;
  const f = failureOf(error);
  const row = TABLE.find((r) => r.matches(f));
  const code: KmsErrorCode = row?.code ?? "KMS_PROVIDER_ERROR";
  const message =
    row?.message(f, call) ??
    `unexpected ${f.status !== undefined ? `HTTP ${f.status}` : (f.network?.name ?? "failure")} from Vault to ${call.operation}${forKey(call)} on "${call.path}"`;
  return new KmsError(code, `vault: ${message}`, {
    provider: "vault",
    cause: safeCause(error),
    ...(f.requestId === undefined ? {} : { requestId: f.requestId }),
  });
}

/** Is this node-vault's ApiResponseError (not exported by the package) with this status? */
export function hasStatus(error: unknown, status: number): boolean {
  return responseOf(error)?.statusCode === status;
}

/** A network error without the request it came from (see the header comment). */
export class VaultTransportError extends Error {
  readonly code: string | undefined;
  constructor(code: string | undefined, message: string) {
    super(message);
    this.name = "VaultTransportError";
    this.code = code;
  }
}

function failureOf(error: unknown): Failure {
  const response = responseOf(error);
  if (response !== undefined) {
    const body = response.body as { errors?: unknown; request_id?: unknown } | null | undefined;
    const errors = Array.isArray(body?.errors) ? body.errors.filter((e): e is string => typeof e === "string") : [];
    const requestId = typeof body?.request_id === "string" && /^[\w-]{1,64}$/.test(body.request_id) ? body.request_id : undefined;
    return { status: response.statusCode, text: errors.join("\n"), ...(requestId === undefined ? {} : { requestId }) };
  }
  const network = networkFailureOf(error);
  return { text: "", ...(network === undefined ? {} : { network }) };
}

function responseOf(error: unknown): { statusCode: number; body: unknown } | undefined {
  const response = (error as { response?: { statusCode?: unknown; body?: unknown } } | null)?.response;
  return typeof response?.statusCode === "number" ? { statusCode: response.statusCode, body: response.body } : undefined;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[A-Z0-9_]{1,40}$/.test(code) ? code : undefined;
}

function safeCause(error: unknown): unknown {
  if (responseOf(error) !== undefined) return error;
  const raw = error instanceof Error ? error.message : "non-error rejection";
  // Network messages name the address and the system call; cut short in case of anything longer.
  return new VaultTransportError(codeOf(error), raw.length <= 200 ? raw : `${raw.slice(0, 200)}…`);
}
