/**
 * The `aws-kms` provider: data keys from AWS KMS (`GenerateDataKey`, `Encrypt`, `Decrypt`) through
 * the official `@aws-sdk/client-kms`, with the encryption context bound by KMS itself.
 *
 * Rules kept here (docs/WRITING_A_PROVIDER.md): the SDK makes one attempt per call (`maxAttempts:
 * 1`; core's policy retries, times out and breaks circuits), every call gets core's abort signal,
 * every SDK error goes through `mapAwsError`, every SDK response is checked before use, and plaintext
 * keys the SDK decoded are copied into memory of their own and the SDK's copy is zeroed.
 *
 * Key versions are AWS's `KeyMaterialId` (a new one per rotation; "" where the service does not
 * return it). Decrypt does not need the version: the ciphertext blob names its key material.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  type KeyMetadata,
  KMSClient,
  ListKeyRotationsCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
} from "@aws-sdk/client-kms";
import {
  type Cancellable,
  DATA_KEY_BYTES,
  DOCS_BASE_URL,
  type DataKey,
  type DisableKeyOptions,
  type DisableKeyResult,
  type EncryptionContext,
  type GenerateDataKeyRequest,
  type KeyDescription,
  type KeyDisableMode,
  KmsConfigError,
  type KmsProvider,
  type PermissionCheck,
  type ProviderCapabilities,
  type ProviderDefinition,
  type ProviderHealth,
  type RotationResult,
  type UnwrapDataKeyRequest,
  type WrapDataKeyRequest,
  type WrappedDataKey,
  configIssue,
  isKmsError,
  takeDataKey,
  shortKeyId,
} from "@kms/core";
import { AWS_RUNTIME_PERMISSIONS, type AwsCall, type AwsRuntimePermission, PROVIDER_ID, detailsOf, kmsError, mapAwsError, unwrapFailed } from "./errors";
import { AWS_KEY_ID_RULE, type AwsKmsSettings, awsKeyIdProblem, parseAwsKmsSettings } from "./settings";

/** Where each failing permission check points: the IAM policy this provider needs. */
export const AWS_PERMISSIONS_DOCS_URL = `${DOCS_BASE_URL}docs/setup/AWS_KMS_SETUP.md#permissions`;

/** The encryption context of validatePermissions' test calls (an IAM condition on `kms:tenant` must allow it). */
export const PERMISSION_CHECK_CONTEXT: EncryptionContext = Object.freeze({ "kms:tenant": "kms-validate-permissions" });

/** The largest ciphertext blob AWS KMS accepts. */
const MAX_CIPHERTEXT_BYTES = 6144;
/** KeyMaterialId is 64 hex digits on AWS; anything printable and short enough for the envelope is accepted. */
const KEY_VERSION = /^[\x21-\x7e]{1,255}$/;
const KEY_STATE = /^[A-Za-z]{1,32}$/;
const KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:\d{12}:key\/[A-Za-z0-9-]{1,64}$/;
/** An alias or alias ARN: DisableKey and ScheduleKeyDeletion take a key id or key ARN only. */
const ALIAS = /^(?:alias\/|arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:\d{12}:alias\/)/;
const REQUEST_ID = /^[A-Za-z0-9-]{1,128}$/;
/** The modes `disableKey` supports: AWS has both. */
const KEY_DISABLING: readonly KeyDisableMode[] = Object.freeze(["disable", "schedule-destruction"]);
/** AWS's own default and bounds of ScheduleKeyDeletion's PendingWindowInDays. */
const PENDING_WINDOW_DEFAULT_DAYS = 30;
const PENDING_WINDOW_MIN_DAYS = 7;
const PENDING_WINDOW_MAX_DAYS = 30;
const DEADLINE_FIX = "read the key's state (DescribeKey) before trying again: the request may have reached AWS";
/**
 * ListKeyRotations paging in `describeKey`: AWS's largest page (1000 entries), and at most this many
 * pages (10 000 rotations: decades of daily rotations, far beyond AWS's own limits on a key). A list
 * longer than that, or one that never ends, is a KMS_PROVIDER_ERROR rather than a guess.
 */
const ROTATIONS_PAGE_SIZE = 1000;
const ROTATIONS_MAX_PAGES = 10;

