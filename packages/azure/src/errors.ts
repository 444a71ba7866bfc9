/**
 * Azure Key Vault errors → core's `KmsError` codes: one function, one table (README "Errors").
 *
 * The SDK's `RestError` is kept as `cause` and Key Vault's `x-ms-request-id` as `requestId`, but the
 * service's message is never copied: messages are built here from facts parsed with strict patterns
 * (status, error code, innererror code, an RBAC data action), so nothing a request carried can reach one.
 */
import { KmsError, type KmsErrorCode, isKmsError, networkFailureOf } from "@kms/core";

/** The provider id, written into every envelope. */
export const PROVIDER_ID = "azure-key-vault";

/** Key Vault's own operation names, as the emulator logs them. */
export type AzureOperation = "GetKey" | "RotateKey" | "WrapKey" | "UnwrapKey" | "ListKeyVersions" | "UpdateKey" | "DeleteKey";

/** The call that failed: the Key Vault operation and the key's name. */
export interface AzureCall {
  readonly operation: AzureOperation;
  readonly key: string;
}

/** Each operation's access-policy permission, RBAC data action and the built-in role that grants it. */
export const ACCESS: Readonly<Record<AzureOperation, { permission: string; dataAction: string; role: string }>> = {
  GetKey: { permission: "get", dataAction: "Microsoft.KeyVault/vaults/keys/read", role: "Key Vault Crypto Service Encryption User" },
  WrapKey: { permission: "wrapKey", dataAction: "Microsoft.KeyVault/vaults/keys/wrap/action", role: "Key Vault Crypto Service Encryption User" },
  UnwrapKey: { permission: "unwrapKey", dataAction: "Microsoft.KeyVault/vaults/keys/unwrap/action", role: "Key Vault Crypto Service Encryption User" },
  RotateKey: { permission: "rotate", dataAction: "Microsoft.KeyVault/vaults/keys/rotate/action", role: "Key Vault Crypto Officer" },
  // disableKey (crypto-shredding): update and delete belong to a key administrator, never to the runtime identity.
  ListKeyVersions: { permission: "list", dataAction: "Microsoft.KeyVault/vaults/keys/read", role: "Key Vault Crypto Service Encryption User" },
  UpdateKey: { permission: "update", dataAction: "Microsoft.KeyVault/vaults/keys/update/action", role: "Key Vault Crypto Officer" },
  DeleteKey: { permission: "delete", dataAction: "Microsoft.KeyVault/vaults/keys/delete", role: "Key Vault Crypto Officer" },
};

/** The operations `validatePermissions` makes, one check each, in this order (UnwrapKey unwraps what WrapKey produced). */
export const AZURE_RUNTIME_OPERATIONS = Object.freeze(["GetKey", "WrapKey", "UnwrapKey"] as const satisfies readonly AzureOperation[]);
export type AzureRuntimeOperation = (typeof AZURE_RUNTIME_OPERATIONS)[number];

/** The distinct RBAC data actions of `operations`, in order. */
function dataActionsOf(operations: readonly AzureOperation[]): readonly string[] {
  return Object.freeze([...new Set(operations.map((operation) => ACCESS[operation].dataAction))]);
}

/** The distinct access-policy key permissions of `operations`, in order. */
function keyPermissionsOf(operations: readonly AzureOperation[]): readonly string[] {
  return Object.freeze([...new Set(operations.map((operation) => ACCESS[operation].permission))]);
}

/**
 * The RBAC data actions the service's runtime identity needs on each tenant key: those of the
 * operations `validatePermissions` checks (the built-in role "Key Vault Crypto Service Encryption
 * User" grants exactly these). `deploy/terraform/azure`'s custom role grants exactly these; a test
 * compares the two.
 */
export const AZURE_RUNTIME_DATA_ACTIONS = dataActionsOf(AZURE_RUNTIME_OPERATIONS);
/** The same as access-policy key permissions (what `validatePermissions` reports): get, wrapKey, unwrapKey. */
export const AZURE_RUNTIME_KEY_PERMISSIONS = keyPermissionsOf(AZURE_RUNTIME_OPERATIONS);

/** The data actions of `rotateKey` (GetKey, then RotateKey): only for the identity that rotates on demand. */
export const AZURE_ROTATION_DATA_ACTIONS = dataActionsOf(["GetKey", "RotateKey"]);
/** The data actions of crypto-shredding (`disableKey`, both modes), for a key-administration identity only, never the runtime one. */
export const AZURE_SHREDDING_DATA_ACTIONS = dataActionsOf(["ListKeyVersions", "UpdateKey", "DeleteKey"]);

/** What is known about a failure, for the message and the fix. */
interface Facts {
  readonly call: AzureCall;
  /** HTTP status, Key Vault error code, innererror or network/TLS code: pattern-checked. */
  readonly what: string;
  /** The data action an RBAC denial named (else the operation's). */
  readonly dataAction: string;
  /** The caller's Entra object id, when an RBAC denial named it. */
  readonly objectId?: string;
}

interface Row {
  readonly code: KmsErrorCode;
  readonly message: (f: Facts) => string;
  /** One line: what to do about it (also validatePermissions' remediation). */
  readonly fix: (f: Facts) => string;
}

