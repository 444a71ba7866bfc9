/**
 * Cloud KMS errors → core's `KmsError` codes: one function, one table (README "Errors"), keyed by the
 * gRPC status code the client rejects with (never by its message).
 *
 * Google's message is never copied: messages are built here from the operation, the key name the
 * caller gave, and facts parsed with strict patterns (an IAM permission, a version state). gRPC has no
 * request id, so none is recorded.
 */
import { KmsError, type KmsErrorCode, isKmsError, networkFailureOf } from "@kms/core";

/** The provider id, written into every envelope. */
export const PROVIDER_ID = "gcp-kms";

/** The IAM permissions the provider uses, with the predefined role that grants each. */
export const GCP_PERMISSIONS = {
  encrypt: { permission: "cloudkms.cryptoKeyVersions.useToEncrypt", role: "roles/cloudkms.cryptoKeyEncrypter" },
  decrypt: { permission: "cloudkms.cryptoKeyVersions.useToDecrypt", role: "roles/cloudkms.cryptoKeyDecrypter" },
  get: { permission: "cloudkms.cryptoKeys.get", role: "roles/cloudkms.viewer" },
  createVersion: { permission: "cloudkms.cryptoKeyVersions.create", role: "roles/cloudkms.admin" },
  updatePrimary: { permission: "cloudkms.cryptoKeys.update", role: "roles/cloudkms.admin" },
  /** `disableKey`: finding the versions to disable or destroy. */
  listVersions: { permission: "cloudkms.cryptoKeyVersions.list", role: "roles/cloudkms.viewer" },
  /** `disableKey` mode `disable`: an administrator's permission, never the runtime role's. */
  updateVersion: { permission: "cloudkms.cryptoKeyVersions.update", role: "roles/cloudkms.admin" },
  /** `disableKey` mode `schedule-destruction`: an administrator's permission, never the runtime role's. */
  destroyVersion: { permission: "cloudkms.cryptoKeyVersions.destroy", role: "roles/cloudkms.admin" },
} as const;

/** What `validatePermissions` asks `TestIamPermissions` about, in its order, each with the role that grants it. */
export const GCP_RUNTIME_GRANTS = Object.freeze([GCP_PERMISSIONS.encrypt, GCP_PERMISSIONS.decrypt, GCP_PERMISSIONS.get] as const);

/**
 * The permissions the service's runtime identity needs on each tenant key: exactly what
 * `validatePermissions` asks `TestIamPermissions` about, in its order (predefined roles covering
 * them: roles/cloudkms.cryptoKeyEncrypterDecrypter plus roles/cloudkms.viewer, which grants more).
 * `deploy/terraform/gcp` puts exactly these in its custom role; a test compares the two.
 */
export const GCP_RUNTIME_PERMISSIONS = Object.freeze(GCP_RUNTIME_GRANTS.map((grant) => grant.permission));

/** The permissions of `rotateKey` (GetCryptoKey, CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion): only for the identity that rotates on demand. */
export const GCP_ROTATION_PERMISSIONS = Object.freeze([GCP_PERMISSIONS.get.permission, GCP_PERMISSIONS.createVersion.permission, GCP_PERMISSIONS.updatePrimary.permission] as const);

/** The permissions of crypto-shredding (`disableKey`, both modes), for a key-administration identity only, never the runtime one. */
export const GCP_SHREDDING_PERMISSIONS = Object.freeze([
  GCP_PERMISSIONS.listVersions.permission,
  GCP_PERMISSIONS.updateVersion.permission,
  GCP_PERMISSIONS.destroyVersion.permission,
] as const);

/** Each operation's permission. */
const PERMISSION_OF: Readonly<Record<string, { permission: string; role: string }>> = {
  Encrypt: GCP_PERMISSIONS.encrypt,
  Decrypt: GCP_PERMISSIONS.decrypt,
  GetCryptoKey: GCP_PERMISSIONS.get,
  CreateCryptoKeyVersion: GCP_PERMISSIONS.createVersion,
  UpdateCryptoKeyPrimaryVersion: GCP_PERMISSIONS.updatePrimary,
  ListCryptoKeyVersions: GCP_PERMISSIONS.listVersions,
  UpdateCryptoKeyVersion: GCP_PERMISSIONS.updateVersion,
  DestroyCryptoKeyVersion: GCP_PERMISSIONS.destroyVersion,
  TestIamPermissions: GCP_PERMISSIONS.get,
};

