/**
 * AWS KMS errors → core's `KmsError` codes: one function, one table (README "Errors").
 *
 * The SDK's error is kept as `cause` and its `$metadata.requestId` as `requestId`, but AWS's own
 * message is never copied: messages are built here from facts parsed with strict patterns (the
 * exception name, an ARN, an IAM action, a key state), so nothing a caller put in a request (an
 * encryption-context value, say) can reach a message.
 */
import { KmsError, type KmsErrorCode, isKmsError, networkFailureOf } from "@kms/core";

/** The provider id, written into every envelope. */
export const PROVIDER_ID = "aws-kms";

/** The call that failed: the KMS operation and the key as the caller named it. */
export interface AwsCall {
  /** `GenerateDataKey`, `Decrypt`…; its IAM action is `kms:<operation>`. */
  readonly operation: string;
  readonly keyId: string;
  /** The key's ARN when already known (validatePermissions reads it first). */
  readonly keyArn?: string;
}

/** What is known about a failure, for the message and the fix. */
interface Facts {
  readonly call: AwsCall;
  /** The exception name (`NotFoundException`) or network code (`ECONNREFUSED`), pattern-checked. */
  readonly what: string;
  /** The IAM action: parsed from an access-denied message, else the operation's. */
  readonly action: string;
  /** The principal named by an access-denied message. */
  readonly principal?: string;
  /** The key (ARN when known, else the id as given). */
  readonly resource: string;
  /** A key state parsed from KMSInvalidStateException (`pending deletion`). */
  readonly state?: string;
}

interface Row {
  readonly code: KmsErrorCode;
  readonly message: (f: Facts) => string;
  /** One line: what to do about it (also validatePermissions' remediation). */
  readonly fix: (f: Facts) => string;
}

/**
 * The IAM actions the service's runtime role needs on each tenant key, in the order
 * `validatePermissions` checks them (one check each: kms:Decrypt last, as it decrypts what an earlier
 * check produced). `deploy/terraform/aws` grants exactly these; a test compares the two.
 *
 * kms:DescribeKey and kms:ListKeyRotations are `describeKey`'s (the current key material's date,
 * `rotatedAt`), which the runtime client calls for key-age metrics and re-wrap's current-version check.
 */