export interface AwsKmsProviderOptions extends Partial<AwsKmsSettings> {
  /**
   * A client to use instead of one built from the settings above (which must then be omitted). The
   * caller owns it (`close()` leaves it open) and its retry settings: give it `maxAttempts: 1`, as
   * core retries.
   */
  readonly client?: KMSClient;
  /** How often `rotateKey` re-reads the key while AWS rotates it (asynchronously). Default 1000 ms. */
  readonly rotationPollIntervalMs?: number;
  /** How long `rotateKey` waits for the new key material to appear. Default 60 000 ms. */
  readonly rotationWaitMs?: number;
  /**
   * The waiting period of `disableKey(…, { mode: "schedule-destruction" })` (ScheduleKeyDeletion's
   * PendingWindowInDays): 7 to 30 days. Default 30, AWS's own default. Until it ends, the deletion
   * can be cancelled (kms:CancelKeyDeletion); after it, the key material is gone for good.
   */
  readonly pendingWindowInDays?: number;
  /**
   * Deadline of each `disableKey` call (its lookup and the DisableKey / ScheduleKeyDeletion call),
   * which runs outside core's resilience policy (`@kms/rotation`'s `shredTenantKey` calls it
   * directly); a caller's signal still ends it earlier. Default 30 000 ms.
   */
  readonly disableKeyTimeoutMs?: number;
}

/** The AWS KMS provider, with `generateDataKey` and `disableKey` (always present). */
export interface AwsKmsProvider extends KmsProvider {
  generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey>;
  disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult>;
}

/** The `aws-kms` provider for configuration-driven set-up: `createKms({ registry: [awsKms], config })`. */
export const awsKms: ProviderDefinition<AwsKmsSettings> = {
  id: PROVIDER_ID,
  packageName: "@kms/aws",
  keyIdProblem: awsKeyIdProblem,
  parseSettings: parseAwsKmsSettings,
  create: (settings) => awsKmsProvider(settings),
};

/** Creates the provider; throws a `KmsConfigError` listing every problem with the options. No network. */
export function awsKmsProvider(options: AwsKmsProviderOptions): AwsKmsProvider {
  const {
    client,
    rotationPollIntervalMs = 1000,
    rotationWaitMs = 60_000,
    pendingWindowInDays = PENDING_WINDOW_DEFAULT_DAYS,
    disableKeyTimeoutMs = 30_000,
    ...settings
  } = options ?? {};
  const issues = [];
  let parsed: AwsKmsSettings | undefined;
  if (client !== undefined) {
    if (!(client instanceof KMSClient)) issues.push(configIssue("client", "KMS_CONFIG_INVALID", "must be a KMSClient from @aws-sdk/client-kms"));
    const given = Object.keys(settings).filter((k) => settings[k as keyof typeof settings] !== undefined);
    if (given.length > 0) issues.push(configIssue(given[0]!, "KMS_CONFIG_INVALID", "give either client or the settings to build one (region, endpoint, credentials, timeouts), not both"));
  } else {
    const result = parseAwsKmsSettings(settings);
    if (result.ok) parsed = result.settings;
    else for (const i of result.issues) issues.push(configIssue(i.path, "KMS_CONFIG_INVALID", i.message));
  }
  for (const [path, value] of [["rotationPollIntervalMs", rotationPollIntervalMs], ["rotationWaitMs", rotationWaitMs], ["disableKeyTimeoutMs", disableKeyTimeoutMs]] as const) {
    if (!Number.isInteger(value) || value < 1) issues.push(configIssue(path, "KMS_CONFIG_INVALID", "must be a whole number of milliseconds > 0"));
  }
  if (!Number.isInteger(pendingWindowInDays) || pendingWindowInDays < PENDING_WINDOW_MIN_DAYS || pendingWindowInDays > PENDING_WINDOW_MAX_DAYS) {
    issues.push(configIssue("pendingWindowInDays", "KMS_CONFIG_INVALID", `must be a whole number of days, ${PENDING_WINDOW_MIN_DAYS} to ${PENDING_WINDOW_MAX_DAYS} (AWS's limits)`));
  }
  if (issues.length > 0) throw new KmsConfigError(issues);
  return new AwsKms(client ?? clientFor(parsed!), client === undefined, rotationPollIntervalMs, rotationWaitMs, pendingWindowInDays, disableKeyTimeoutMs);
}