/** The call that failed: the Cloud KMS method and the key as the caller named it. */
export interface GcpCall {
  readonly operation: string;
  readonly keyId: string;
}

/** What is known about a failure, for the message and the fix. */
interface Facts {
  readonly call: GcpCall;
  /** The gRPC status name (`PERMISSION_DENIED`) or network code (`ECONNREFUSED`). */
  readonly what: string;
  /** The permission: parsed from a denial, else the operation's. */
  readonly permission: string;
  readonly role: string;
  /** A version state parsed from FAILED_PRECONDITION (`DISABLED`). */
  readonly state?: string;
}

interface Row {
  readonly code: KmsErrorCode;
  readonly message: (f: Facts) => string;
  /** One line: what to do about it (also validatePermissions' remediation). */
  readonly fix: (f: Facts) => string;
}

/** The fix for a missing permission: the predefined role, or the permission in a custom role. */
export function grantFix(permission: string, role: string, keyId: string): string {
  return `grant ${role} on ${keyId} to the provider's service account (or a custom role with ${permission})`;
}

const accessDenied: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `permission ${f.permission} denied on ${f.call.keyId} (or the key does not exist)`,
  fix: (f) => grantFix(f.permission, f.role, f.call.keyId),
};

const credentials: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `the Google credentials were rejected (${f.what}) calling ${f.call.operation} on ${f.call.keyId}`,
  fix: () => "check the service account key (keyFilename / credentials) or Application Default Credentials, and that the account is enabled",
};

// Deliberately vague: which of key, context or bytes was wrong is not for the caller to learn.
const AUTH_FAILED = "the data key could not be unwrapped with this key and encryption context";
const AUTH_FAILED_FIX = "decrypt with the key and encryption context the data was encrypted under";
const authFailed: Row = { code: "ENVELOPE_AUTH_FAILED", message: () => AUTH_FAILED, fix: () => AUTH_FAILED_FIX };

const unavailable: Row = {
  code: "KMS_UNAVAILABLE",
  message: (f) => `${f.call.operation} on ${f.call.keyId} failed: Cloud KMS is unavailable (${f.what})`,
  fix: () => "check the network path to the Cloud KMS endpoint and the Google Cloud status page, then try again",
};

const integrity: Row = {
  code: "KMS_INTEGRITY_ERROR",
  message: (f) => `${f.call.operation} on ${f.call.keyId}: Cloud KMS received a corrupted request (CRC32C mismatch)`,
  fix: () => "try again; if it persists, check for a proxy that alters traffic to Cloud KMS",
};

const providerError: Row = {
  code: "KMS_PROVIDER_ERROR",
  message: (f) => `${f.call.operation} on ${f.call.keyId} failed unexpectedly (${f.what})`,
  fix: () => "see the error's cause; report it if it persists",
};

/** By gRPC status code. INVALID_ARGUMENT is decided in `rowFor` (it depends on the operation). */
const BY_CODE: Readonly<Record<number, readonly [string, Row]>> = {
  1: ["CANCELLED", unavailable], // not ours (ours is the abort signal): the connection dropped under the call
  2: ["UNKNOWN", unavailable],
  4: [
    "DEADLINE_EXCEEDED",
    {
      code: "KMS_TIMEOUT",
      message: (f) => `${f.call.operation} on ${f.call.keyId} passed its deadline`,
      fix: () => "check the network path to Cloud KMS, or raise the provider's timeoutMs",
    },
  ],
  5: [
    "NOT_FOUND",
    {
      code: "KMS_KEY_NOT_FOUND",
      message: (f) => `key ${f.call.keyId} does not exist`,
      fix: () => "check the key name (project, location, key ring and key)",
    },
  ],
  7: ["PERMISSION_DENIED", accessDenied],
  8: [
    "RESOURCE_EXHAUSTED",
    {
      code: "KMS_THROTTLED",
      message: (f) => `${f.call.operation} on ${f.call.keyId} was throttled (RESOURCE_EXHAUSTED)`,
      fix: () => "Cloud KMS quota reached: raise the data-key cache's max age, or request a higher quota for the project",
    },
  ],
  9: [
    "FAILED_PRECONDITION",
    {
      code: "KMS_KEY_DISABLED",
      message: (f) => `key ${f.call.keyId} cannot be used: the key version is ${f.state ?? "not enabled"}`,
      fix: (f) =>
        f.state === "DESTROYED" || f.state === "DESTROY_SCHEDULED"
          ? "restore the version if it is still scheduled for destruction, or point the tenant at another key"
          : "enable the key version (gcloud kms keys versions enable), or make an enabled version primary",
    },
  ],
  13: ["INTERNAL", unavailable],
  14: ["UNAVAILABLE", unavailable],
  16: ["UNAUTHENTICATED", credentials],
};