export const AWS_RUNTIME_PERMISSIONS = Object.freeze(["kms:DescribeKey", "kms:ListKeyRotations", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"] as const);
export type AwsRuntimePermission = (typeof AWS_RUNTIME_PERMISSIONS)[number];

/**
 * The IAM actions of the identity that rotates keys on demand (the rotation scheduler), which calls
 * `describeKey` (DescribeKey, then ListKeyRotations for the current material's date: without it every
 * pass would find an old key due again) and `rotateKey` (DescribeKey before and after
 * RotateKeyOnDemand). Automatic rotation needs none.
 */
export const AWS_ROTATION_PERMISSIONS = Object.freeze(["kms:DescribeKey", "kms:ListKeyRotations", "kms:RotateKeyOnDemand"] as const);

/**
 * The IAM actions of crypto-shredding (`disableKey`: DescribeKey resolves an alias first), for a
 * separate key-administration role: the runtime role must never hold DisableKey or ScheduleKeyDeletion.
 */
export const AWS_SHREDDING_PERMISSIONS = Object.freeze(["kms:DescribeKey", "kms:DisableKey", "kms:ScheduleKeyDeletion"] as const);

/** The key-administration actions of crypto-shredding (`disableKey`), which the runtime role must not hold. */
const SHREDDING_ACTIONS: ReadonlySet<string> = new Set(AWS_SHREDDING_PERMISSIONS.filter((action) => !(AWS_RUNTIME_PERMISSIONS as readonly string[]).includes(action)));

const accessDenied: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `access denied: ${f.principal ?? "the caller"} may not perform ${f.action} on ${f.resource}`,
  fix: (f) =>
    SHREDDING_ACTIONS.has(f.action)
      ? "shred with the key-administration credentials, whose IAM policy and key policy allow this action (the application's runtime role must not)"
      : f.action === "kms:ListKeyRotations"
      ? "allow this action for the caller in its IAM policy and in the key policy: describeKey reads with it when the current key material became current (the key age of rotation and of the key-age metrics)"
      : "allow this action for the caller in its IAM policy and in the key policy",
};

const credentials: Row = {
  code: "KMS_ACCESS_DENIED",
  message: (f) => `the AWS credentials were rejected (${f.what}) calling ${f.call.operation} on ${f.resource}`,
  fix: () => "check the access key id, secret access key and session token the provider uses (and this host's clock)",
};

const throttled: Row = {
  code: "KMS_THROTTLED",
  message: (f) => `${f.call.operation} on ${f.resource} was throttled (${f.what})`,
  fix: () => "KMS request quota reached: raise the data-key cache's max age, or ask AWS for a higher quota",
};

// Deliberately vague: which of key, context or bytes was wrong is not for the caller to learn.
const AUTH_FAILED = "the data key could not be unwrapped with this key and encryption context";
const AUTH_FAILED_FIX = "decrypt with the key and encryption context the data was encrypted under";
const authFailed: Row = { code: "ENVELOPE_AUTH_FAILED", message: () => AUTH_FAILED, fix: () => AUTH_FAILED_FIX };

const unavailable: Row = {
  code: "KMS_UNAVAILABLE",
  message: (f) => `${f.call.operation} on ${f.resource} failed: AWS KMS is unavailable (${f.what})`,
  fix: () => "check the network path to the KMS endpoint and the AWS Health Dashboard, then try again",
};

const sdkTimeout: Row = {
  code: "KMS_TIMEOUT",
  message: (f) => `${f.call.operation} on ${f.resource} timed out in the AWS SDK (connection or request timeout)`,
  fix: () => "check the network path to the KMS endpoint, or raise connectionTimeoutMs / requestTimeoutMs",
};

const credentialsMissing: Row = {
  ...credentials,
  message: (f) => `no AWS credentials were found (${f.what}) calling ${f.call.operation} on ${f.resource}`,
  fix: () => "give the provider credentials (environment, shared config, instance or task role, or settings.credentials)",
};

/** By exception name (`error.name`, which the SDK takes from `__type`). */
const BY_NAME: Readonly<Record<string, Row>> = {
  AccessDeniedException: accessDenied,
  UnrecognizedClientException: credentials,
  InvalidSignatureException: credentials,
  IncompleteSignatureException: credentials,
  IncompleteSignature: credentials,
  MissingAuthenticationTokenException: credentials,
  ExpiredTokenException: credentials,
  InvalidClientTokenId: credentials,
  InvalidGrantTokenException: accessDenied,
  CredentialsProviderError: credentialsMissing,
  NotFoundException: {
    code: "KMS_KEY_NOT_FOUND",
    message: (f) => `key ${f.resource} does not exist (or is in another region or account)`,
    fix: () => "check the key id and the provider's region",
  },
  DisabledException: {
    code: "KMS_KEY_DISABLED",
    message: (f) => `key ${f.resource} is disabled`,
    fix: () => "enable the key (kms:EnableKey) or point the tenant at an enabled key",
  },
  KMSInvalidStateException: {
    code: "KMS_KEY_DISABLED",
    message: (f) => `key ${f.resource} cannot be used in its current state (${f.state ?? "not Enabled"})`,
    fix: (f) =>
      f.state === "pending deletion" && SHREDDING_ACTIONS.has(`kms:${f.call.operation}`)
        ? "its deletion is already scheduled: nothing more to do (DescribeKey shows its DeletionDate)"
        : f.state === "pending deletion"
        ? "cancel its deletion (kms:CancelKeyDeletion) and enable it, or point the tenant at another key"
        : "wait until the key is Enabled, or point the tenant at an enabled key",
  },
  ThrottlingException: throttled,
  LimitExceededException: throttled,
  InvalidCiphertextException: authFailed,
  IncorrectKeyException: authFailed,
  KMSInternalException: unavailable,
  DependencyTimeoutException: unavailable,
  KeyUnavailableException: unavailable,
  ServiceUnavailableException: unavailable,
  InternalFailure: unavailable,
  TimeoutError: sdkTimeout,
};

const providerError: Row = {
  code: "KMS_PROVIDER_ERROR",
  message: (f) => `${f.call.operation} on ${f.resource} failed unexpectedly (${f.what})`,
  fix: () => "see the error's cause and request id; report it if it persists",
};

const NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
/**
 * AWS's access-denied wording: `User: <principal> is not authorized to perform: <action> on resource:
 * <arn> …`. Each part is matched by a strict pattern, so only an ARN and an action are ever taken.
 */
const DENIED = /^User: (arn:aws[a-z-]*:(?:iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/-]{1,512}) is not authorized to perform: (kms:[A-Za-z]{1,64}) on resource: (arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:\d{12}:(?:key|alias)\/[A-Za-z0-9/_-]{1,256})(?:\s|$)/;
const STATE = / is (pending deletion|pending import|pending replica deletion|unavailable|disabled|creating|updating)\.?$/;
const REQUEST_ID = /^[A-Za-z0-9-]{1,128}$/;

/** The fix (and key) of each error made here: validatePermissions reports them as the remediation. */
const DETAILS = new WeakMap<KmsError, { fix: string; resource?: string }>();

/**
 * Maps whatever `client.send` rejected with. An abort by core's signal returns core's own reason
 * (core has already settled the attempt with `KMS_TIMEOUT`; this keeps the two consistent).
 */
export function mapAwsError(error: unknown, call: AwsCall, signal?: AbortSignal): KmsError {
  if (signal?.aborted) {
    return isKmsError(signal.reason) ? signal.reason : kmsError("KMS_TIMEOUT", `${call.operation} was cancelled`, "try again", error);
  }
  if (isKmsError(error)) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
  };
  const name = typeof e.name === "string" && NAME.test(e.name) ? e.name : undefined;
  const status = typeof e.$metadata?.httpStatusCode === "number" ? e.$metadata.httpStatusCode : undefined;
  const message = typeof e.message === "string" ? e.message : "";
  const requestId = typeof e.$metadata?.requestId === "string" && REQUEST_ID.test(e.$metadata.requestId) ? e.$metadata.requestId : undefined;

  // No HTTP answer: a socket error. Under jest, Node's socket errors come from another realm, fail the
  // SDK's `instanceof Error` and reach us as text only ("AWS SDK error wrapper for Error: connect
  // ECONNREFUSED …"); core's classification matches the text too (and never copies it).
  const network = status === undefined ? networkFailureOf(error) : undefined;
  let row: Row;
  if (network !== undefined) row = network.code === "KMS_TIMEOUT" ? sdkTimeout : unavailable;
  else if (name !== undefined && Object.hasOwn(BY_NAME, name)) row = BY_NAME[name]!;
  else if (status !== undefined && status >= 500) row = unavailable;
  else row = providerError;

  const denied = row === accessDenied ? DENIED.exec(message) : null;
  const facts: Facts = {
    call,
    what: network?.name ?? name ?? (status === undefined ? "no response" : `HTTP ${status}`),
    action: denied?.[2] ?? `kms:${call.operation}`,
    ...(denied ? { principal: denied[1] } : {}),
    resource: denied?.[3] ?? call.keyArn ?? call.keyId,
    ...(name === "KMSInvalidStateException" && STATE.test(message) ? { state: STATE.exec(message)![1] } : {}),
  };
  const fix = row.fix(facts);
  return kmsError(row.code, `${row.message(facts)}: ${fix}`, fix, error, requestId, undefined, facts.resource);
}

/** ENVELOPE_AUTH_FAILED for a wrapped key refused before or after the Decrypt call. */
export function unwrapFailed(): KmsError {
  return kmsError("ENVELOPE_AUTH_FAILED", `${AUTH_FAILED}: ${AUTH_FAILED_FIX}`, AUTH_FAILED_FIX);
}

/** The fix recorded with a provider error, and the key it concerns (an ARN when AWS named one). */
export function detailsOf(error: KmsError): { fix: string; resource?: string } | undefined {
  return DETAILS.get(error);
}

/** A provider error with its fix recorded (validatePermissions reports it as the remediation). */
export function kmsError(
  code: KmsErrorCode,
  message: string,
  fix: string,
  cause?: unknown,
  requestId?: string,
  retryable?: boolean,
  resource?: string,
): KmsError {
  const error = new KmsError(code, `${PROVIDER_ID}: ${message}`, {
    provider: PROVIDER_ID,
    ...(cause === undefined ? {} : { cause }),
    ...(requestId === undefined ? {} : { requestId }),
    ...(retryable === undefined ? {} : { retryable }),
  });
  DETAILS.set(error, resource === undefined ? { fix } : { fix, resource });
  return error;
}