function clientFor(settings: AwsKmsSettings): KMSClient {
  const { region, endpoint, credentials, connectionTimeoutMs, requestTimeoutMs } = settings;
  const timeouts = connectionTimeoutMs !== undefined || requestTimeoutMs !== undefined;
  return new KMSClient({
    region,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(credentials === undefined ? {} : { credentials: { ...credentials } }),
    maxAttempts: 1, // core's resilience policy retries; the SDK's own retries would multiply its attempts
    ...(timeouts
      ? {
          requestHandler: {
            ...(connectionTimeoutMs === undefined ? {} : { connectionTimeout: connectionTimeoutMs }),
            // Without throwOnRequestTimeout the SDK only logs a warning when the request timeout passes.
            ...(requestTimeoutMs === undefined ? {} : { requestTimeout: requestTimeoutMs, throwOnRequestTimeout: true }),
          },
        }
      : {}),
  });
}

class AwsKms implements AwsKmsProvider {
  readonly id = PROVIDER_ID;
  readonly capabilities: ProviderCapabilities = Object.freeze({
    encryptionContext: true,
    rotation: true,
    generatesDataKeys: true,
    insecure: false,
    keyDisabling: KEY_DISABLING,
  });
  readonly #client: KMSClient;
  readonly #ownsClient: boolean;
  readonly #pollMs: number;
  readonly #waitMs: number;
  readonly #pendingWindowInDays: number;
  readonly #disableTimeoutMs: number;
  #closed = false;

  constructor(client: KMSClient, ownsClient: boolean, pollMs: number, waitMs: number, pendingWindowInDays: number, disableTimeoutMs: number) {
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#pollMs = pollMs;
    this.#waitMs = waitMs;
    this.#pendingWindowInDays = pendingWindowInDays;
    this.#disableTimeoutMs = disableTimeoutMs;
  }

  // --- data keys ------------------------------------------------------------------------------

  async generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey> {
    const keyId = this.#enter(req, req?.keyId);
    return this.#generate({ operation: "GenerateDataKey", keyId }, checkContext(req?.context), req?.signal);
  }