const accessDenied: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `access denied: ${f.objectId === undefined ? "the credential's identity" : `the identity with object id ${f.objectId}`} may not perform ${f.dataAction} on key ${f.call.key} (${f.what})`,
  fix: (f) => {
    const access = ACCESS[f.call.operation];
    return `assign the role "${access.role}" (Managed HSM: "Managed HSM ${access.role.replace("Key Vault ", "")}") to the identity on the key or vault, or, with access policies, grant the key permission "${access.permission}"`;
  },
};

const CREDENTIAL_FIX = "check the provider's credential (by default DefaultAzureCredential: AZURE_* service principal variables, workload identity, managed identity, az login) and that it issues tokens for https://vault.azure.net";

const firewall: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `Key Vault's firewall refused this client's network calling ${f.call.operation} on key ${f.call.key} (${f.what})`,
  fix: () => "allow this network (or a private endpoint) in the vault's networking settings",
};

const unauthenticated: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `Key Vault rejected the credential's token (${f.what}) calling ${f.call.operation} on key ${f.call.key}`,
  fix: () => CREDENTIAL_FIX,
};

const noToken: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `the credential could not get a token (${f.what}) calling ${f.call.operation} on key ${f.call.key}`,
  fix: () => CREDENTIAL_FIX,
};

/** `@azure/identity`'s errors when a credential cannot get a token at all. */
const CREDENTIAL_ERRORS = new Set(["CredentialUnavailableError", "AuthenticationError", "AggregateAuthenticationError"]);

const throttled: Row = {
  code: "KMS_THROTTLED",
  message: (f) => `${f.call.operation} on key ${f.call.key} was throttled (${f.what})`,
  fix: () => "Key Vault's request limit was reached: raise the data-key cache's max age, or spread keys over more vaults",
};

// Deliberately vague: which of key, version or bytes was wrong is not for the caller to learn.
const AUTH_FAILED = "the data key could not be unwrapped with this key";
const AUTH_FAILED_FIX = "decrypt with the key and tenant the data was encrypted under";
const authFailed: Row = { code: "ENVELOPE_AUTH_FAILED", message: () => AUTH_FAILED, fix: () => AUTH_FAILED_FIX };

const unavailable: Row = {
  code: "KMS_UNAVAILABLE",
  message: (f) => `${f.call.operation} on key ${f.call.key} failed: Key Vault is unavailable (${f.what})`,
  fix: () => "check the network path to the vault and Azure status, then try again",
};

const timedOut: Row = {
  code: "KMS_TIMEOUT",
  message: (f) => `${f.call.operation} on key ${f.call.key} got no answer in time (${f.what})`,
  fix: () => "check the network path to the vault, or raise the provider's timeoutMs",
};

const untrustedCertificate: Row = {
  code: "KMS_CONFIG_INVALID",
  message: (f) => `the vault's TLS certificate was not trusted (${f.what}) calling ${f.call.operation} on key ${f.call.key}`,
  fix: () => "if the vault is reached through a private CA (or is an emulator), give its certificate as the provider's `ca` setting; otherwise check for a proxy intercepting TLS",
};

const notFound: Row = {
  code: "KMS_KEY_NOT_FOUND",
  message: (f) => `key ${f.call.key} (or the version asked for) does not exist in this vault (${f.what})`,
  fix: () => "check the key name and the provider's vaultUrl; a deleted key can be recovered while soft-deleted",
};

const disabled: Row = {
  code: "KMS_KEY_DISABLED",
  message: (f) => `key ${f.call.key} (this version) is disabled (${f.what})`,
  fix: () => "enable the key version (az keyvault key set-attributes --enabled true) or point the tenant at an enabled key",
};

const wrongAlgorithm: Row = {
  code: "KMS_CONFIG_INVALID",
  message: (f) => `key ${f.call.key} refused the wrapping request (${f.what})`,
  fix: () => "set `algorithm` to match the key type: RSA-OAEP-256 for RSA keys, A256KW for Managed HSM oct-HSM keys",
};

const providerError: Row = {
  code: "KMS_PROVIDER_ERROR",
  message: (f) => `${f.call.operation} on key ${f.call.key} failed unexpectedly (${f.what})`,
  fix: () => "see the error's cause and request id; report it if it persists",
};

/** Node's certificate verification failures: not transient, and not an outage. */
const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const CODE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const OBJECT_ID = /\r?\nCaller: [^\r\n]*?\boid=([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})[;\r\n]/i;
const DATA_ACTION = /\r?\nAction: '(Microsoft\.KeyVault\/(?:vaults|managedHSM|managedHsms)\/keys\/[a-z]{1,16}(?:\/action)?)'/i;
const REQUEST_ID = /^[A-Za-z0-9-]{1,128}$/;
const MAX_RETRY_AFTER_MS = 600_000;

/** The fix of each error made here: validatePermissions reports it as the remediation. */
const FIXES = new WeakMap<KmsError, string>();

/** A `KmsError` that says how long the service asked to wait (core's retry honours it). */
export type ThrottledError = KmsError & { readonly retryAfterMs?: number };