/** Google's denial wording; only the permission is taken. */
const DENIED = /^Permission '(cloudkms\.[A-Za-z]{1,32}\.[A-Za-z]{1,64})' denied on resource /;
const STATE = /current state is: (DISABLED|DESTROYED|DESTROY_SCHEDULED|PENDING_GENERATION|PENDING_IMPORT|IMPORT_FAILED|GENERATION_FAILED)\.?/;
const CHECKSUM = /^The checksum in field [a-z0-9_]{1,64} did not match/;

/** The fix of each error made here: validatePermissions reports it as the remediation. */
const FIXES = new WeakMap<KmsError, string>();

/**
 * Maps whatever a client call rejected with. An abort by core's signal returns core's own reason
 * (core has already settled the attempt with `KMS_TIMEOUT`; this keeps the two consistent).
 */
export function mapGcpError(error: unknown, call: GcpCall, signal?: AbortSignal): KmsError {
  if (signal?.aborted) {
    return isKmsError(signal.reason) ? signal.reason : kmsError("KMS_TIMEOUT", `${call.operation} was cancelled`, "try again", error);
  }
  if (isKmsError(error)) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as { code?: unknown; details?: unknown };
  const details = typeof e.details === "string" ? e.details : "";
  const status = typeof e.code === "number" ? e.code : undefined;
  const network = status === undefined ? networkFailureOf(error) : undefined;
  const known = status === undefined ? undefined : BY_CODE[status];
  let what = network?.name ?? known?.[0] ?? (status === undefined ? "no status" : `gRPC status ${status}`);
  let row: Row;
  if (network !== undefined) row = network.code === "KMS_TIMEOUT" ? BY_CODE[4]![1] : unavailable;
  else if (status === 3) {
    what = "INVALID_ARGUMENT";
    row = CHECKSUM.test(details) ? integrity : call.operation === "Decrypt" ? authFailed : providerError;
  } else row = known?.[1] ?? providerError;

  const denied = row === accessDenied ? DENIED.exec(details)?.[1] : undefined;
  const grant = PERMISSION_OF[call.operation] ?? GCP_PERMISSIONS.get;
  const role = Object.values(GCP_PERMISSIONS).find((p) => p.permission === denied)?.role ?? grant.role;
  const facts: Facts = {
    call,
    what,
    permission: denied ?? grant.permission,
    role,
    ...(status === 9 && STATE.test(details) ? { state: STATE.exec(details)![1]! } : {}),
  };
  const fix = row.fix(facts);
  return kmsError(row.code, `${row.message(facts)}: ${fix}`, fix, error);
}

/** ENVELOPE_AUTH_FAILED for a wrapped key refused before or after the Decrypt call. */
export function unwrapFailed(): KmsError {
  return kmsError("ENVELOPE_AUTH_FAILED", `${AUTH_FAILED}: ${AUTH_FAILED_FIX}`, AUTH_FAILED_FIX);
}

/** KMS_INTEGRITY_ERROR for a response that failed a check: never used, retryable. */
export function integrityFailed(call: GcpCall, what: string): KmsError {
  const fix = "try again; if it persists, check for a proxy that alters traffic to Cloud KMS";
  return kmsError("KMS_INTEGRITY_ERROR", `${call.operation} on ${call.keyId}: the response failed its integrity check (${what}) and was discarded: ${fix}`, fix);
}

/** The fix recorded with a provider error. */
export function fixOf(error: KmsError): string | undefined {
  return FIXES.get(error);
}

/** A provider error with its fix recorded. */
export function kmsError(code: KmsErrorCode, message: string, fix: string, cause?: unknown): KmsError {
  const error = new KmsError(code, `${PROVIDER_ID}: ${message}`, { provider: PROVIDER_ID, ...(cause === undefined ? {} : { cause }) });
  FIXES.set(error, fix);
  return error;
}