  async wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey> {
    const keyId = this.#enter(req, req?.keyId);
    if (!(req.plaintextKey instanceof Uint8Array) || req.plaintextKey.length !== DATA_KEY_BYTES) {
      throw kmsError("INPUT_INVALID", `the data key to wrap must be ${DATA_KEY_BYTES} bytes`, `pass a ${DATA_KEY_BYTES}-byte data key`);
    }
    const context = checkContext(req?.context);
    // Encrypt's response names no key material, so the version is DescribeKey's, read BEFORE the
    // Encrypt. A rotation in between makes this record the older version while the newer one
    // wrapped the key: harmless for decryption (the blob names its own material) and only makes a
    // rotation re-wrap this envelope needlessly; the other order could record a version newer
    // than the one used, and a re-wrap meant to retire the old material would skip this envelope.
    // wrapDataKey is used by core's `rewrap` only, so the extra call is off the hot path.
    const keyVersion = versionOf((await this.#describe({ operation: "DescribeKey", keyId }, req.signal)).CurrentKeyMaterialId);
    const call = { operation: "Encrypt", keyId };
    const out = await this.#send(call, req.signal, (o) => this.#client.send(new EncryptCommand({ KeyId: keyId, Plaintext: req.plaintextKey, EncryptionContext: context }), o));
    return { wrappedKey: ciphertextOf(out.CiphertextBlob, call), keyVersion };
  }

  async unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array> {
    const keyId = this.#enter(req, req?.keyId);
    const context = checkContext(req?.context);
    const wrapped = req.wrappedKey;
    if (!(wrapped instanceof Uint8Array)) throw kmsError("INPUT_INVALID", "the wrapped key must be bytes (Uint8Array)", "pass the envelope's wrapped key");
    // No AWS ciphertext is empty or longer than this: not worth a call.
    if (wrapped.length === 0 || wrapped.length > MAX_CIPHERTEXT_BYTES) throw unwrapFailed();
    // KeyId is always sent: a blob of another key (a swapped envelope) then fails with IncorrectKeyException.
    const out = await this.#send({ operation: "Decrypt", keyId }, req.signal, (o) =>
      this.#client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: wrapped, EncryptionContext: context }), o),
    );
    const key = takeDataKey(out.Plaintext);
    if (key === undefined) throw unwrapFailed(); // it decrypted, but to something that is not a data key
    return key;
  }

  async #generate(call: AwsCall, context: Record<string, string> | undefined, signal: AbortSignal | undefined): Promise<DataKey> {
    const out = await this.#send(call, signal, (o) =>
      this.#client.send(new GenerateDataKeyCommand({ KeyId: call.keyId, KeySpec: "AES_256", EncryptionContext: context }), o),
    );
    const plaintextKey = takeDataKey(out.Plaintext);
    if (plaintextKey === undefined) {
      throw kmsError("KMS_PROVIDER_ERROR", `GenerateDataKey on ${call.keyId} returned no ${DATA_KEY_BYTES}-byte data key`, "report it with the request id");
    }
    try {
      return { plaintextKey, wrappedKey: ciphertextOf(out.CiphertextBlob, call), keyVersion: versionOf(out.KeyMaterialId) };
    } catch (error) {
      plaintextKey.fill(0);
      throw error;
    }
  }

  // --- key management -------------------------------------------------------------------------

  /**
   * DescribeKey, then ListKeyRotations for `rotatedAt`: when the current key material became
   * current (the rotation scheduler and the key-age metrics date a key's version by it, else by
   * `createdAt`). Two calls, two IAM actions: kms:DescribeKey and kms:ListKeyRotations.
   *
   * Decision: a denied ListKeyRotations fails describeKey (KMS_ACCESS_DENIED naming
   * kms:ListKeyRotations) instead of answering without `rotatedAt`. Without it the key would be
   * dated by its creation date: a key older than the cryptoperiod would look due at every scheduler
   * pass and be rotated on demand again and again (AWS caps on-demand rotations per key). A key
   * that cannot rotate at all (UnsupportedOperationException: a custom key store, say) has no
   * rotations, so `createdAt` is its current material's date and no `rotatedAt` is reported.
   */
  async describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription> {
    keyId = this.#enter(options, keyId);
    const signal = options?.signal;
    const meta = await this.#describe({ operation: "DescribeKey", keyId }, signal);
    const createdAt = dateOf(meta.CreationDate);
    const currentVersion = versionOf(meta.CurrentKeyMaterialId);
    const rotatedAt = await this.#rotatedAt(keyId, meta, currentVersion, signal);
    return {
      keyId,
      enabled: meta.KeyState === "Enabled",
      currentVersion,
      ...(createdAt ? { createdAt } : {}),
      ...(rotatedAt ? { rotatedAt } : {}),
    };
  }

  /**
   * When the current key material became current, from ListKeyRotations (completed rotations only:
   * the key's first material is not listed, so a key never rotated has none and gets undefined).
   *
   * The entry whose KeyMaterialId is DescribeKey's CurrentKeyMaterialId gives the date; when the
   * entries name no key material (or DescribeKey named none), the latest RotationDate does. AWS does
   * not document the list's order, so every page is read (up to ROTATIONS_MAX_PAGES) unless the
   * current material's entry turns up first. ListKeyRotations takes a key id or key ARN, never an
   * alias: it is sent the ARN DescribeKey returned.
   *
   * Entries that name key materials but not the current one mean the list lags DescribeKey (AWS is
   * eventually consistent, e.g. just after a rotation): the latest date listed would be an older
   * material's and make the key look older than it is, so this is a retryable KMS_PROVIDER_ERROR.
   */
  async #rotatedAt(keyId: string, meta: KeyMetadata, currentVersion: string, signal: AbortSignal | undefined): Promise<Date | undefined> {
    const keyArn = typeof meta.Arn === "string" && KEY_ARN.test(meta.Arn) ? meta.Arn : undefined;
    const target = keyArn ?? (ALIAS.test(keyId) ? undefined : keyId);
    if (target === undefined) {
      throw kmsError("KMS_PROVIDER_ERROR", `DescribeKey on ${keyId} returned no key ARN to list its rotations with`, "report it with the request id", undefined, undefined, false);
    }
    const call: AwsCall = { operation: "ListKeyRotations", keyId, ...(keyArn === undefined ? {} : { keyArn }) };
    let latest: Date | undefined;
    let namesMaterials = false;
    let marker: string | undefined;
    for (let page = 1; ; page++) {
      let out;
      try {
        out = await this.#send(call, signal, (o) =>
          this.#client.send(new ListKeyRotationsCommand({ KeyId: target, Limit: ROTATIONS_PAGE_SIZE, ...(marker === undefined ? {} : { Marker: marker }) }), o),
        );
      } catch (error) {
        // This key cannot be rotated (a custom key store, say): its material is as old as the key.
        if (cannotRotate(error)) return undefined;
        throw error;
      }
      const rotations: unknown = out.Rotations ?? [];
      if (!Array.isArray(rotations)) throw kmsError("KMS_PROVIDER_ERROR", `ListKeyRotations on ${keyId} returned no Rotations list`, "report it with the request id");
      for (const entry of rotations as { KeyMaterialId?: unknown; RotationDate?: unknown }[]) {
        const date = dateOf(entry?.RotationDate);
        if (typeof entry?.KeyMaterialId === "string" && entry.KeyMaterialId !== "") {
          namesMaterials = true;
          // The current material's own entry: its date (none for a first material, should AWS list it).
          if (currentVersion !== "" && entry.KeyMaterialId === currentVersion) return date;
        }
        if (date !== undefined && (latest === undefined || date.getTime() > latest.getTime())) latest = date;
      }
      if (out.Truncated !== true) break;
      const next = out.NextMarker;
      if (typeof next !== "string" || next === "" || next === marker || page >= ROTATIONS_MAX_PAGES) {
        throw kmsError(
          "KMS_PROVIDER_ERROR",
          page >= ROTATIONS_MAX_PAGES
            ? `ListKeyRotations on ${keyId} has more than ${ROTATIONS_MAX_PAGES} pages of rotations; the current key material's date was not in them`
            : `ListKeyRotations on ${keyId} returned a truncated page without a usable NextMarker`,
          "report it with the request id",
          undefined,
          undefined,
          false,
        );
      }
      marker = next;
    }
    if (namesMaterials && currentVersion !== "" && latest !== undefined) {
      throw kmsError(
        "KMS_PROVIDER_ERROR",
        `ListKeyRotations on ${keyId} does not list the current key material yet (AWS KMS is eventually consistent, e.g. just after a rotation)`,
        "try again in a few seconds",
        undefined,
        undefined,
        true,
      );
    }
    return latest;
  }

  /**
   * RotateKeyOnDemand, then DescribeKey until CurrentKeyMaterialId changes: AWS rotates
   * asynchronously (the emulator at once). The wait ends with the abort signal (core's timeout, which
   * must allow for it) or after `rotationWaitMs` with a non-retryable KMS_TIMEOUT: the rotation was
   * requested, and requesting another would not make it faster.
   */
  async rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult> {
    keyId = this.#enter(options, keyId);
    const signal = options?.signal;
    const call = { operation: "DescribeKey", keyId };
    const previousVersion = versionOf((await this.#describe(call, signal)).CurrentKeyMaterialId);
    await this.#send({ operation: "RotateKeyOnDemand", keyId }, signal, (o) => this.#client.send(new RotateKeyOnDemandCommand({ KeyId: keyId }), o));
    // A service that names no key material: nothing to wait for, and no version to report.
    if (previousVersion === "") return { keyId, previousVersion, currentVersion: "" };
    const deadline = Date.now() + this.#waitMs;
    for (;;) {
      const currentVersion = versionOf((await this.#describe(call, signal)).CurrentKeyMaterialId);
      if (currentVersion !== previousVersion) return { keyId, previousVersion, currentVersion };
      if (Date.now() >= deadline) {
        throw kmsError(
          "KMS_TIMEOUT",
          `key ${keyId} was rotated but its new key material did not appear within ${this.#waitMs} ms`,
          "check GetKeyRotationStatus later instead of rotating again",
          undefined,
          undefined,
          false,
        );
      }
      await pause(this.#pollMs, call, signal);
    }
  }

  /**
   * Crypto-shredding: `disable` is DisableKey (reversible: kms:EnableKey); `schedule-destruction` is
   * ScheduleKeyDeletion with `pendingWindowInDays` (cancellable until it ends, kms:CancelKeyDeletion).
   * Afterwards GenerateDataKey, Encrypt and Decrypt fail: KMS_KEY_DISABLED (DisabledException, or
   * KMSInvalidStateException "pending deletion"), KMS_KEY_NOT_FOUND once AWS has deleted the key.
   *
   * Both operations take a key id or key ARN, not an alias: an alias is resolved first by DescribeKey
   * (kms:DescribeKey), and the key it points at then is the one disabled. Returns the request id of
   * the DisableKey / ScheduleKeyDeletion call (the CloudTrail event to keep as evidence). Runs outside
   * core's resilience policy, so it brings its own deadline (`disableKeyTimeoutMs`) and never retries.
   */
  async disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult> {
    keyId = this.#enter(options, keyId);
    const mode: unknown = options?.mode;
    if (mode !== "disable" && mode !== "schedule-destruction") {
      throw kmsError(
        "INPUT_INVALID",
        `disableKey on ${keyId}: the mode must be "disable" (DisableKey) or "schedule-destruction" (ScheduleKeyDeletion)`,
        "pass one of the modes in capabilities.keyDisabling",
      );
    }
    const operation = mode === "disable" ? "DisableKey" : "ScheduleKeyDeletion";
    return this.#withDeadline(operation, keyId, options?.signal, async (signal) => {
      let target = keyId;
      let keyArn: string | undefined;
      if (ALIAS.test(keyId)) {
        const found = (await this.#describe({ operation: "DescribeKey", keyId }, signal)).Arn;
        if (typeof found !== "string" || !KEY_ARN.test(found)) {
          throw kmsError("KMS_PROVIDER_ERROR", `DescribeKey on ${keyId} returned no key ARN to ${operation}`, "report it with the request id", undefined, undefined, false);
        }
        target = keyArn = found;
      }
      const call: AwsCall = { operation, keyId, ...(keyArn === undefined ? {} : { keyArn }) };
      const out = await this.#send(call, signal, (o) =>
        mode === "disable"
          ? this.#client.send(new DisableKeyCommand({ KeyId: target }), o)
          : this.#client.send(new ScheduleKeyDeletionCommand({ KeyId: target, PendingWindowInDays: this.#pendingWindowInDays }), o),
      );
      const requestId = out.$metadata?.requestId;
      return typeof requestId === "string" && REQUEST_ID.test(requestId) ? { requestId } : {};
    });
  }

  async checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth> {
    this.#enter(options);
    const unhealthy = (detail: string): ProviderHealth => ({ healthy: false, insecure: false, detail });
    if (!Array.isArray(keyIds)) return unhealthy("invalid key list (INPUT_INVALID)");
    const unique = [...new Set(keyIds)];
    for (const keyId of unique) {
      if (awsKeyIdProblem(keyId) !== undefined) return unhealthy("invalid key id (INPUT_INVALID)");
      try {
        const state = (await this.#describe({ operation: "DescribeKey", keyId }, options?.signal)).KeyState;
        if (state !== "Enabled") return unhealthy(`key ${shortKeyId(keyId)} is ${typeof state === "string" && KEY_STATE.test(state) ? state : "not Enabled"} (KMS_KEY_DISABLED)`);
      } catch (error) {
        return unhealthy(`key ${shortKeyId(keyId)}: ${isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR"}`);
      }
    }
    return { healthy: true, insecure: false, detail: unique.length === 0 ? "no keys to check" : `${unique.length} key(s) enabled` };
  }

  /**
   * One check per IAM action, each by a real call with harmless input: DescribeKey, GenerateDataKey
   * (a data key that is thrown away), Encrypt (32 random bytes) and Decrypt of what one of those two
   * produced, compared with what went in. When neither produced a ciphertext, kms:Decrypt is reported
   * as failing ("not checked"), never as passing: it could not be verified.
   */
  async validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]> {
    keyId = this.#enter(options, keyId);
    const signal = options?.signal;
    let arn: string | undefined;
    const check = async (permission: string, fn: () => Promise<void>): Promise<PermissionCheck> => {
      try {
        await fn();
        return { permission, ok: true, docsUrl: AWS_PERMISSIONS_DOCS_URL };
      } catch (raw) {
        const error = isKmsError(raw) ? raw : kmsError("KMS_PROVIDER_ERROR", `${permission} check failed unexpectedly`, "see the error's cause", raw);
        const details = detailsOf(error);
        const remediation = `${permission} on ${details?.resource ?? arn ?? keyId}: ${details?.fix ?? "see the error"}`;
        return { permission, ok: false, remediation, docsUrl: AWS_PERMISSIONS_DOCS_URL, error };
      }
    };
    const context = { ...PERMISSION_CHECK_CONTEXT };
    /** A ciphertext to decrypt and the plaintext it must give back. */
    let sample: { ciphertext: Uint8Array; plaintext: Uint8Array } | undefined;
    const plaintexts: Uint8Array[] = []; // zeroed whatever happens
    try {
      // One step per action of AWS_RUNTIME_PERMISSIONS (the Record type keeps the two in step), run in its order.
      const steps: Record<AwsRuntimePermission, () => Promise<void>> = {
        "kms:DescribeKey": async () => {
          const found = (await this.#describe({ operation: "DescribeKey", keyId }, signal)).Arn;
          if (typeof found === "string" && KEY_ARN.test(found)) arn = found;
        },
        "kms:ListKeyRotations": async () => {
          // ListKeyRotations takes a key id or ARN, never an alias: an alias needs DescribeKey's answer first.
          const target = arn ?? (ALIAS.test(keyId) ? undefined : keyId);
          if (target === undefined) {
            throw kmsError(
              "KMS_PROVIDER_ERROR",
              "kms:ListKeyRotations was not checked: the alias could not be resolved to a key ARN without kms:DescribeKey",
              "allow kms:DescribeKey too, then validate again to check kms:ListKeyRotations",
            );
          }
          const call = { operation: "ListKeyRotations", keyId, keyArn: arn };
          await this.#send(call, signal, (o) => this.#client.send(new ListKeyRotationsCommand({ KeyId: target, Limit: 1 }), o)).catch((error: unknown) => {
            // A key that cannot rotate (a custom key store) answers so; the permission is there.
            if (cannotRotate(error)) return;
            throw error;
          });
        },
        "kms:GenerateDataKey": async () => {
          const dk = await this.#generate({ operation: "GenerateDataKey", keyId, keyArn: arn }, context, signal);
          plaintexts.push(dk.plaintextKey);
          sample = { ciphertext: dk.wrappedKey, plaintext: dk.plaintextKey };
        },
        "kms:Encrypt": async () => {
          const plaintext = randomBytes(DATA_KEY_BYTES);
          plaintexts.push(plaintext);
          const call = { operation: "Encrypt", keyId, keyArn: arn };
          const out = await this.#send(call, signal, (o) => this.#client.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: context }), o));
          sample ??= { ciphertext: ciphertextOf(out.CiphertextBlob, call), plaintext };
        },
        "kms:Decrypt": async () => {
          if (sample === undefined) {
            throw kmsError(
              "KMS_PROVIDER_ERROR",
              "kms:Decrypt was not checked: neither kms:GenerateDataKey nor kms:Encrypt produced a ciphertext to decrypt",
              "allow kms:GenerateDataKey (or kms:Encrypt) too, then validate again to check kms:Decrypt",
            );
          }
          const { ciphertext, plaintext } = sample;
          const call = { operation: "Decrypt", keyId, keyArn: arn };
          const out = await this.#send(call, signal, (o) => this.#client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: ciphertext, EncryptionContext: context }), o));
          const back = takeDataKey(out.Plaintext);
          const same = back !== undefined && timingSafeEqual(back, plaintext);
          back?.fill(0);
          if (!same) throw kmsError("KMS_PROVIDER_ERROR", "Decrypt returned other bytes than were encrypted", "report it with the request id");
        },
      };
      const checks: PermissionCheck[] = [];
      for (const permission of AWS_RUNTIME_PERMISSIONS) checks.push(await check(permission, steps[permission]));
      return checks;
    } finally {
      for (const plaintext of plaintexts) plaintext.fill(0);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsClient) this.#client.destroy(); // closes its sockets; an injected client is its owner's
  }

  // --- helpers --------------------------------------------------------------------------------

  /** Refuses calls after close(), after an abort, and key ids AWS could never resolve. */
  #enter(options: Cancellable | undefined, keyId?: unknown): string {
    if (this.#closed) throw kmsError("KMS_CLOSED", "this provider has been closed", "create a new provider");
    const signal = options?.signal;
    if (signal?.aborted) throw mapAwsError(undefined, { operation: "the call", keyId: "" }, signal);
    if (keyId === undefined) return "";
    if (typeof keyId !== "string" || awsKeyIdProblem(keyId) !== undefined) throw kmsError("INPUT_INVALID", AWS_KEY_ID_RULE, "use one of these forms");
    return keyId;
  }

  async #describe(call: AwsCall, signal: AbortSignal | undefined): Promise<KeyMetadata> {
    const out = await this.#send(call, signal, (o) => this.#client.send(new DescribeKeyCommand({ KeyId: call.keyId }), o));
    const meta = out.KeyMetadata;
    if (typeof meta !== "object" || meta === null) throw kmsError("KMS_PROVIDER_ERROR", `DescribeKey on ${call.keyId} returned no KeyMetadata`, "report it with the request id");
    return meta;
  }

  /**
   * Runs `fn` with a signal that aborts at the caller's signal or after `disableKeyTimeoutMs`, with a
   * non-retryable KMS_TIMEOUT: the request may have reached AWS, so the key's state must be read
   * before anything is repeated.
   */
  async #withDeadline<T>(operation: string, keyId: string, outer: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer?.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => {
      controller.abort(
        kmsError(
          "KMS_TIMEOUT",
          `${operation} on ${keyId} did not complete within ${this.#disableTimeoutMs} ms: ${DEADLINE_FIX}`,
          DEADLINE_FIX,
          undefined,
          undefined,
          false,
        ),
      );
    }, this.#disableTimeoutMs);
    try {
      return await fn(controller.signal);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    }
  }

  /** One SDK call with core's signal; every rejection is mapped. */
  async #send<T>(call: AwsCall, signal: AbortSignal | undefined, send: (options: { abortSignal?: AbortSignal }) => Promise<T>): Promise<T> {
    try {
      return await send(signal === undefined ? {} : { abortSignal: signal });
    } catch (error) {
      throw mapAwsError(error, call, signal);
    }
  }
}