/** What the SDK's RestError carries that is used here. */
interface RestErrorLike {
  name?: unknown;
  code?: unknown;
  statusCode?: unknown;
  /** Key Vault's error body, as the SDK deserializes it (`innererror` becomes `innerError`). */
  details?: { error?: { code?: unknown; message?: unknown; innerError?: { code?: unknown } } };
  response?: { headers?: { get?(name: string): string | undefined } };
}

/**
 * Maps whatever an SDK call rejected with. `deadline` is this provider's own per-call timeout
 * signal; an abort by core's `signal` returns core's own reason (core has already settled the attempt).
 */
export function mapAzureError(error: unknown, call: AzureCall, signal?: AbortSignal, deadline?: AbortSignal): KmsError {
  if (signal?.aborted) return isKmsError(signal.reason) ? signal.reason : kmsError("KMS_TIMEOUT", `${call.operation} was cancelled`, "try again", error);
  if (isKmsError(error)) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as RestErrorLike;
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  const body = e.details?.error;
  const serviceCode = typeof body?.code === "string" && CODE.test(body.code) ? body.code : undefined;
  const inner = typeof body?.innerError?.code === "string" && CODE.test(body.innerError.code) ? body.innerError.code : undefined;
  const errorCode = typeof e.code === "string" && CODE.test(e.code) ? e.code : undefined;
  const errorName = typeof e.name === "string" && CODE.test(e.name) ? e.name : undefined;
  const header = (name: string) => (typeof e.response?.headers?.get === "function" ? e.response.headers.get(name) : undefined);
  const requestId = header("x-ms-request-id");

  let row: Row;
  let what = status === undefined ? "no response" : `HTTP ${status}${serviceCode ? ` ${serviceCode}` : ""}${inner ? `/${inner}` : ""}`;
  if (deadline?.aborted) {
    row = timedOut;
    what = "deadline passed";
  } else if (status === undefined && errorName !== undefined && CREDENTIAL_ERRORS.has(errorName)) {
    row = noToken;
    what = errorName;
  } else if (status === undefined && errorCode !== undefined && TLS_CODES.has(errorCode)) {
    row = untrustedCertificate;
    what = errorCode;
  } else if (status === undefined) {
    const network = networkFailureOf(error);
    row = network?.code === "KMS_TIMEOUT" ? timedOut : network !== undefined ? unavailable : providerError;
    if (network !== undefined) what = network.name;
  } else if (status === 401) row = unauthenticated;
  else if (status === 403) row = inner === "KeyDisabled" ? disabled : inner === "ForbiddenByFirewall" ? firewall : accessDenied;
  else if (status === 404) row = notFound;
  else if (status === 429) row = throttled;
  else if (status >= 500) row = unavailable;
  else if (status === 400 && serviceCode === "BadParameter") row = call.operation === "UnwrapKey" ? authFailed : call.operation === "WrapKey" ? wrongAlgorithm : providerError;
  else row = providerError;

  const message = typeof body?.message === "string" ? body.message : "";
  const objectId = row === accessDenied ? OBJECT_ID.exec(message)?.[1] : undefined;
  const facts: Facts = {
    call,
    what,
    dataAction: (row === accessDenied ? DATA_ACTION.exec(message)?.[1] : undefined) ?? ACCESS[call.operation].dataAction,
    ...(objectId === undefined ? {} : { objectId: objectId.toLowerCase() }),
  };
  const fix = row.fix(facts);
  const mapped = kmsError(row.code, row === authFailed ? `${AUTH_FAILED}: ${AUTH_FAILED_FIX}` : `${row.message(facts)}: ${fix}`, fix, error, requestId);
  if (row === throttled) {
    const retryAfterMs = retryAfterMsOf(header("retry-after"));
    if (retryAfterMs !== undefined) Object.defineProperty(mapped, "retryAfterMs", { value: retryAfterMs, enumerable: true });
  }
  return mapped;
}

/** `Retry-After` as seconds or an HTTP date, in ms (capped); undefined when absent or unreadable. */
function retryAfterMsOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d{1,6}$/.test(value.trim()) ? Number(value.trim()) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

/** ENVELOPE_AUTH_FAILED for a wrapped key refused before or after the UnwrapKey call. */
export function unwrapFailed(): KmsError {
  return kmsError("ENVELOPE_AUTH_FAILED", `${AUTH_FAILED}: ${AUTH_FAILED_FIX}`, AUTH_FAILED_FIX);
}

/** The fix recorded with a provider error. */
export function fixOf(error: KmsError): string | undefined {
  return FIXES.get(error);
}

/** A provider error with its fix recorded. */
export function kmsError(code: KmsErrorCode, message: string, fix: string, cause?: unknown, requestId?: string): KmsError {
  const error = new KmsError(code, `${PROVIDER_ID}: ${message}`, {
    provider: PROVIDER_ID,
    ...(cause === undefined ? {} : { cause }),
    ...(requestId !== undefined && REQUEST_ID.test(requestId) ? { requestId } : {}),
  });
  FIXES.set(error, fix);
  return error;
}