/** The context as a plain object of strings (undefined when empty); INPUT_INVALID otherwise. */
function checkContext(context: unknown): Record<string, string> | undefined {
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    throw kmsError("INPUT_INVALID", "the encryption context must be an object of strings", "pass an object of strings");
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(context)) {
    if (typeof v !== "string") throw kmsError("INPUT_INVALID", "encryption context values must be strings", "pass an object of strings");
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true }); // "__proto__" is just a key
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

function ciphertextOf(blob: unknown, call: AwsCall): Uint8Array {
  if (blob instanceof Uint8Array && blob.length > 0 && blob.length <= MAX_CIPHERTEXT_BYTES) return blob;
  throw kmsError("KMS_PROVIDER_ERROR", `${call.operation} on ${call.keyId} returned no usable CiphertextBlob`, "report it with the request id");
}

/** ListKeyRotations' answer for a key that cannot rotate (a custom key store, say): the call was allowed. */
function cannotRotate(error: unknown): boolean {
  return isKmsError(error) && (error.cause as { name?: unknown } | undefined)?.name === "UnsupportedOperationException";
}

/** A valid Date, or undefined. */
function dateOf(value: unknown): Date | undefined {
  return value instanceof Date && !Number.isNaN(value.getTime()) ? value : undefined;
}

function versionOf(materialId: unknown): string {
  if (materialId === undefined || materialId === null) return "";
  if (typeof materialId === "string" && KEY_VERSION.test(materialId)) return materialId;
  throw kmsError("KMS_PROVIDER_ERROR", "AWS KMS returned a KeyMaterialId this provider cannot record", "report it with the request id");
}

/** Waits `ms`, or rejects (mapped) when the signal aborts. */
function pause(ms: number, call: AwsCall, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(mapAwsError(undefined, call, signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(mapAwsError(undefined, call, signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
