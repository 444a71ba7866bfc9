/**
 * The `gcp-kms` provider: data keys drawn locally (`crypto.randomBytes(32)`) and wrapped by Cloud
 * KMS `Encrypt` under a CryptoKey's primary version, through the official `@google-cloud/kms` client
 * over gRPC, with the encryption context bound as additional authenticated data.
 *
 * Rules kept here (docs/WRITING_A_PROVIDER.md): one client per provider instance (shared by every
 * tenant, created on first use, closed by `close()`); every call has a deadline and makes one attempt
 * (`{ timeout, retry: null }`: core's policy retries); core's abort signal cancels the call; every
 * error goes through `mapGcpError`. Every request carries CRC32C checksums and every response is
 * checked (Google's data-integrity guidelines): a `verified_*` flag that is not true, a checksum that
 * does not match, or a version of another key is `KMS_INTEGRITY_ERROR` (retryable), and the bytes are
 * never used (a plaintext is zeroed).
 *
 * Key versions are the CryptoKeyVersion ids ("1", "2"…) from the Encrypt response's `name`. Decrypt
 * needs no version: the ciphertext names its own.
 */
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { KeyManagementServiceClient } from "@google-cloud/kms";
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
  contextBytes,
  crc32c,
  isKmsError,
  shortKeyId,
  takeDataKey,
} from "@kms/core";
import { GCP_RUNTIME_GRANTS, GCP_RUNTIME_PERMISSIONS, type GcpCall, PROVIDER_ID, fixOf, grantFix, integrityFailed, kmsError, mapGcpError, unwrapFailed } from "./errors";
import { DEFAULT_TIMEOUT_MS, GCP_KEY_ID_RULE, type GcpKmsSettings, gcpKeyIdProblem, parseGcpKmsSettings } from "./settings";

/** Where each failing permission check points: the roles this provider needs. */
export const GCP_PERMISSIONS_DOCS_URL = `${DOCS_BASE_URL}docs/setup/GCP_KMS_SETUP.md#permissions`;

/** The client's constructor options (`new KeyManagementServiceClient(options)`). */
export type GcpClientOptions = NonNullable<ConstructorParameters<typeof KeyManagementServiceClient>[0]>;

export interface GcpKmsProviderOptions extends Partial<GcpKmsSettings> {
  /**
   * A client to use instead of one built here (the settings above, but `timeoutMs`, must then be
   * omitted). The caller owns it: `close()` leaves it open.
   */
  readonly client?: KeyManagementServiceClient;
  /** Options of the client built here, over those from the settings (e.g. an emulator's `clientOptions()`). */
  readonly clientOptions?: GcpClientOptions;
}

/** The Cloud KMS provider, with `generateDataKey` and `disableKey` (always present). */
export interface GcpKmsProvider extends KmsProvider {
  generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey>;
  disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult>;
}

/** The `gcp-kms` provider for configuration-driven set-up: `createKms({ registry: [gcpKms], config })`. */
export const gcpKms: ProviderDefinition<GcpKmsSettings> = {
  id: PROVIDER_ID,
  packageName: "@kms/gcp",
  keyIdProblem: gcpKeyIdProblem,
  parseSettings: parseGcpKmsSettings,
  create: (settings) => gcpKmsProvider(settings),
};

/** The largest plaintext and AAD Cloud KMS accepts, and so the largest AAD this provider builds. */
const MAX_DATA_BYTES = 64 * 1024;
/** Cloud KMS ciphertexts of a 32-byte key are far smaller; anything longer is not worth a call. */
const MAX_CIPHERTEXT_BYTES = 64 * 1024 + 1024;
const VERSION_ID = /^[1-9][0-9]{0,9}$/;
/** ListCryptoKeyVersions' largest page, and a bound on the pages read (a key has far fewer versions). */
const VERSION_PAGE_SIZE = 1000;
const MAX_VERSION_PAGES = 100;
const CONTEXT_LABEL = "kms-gcp-aad-v1";

/** Creates the provider; throws a `KmsConfigError` listing every problem with the options. No network. */
export function gcpKmsProvider(options: GcpKmsProviderOptions = {}): GcpKmsProvider {
  const { client, clientOptions, ...settings } = options ?? {};
  const parsed = parseGcpKmsSettings(settings);
  const issues = parsed.ok ? [] : parsed.issues.map((i) => configIssue(i.path, "KMS_CONFIG_INVALID", i.message));
  if (client !== undefined) {
    if (typeof client !== "object" || client === null || typeof (client as { encrypt?: unknown }).encrypt !== "function") {
      issues.push(configIssue("client", "KMS_CONFIG_INVALID", "must be a KeyManagementServiceClient from @google-cloud/kms"));
    }
    const given = Object.keys(settings).filter((k) => k !== "timeoutMs" && settings[k as keyof typeof settings] !== undefined);
    if (given.length > 0 || clientOptions !== undefined) {
      issues.push(configIssue(given[0] ?? "clientOptions", "KMS_CONFIG_INVALID", "give either client or the settings to build one (apiEndpoint, port, credentials…), not both"));
    }
  }
  if (issues.length > 0) throw new KmsConfigError(issues);
  const resolved = parsed.ok ? parsed.settings : {};
  const timeoutMs = resolved.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return client !== undefined ? new GcpKms(() => client, false, timeoutMs) : new GcpKms(() => new KeyManagementServiceClient({ ...clientOptionsFor(resolved), ...clientOptions }), true, timeoutMs);
}

function clientOptionsFor(settings: GcpKmsSettings): GcpClientOptions {
  const { apiEndpoint, port, keyFilename, credentials, emulator } = settings;
  return {
    ...(apiEndpoint === undefined ? {} : { apiEndpoint }),
    ...(port === undefined ? {} : { port }),
    ...(keyFilename === undefined ? {} : { keyFilename }),
    ...(credentials === undefined ? {} : { credentials: { ...credentials } }),
    // TLS trusting the emulator's CA, without credentials: `sslCreds` skips auth (gax uses them as
    // they are, with no call credentials), and an explicit universe domain skips the metadata-server
    // probe the client would otherwise make.
    ...(emulator === undefined ? {} : { sslCreds: emulatorChannel(emulator.caCert), universeDomain: "googleapis.com" }),
  };
}

/**
 * TLS channel credentials trusting `caPem` only (not the public roots), from the grpc-js instance the
 * client uses (credentials from another copy of grpc-js are refused). `google-gax` is the client's own
 * dependency, so it is resolved from it.
 */
function emulatorChannel(caPem: string): GcpClientOptions["sslCreds"] {
  const gax = createRequire(require.resolve("@google-cloud/kms"))("google-gax") as { grpc: { credentials: { createSsl(rootCerts: Buffer): GcpClientOptions["sslCreds"] } } };
  return gax.grpc.credentials.createSsl(Buffer.from(caPem));
}

class GcpKms implements GcpKmsProvider {
  readonly id = PROVIDER_ID;
  readonly capabilities: ProviderCapabilities = Object.freeze({
    encryptionContext: true,
    rotation: true,
    generatesDataKeys: true,
    insecure: false,
    keyDisabling: Object.freeze(["disable", "schedule-destruction"] as const),
  });
  readonly #newClient: () => KeyManagementServiceClient;
  readonly #ownsClient: boolean;
  readonly #timeoutMs: number;
  #client: KeyManagementServiceClient | undefined;
  #closed = false;

  constructor(newClient: () => KeyManagementServiceClient, ownsClient: boolean, timeoutMs: number) {
    this.#newClient = newClient;
    this.#ownsClient = ownsClient;
    this.#timeoutMs = timeoutMs;
  }

  // --- data keys ------------------------------------------------------------------------------

  async generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey> {
    const keyId = this.#enter(req, req?.keyId);
    const aad = encodeContext(req?.context);
    const plaintextKey = randomBytes(DATA_KEY_BYTES);
    try {
      return { plaintextKey, ...(await this.#encrypt(keyId, plaintextKey, aad, req.signal)) };
    } catch (error) {
      plaintextKey.fill(0);
      throw error;
    }
  }

  async wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey> {
    const keyId = this.#enter(req, req?.keyId);
    if (!(req.plaintextKey instanceof Uint8Array) || req.plaintextKey.length !== DATA_KEY_BYTES) {
      throw kmsError("INPUT_INVALID", `the data key to wrap must be ${DATA_KEY_BYTES} bytes`, `pass a ${DATA_KEY_BYTES}-byte data key`);
    }
    return this.#encrypt(keyId, req.plaintextKey, encodeContext(req?.context), req.signal);
  }

  async unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array> {
    const keyId = this.#enter(req, req?.keyId);
    const aad = encodeContext(req?.context);
    const wrapped = req.wrappedKey;
    if (!(wrapped instanceof Uint8Array)) throw kmsError("INPUT_INVALID", "the wrapped key must be bytes (Uint8Array)", "pass the envelope's wrapped key");
    if (wrapped.length === 0 || wrapped.length > MAX_CIPHERTEXT_BYTES) throw unwrapFailed(); // no Cloud KMS ciphertext: not worth a call
    const call = { operation: "Decrypt", keyId };
    const [out] = await this.#call(call, req.signal, (client, options) =>
      client.decrypt(
        {
          name: keyId,
          ciphertext: wrapped,
          ciphertextCrc32c: { value: crc32c(wrapped) },
          additionalAuthenticatedData: aad,
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        options,
      ),
    );
    const plaintext = out.plaintext;
    if (!(plaintext instanceof Uint8Array)) throw integrityFailed(call, "no plaintext");
    if (!checksumMatches(out.plaintextCrc32c, plaintext)) {
      plaintext.fill(0);
      throw integrityFailed(call, "plaintext CRC32C");
    }
    const key = takeDataKey(plaintext);
    if (key === undefined) throw unwrapFailed(); // it decrypted, but to something that is not a data key
    return key;
  }

  /** Encrypt with checksums both ways; the version from the response's name, which must be one of `keyId`'s. */
  async #encrypt(keyId: string, plaintext: Uint8Array, aad: Buffer, signal: AbortSignal | undefined): Promise<WrappedDataKey> {
    const call = { operation: "Encrypt", keyId };
    const [out] = await this.#call(call, signal, (client, options) =>
      client.encrypt(
        {
          name: keyId,
          plaintext,
          plaintextCrc32c: { value: crc32c(plaintext) },
          additionalAuthenticatedData: aad,
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        options,
      ),
    );
    if (out.verifiedPlaintextCrc32c !== true) throw integrityFailed(call, "plaintext CRC32C not verified by Cloud KMS");
    if (out.verifiedAdditionalAuthenticatedDataCrc32c !== true) throw integrityFailed(call, "additional authenticated data CRC32C not verified by Cloud KMS");
    const ciphertext = out.ciphertext;
    if (!(ciphertext instanceof Uint8Array) || ciphertext.length === 0 || ciphertext.length > MAX_CIPHERTEXT_BYTES) throw integrityFailed(call, "no usable ciphertext");
    if (!checksumMatches(out.ciphertextCrc32c, ciphertext)) throw integrityFailed(call, "ciphertext CRC32C");
    const keyVersion = versionOf(out.name, keyId);
    if (keyVersion === undefined) throw integrityFailed(call, "the response names a version of another key");
    return { wrappedKey: Buffer.from(ciphertext), keyVersion };
  }

  // --- key management -------------------------------------------------------------------------

  async describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription> {
    keyId = this.#enter(options, keyId);
    const key = await this.#getKey(keyId, options?.signal);
    const primary = key.primary;
    const createdAt = dateOf(key.createTime);
    const rotatedAt = dateOf(primary?.createTime);
    return {
      keyId,
      enabled: primary?.state === "ENABLED",
      currentVersion: versionOf(primary?.name, keyId) ?? "",
      ...(createdAt ? { createdAt } : {}),
      ...(rotatedAt ? { rotatedAt } : {}),
    };
  }

  /** A new version (CreateCryptoKeyVersion), made primary (UpdateCryptoKeyPrimaryVersion): both synchronous on Cloud KMS for software keys. */
  async rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult> {
    keyId = this.#enter(options, keyId);
    const signal = options?.signal;
    const previousVersion = versionOf((await this.#getKey(keyId, signal)).primary?.name, keyId) ?? "";
    const createCall = { operation: "CreateCryptoKeyVersion", keyId };
    const [created] = await this.#call(createCall, signal, (client, o) => client.createCryptoKeyVersion({ parent: keyId, cryptoKeyVersion: {} }, o));
    const currentVersion = versionOf(created.name, keyId);
    if (currentVersion === undefined) throw kmsError("KMS_PROVIDER_ERROR", `CreateCryptoKeyVersion on ${keyId} returned no version of this key`, "report it");
    const updateCall = { operation: "UpdateCryptoKeyPrimaryVersion", keyId };
    await this.#call(updateCall, signal, (client, o) => client.updateCryptoKeyPrimaryVersion({ name: keyId, cryptoKeyVersionId: currentVersion }, o));
    return { keyId, previousVersion, currentVersion };
  }

  /**
   * Takes every version of the key out of use (crypto-shredding). Cloud KMS has no key-level switch:
   * the versions are listed (`ListCryptoKeyVersions`, paged), then
   * - `disable`: each ENABLED version → DISABLED (`UpdateCryptoKeyVersion`, `update_mask: state`);
   *   reversible (enable the versions again).
   * - `schedule-destruction`: `DestroyCryptoKeyVersion` on each version not already DESTROYED or
   *   DESTROY_SCHEDULED; Google destroys the material after the key's `destroy_scheduled_duration`
   *   (30 days by default), until when `RestoreCryptoKeyVersion` can undo it.
   * One call per version that changes, each with its own deadline; versions already in the wanted
   * state are skipped, so a call that failed half-way is finished by calling again. gRPC has no
   * request id (Cloud Audit Logs record the calls, by key version): the result is `{}`.
   */
  async disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult> {
    keyId = this.#enter(options, keyId);
    const mode: unknown = options?.mode;
    if (mode !== "disable" && mode !== "schedule-destruction") {
      const shown = typeof mode === "string" && /^[a-z-]{1,32}$/.test(mode) ? `"${mode}"` : "this mode";
      throw kmsError("INPUT_INVALID", `disableKey: ${shown} is not a mode Cloud KMS supports (disable, schedule-destruction)`, "use mode disable or schedule-destruction");
    }
    const signal = options.signal;
    const versions = await this.#listVersions(keyId, signal);
    for (const { name, state } of versions) {
      if (mode === "disable") {
        if (state !== "ENABLED") continue;
        const call = { operation: "UpdateCryptoKeyVersion", keyId };
        await this.#call(call, signal, (client, o) => client.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "DISABLED" }, updateMask: { paths: ["state"] } }, o));
      } else {
        if (state === "DESTROYED" || state === "DESTROY_SCHEDULED") continue;
        const call = { operation: "DestroyCryptoKeyVersion", keyId };
        await this.#call(call, signal, (client, o) => client.destroyCryptoKeyVersion({ name }, o));
      }
    }
    return {};
  }

  /** Every version of the key (name and state), page by page, each page a call with its deadline. */
  async #listVersions(keyId: string, signal: AbortSignal | undefined): Promise<{ name: string; state: string }[]> {
    const call = { operation: "ListCryptoKeyVersions", keyId };
    const versions: { name: string; state: string }[] = [];
    let pageToken = "";
    for (let page = 0; page < MAX_VERSION_PAGES; page++) {
      const [, , response] = await this.#call(call, signal, (client, o) =>
        client.listCryptoKeyVersions({ parent: keyId, pageSize: VERSION_PAGE_SIZE, pageToken }, { ...o, autoPaginate: false }),
      );
      for (const version of response?.cryptoKeyVersions ?? []) {
        if (versionOf(version.name, keyId) === undefined) throw kmsError("KMS_PROVIDER_ERROR", `ListCryptoKeyVersions on ${keyId} returned a version of another key`, "report it");
        versions.push({ name: version.name as string, state: typeof version.state === "string" ? version.state : String(version.state) });
      }
      pageToken = typeof response?.nextPageToken === "string" ? response.nextPageToken : "";
      if (pageToken === "") return versions;
    }
    throw kmsError("KMS_PROVIDER_ERROR", `ListCryptoKeyVersions on ${keyId} did not end after ${MAX_VERSION_PAGES} pages`, "report it");
  }

  async checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth> {
    this.#enter(options);
    const unhealthy = (detail: string): ProviderHealth => ({ healthy: false, insecure: false, detail });
    if (!Array.isArray(keyIds)) return unhealthy("invalid key list (INPUT_INVALID)");
    const unique = [...new Set(keyIds)];
    for (const keyId of unique) {
      if (gcpKeyIdProblem(keyId) !== undefined) return unhealthy("invalid key id (INPUT_INVALID)");
      try {
        const state = (await this.#getKey(keyId, options?.signal)).primary?.state;
        if (state !== "ENABLED") return unhealthy(`key ${shortKeyId(keyId)}: primary version ${typeof state === "string" && /^[A-Z_]{1,32}$/.test(state) ? state : "missing"} (KMS_KEY_DISABLED)`);
      } catch (error) {
        return unhealthy(`key ${shortKeyId(keyId)}: ${isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR"}`);
      }
    }
    return { healthy: true, insecure: false, detail: unique.length === 0 ? "no keys to check" : `${unique.length} key(s) enabled` };
  }

  /**
   * One `TestIamPermissions` call on the key (no side effects, nothing encrypted), one check per
   * permission the provider uses. When the call itself fails, every check fails with its error.
   */
  async validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]> {
    keyId = this.#enter(options, keyId);
    let held: ReadonlySet<string>;
    try {
      const call = { operation: "TestIamPermissions", keyId };
      const request = { resource: keyId, permissions: [...GCP_RUNTIME_PERMISSIONS] } as unknown as Parameters<KeyManagementServiceClient["testIamPermissions"]>[0];
      const [out] = await this.#call(call, options?.signal, (client, o) => client.testIamPermissions(request, o));
      held = new Set((out?.permissions ?? []).filter((p): p is string => typeof p === "string"));
    } catch (raw) {
      const error = isKmsError(raw) ? raw : kmsError("KMS_PROVIDER_ERROR", "TestIamPermissions failed unexpectedly", "see the error's cause", raw);
      const fix = fixOf(error) ?? "see the error";
      return GCP_RUNTIME_GRANTS.map(({ permission }) => ({ permission, ok: false, remediation: `${permission} on ${keyId} could not be checked: ${fix}`, docsUrl: GCP_PERMISSIONS_DOCS_URL, error }));
    }
    return GCP_RUNTIME_GRANTS.map(({ permission, role }) =>
      held.has(permission)
        ? { permission, ok: true, docsUrl: GCP_PERMISSIONS_DOCS_URL }
        : { permission, ok: false, remediation: `${permission} is missing: ${grantFix(permission, role, keyId)}`, docsUrl: GCP_PERMISSIONS_DOCS_URL },
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    this.#client = undefined;
    if (this.#ownsClient && client !== undefined) await client.close(); // its channels; an injected client is its owner's
  }

  // --- helpers --------------------------------------------------------------------------------

  /** Refuses calls after close(), after an abort, and key ids Cloud KMS could never resolve. */
  #enter(options: Cancellable | undefined, keyId?: unknown): string {
    if (this.#closed) throw kmsError("KMS_CLOSED", "this provider has been closed", "create a new provider");
    const signal = options?.signal;
    if (signal?.aborted) throw mapGcpError(undefined, { operation: "the call", keyId: "" }, signal);
    if (keyId === undefined) return "";
    if (typeof keyId !== "string" || gcpKeyIdProblem(keyId) !== undefined) throw kmsError("INPUT_INVALID", GCP_KEY_ID_RULE, "use a full CryptoKey name");
    return keyId;
  }

  async #getKey(keyId: string, signal: AbortSignal | undefined) {
    const [key] = await this.#call({ operation: "GetCryptoKey", keyId }, signal, (client, o) => client.getCryptoKey({ name: keyId }, o));
    return key;
  }

  /**
   * One client call: a deadline, one attempt (the client's own retries would multiply core's), core's
   * signal cancelling it on the wire, and every rejection mapped.
   */
  async #call<T>(call: GcpCall, signal: AbortSignal | undefined, send: (client: KeyManagementServiceClient, options: CallOptions) => Promise<T>): Promise<T> {
    try {
      this.#client ??= this.#newClient();
      return await send(this.#client, {
        timeout: this.#timeoutMs,
        retry: null,
        ...(signal === undefined ? {} : { otherArgs: { options: { interceptors: [cancelledBy(signal)] } } }),
      });
    } catch (error) {
      throw mapGcpError(error, call, signal);
    }
  }
}

/** Per-call options: `otherArgs.options` are the gRPC call's own options. */
interface CallOptions {
  timeout: number;
  retry: null;
  autoPaginate?: false;
  otherArgs?: { options: { interceptors: unknown[] } };
}

/** The part of a gRPC call an interceptor sees that matters here. */
interface InterceptedCall {
  cancelWithStatus(code: number, details: string): void;
}

/**
 * A gRPC interceptor that cancels the call when `signal` aborts (the client's promise has no cancel
 * of its own). gRPC status 1 is CANCELLED; `mapGcpError` then returns the signal's reason.
 */
function cancelledBy(signal: AbortSignal) {
  return (options: unknown, nextCall: (options: unknown) => InterceptedCall): InterceptedCall => {
    const grpcCall = nextCall(options);
    const cancel = () => grpcCall.cancelWithStatus(1, "cancelled by the caller");
    if (signal.aborted) cancel();
    else signal.addEventListener("abort", cancel, { once: true });
    return grpcCall;
  };
}

/**
 * The encryption context as Cloud KMS additional authenticated data: core's canonical `contextBytes`
 * under this provider's label (the same pairs in any order give the same bytes; different pairs never do).
 */
export function encodeContext(context: EncryptionContext): Buffer {
  const aad = contextBytes(CONTEXT_LABEL, context, PROVIDER_ID);
  if (aad.length > MAX_DATA_BYTES) throw kmsError("INPUT_INVALID", `the encryption context is over Cloud KMS's ${MAX_DATA_BYTES}-byte limit`, "use a smaller encryption context");
  return aad;
}

/** Whether a response's Int64Value checksum is present and is the CRC32C of `bytes`. */
function checksumMatches(wrapper: { value?: unknown } | null | undefined, bytes: Uint8Array): boolean {
  const value = wrapper?.value;
  return (typeof value === "string" || typeof value === "number") && Number(value) === crc32c(bytes);
}

/** The version id of `name` when it is `<keyId>/cryptoKeyVersions/<id>`, else undefined. */
function versionOf(name: unknown, keyId: string): string | undefined {
  const prefix = `${keyId}/cryptoKeyVersions/`;
  if (typeof name !== "string" || !name.startsWith(prefix)) return undefined;
  const id = name.slice(prefix.length);
  return VERSION_ID.test(id) ? id : undefined;
}

function dateOf(timestamp: { seconds?: unknown; nanos?: unknown } | null | undefined): Date | undefined {
  const seconds = Number(timestamp?.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined;
  const nanos = Number(timestamp?.nanos ?? 0);
  return new Date(seconds * 1000 + (Number.isFinite(nanos) ? Math.floor(nanos / 1e6) : 0));
}

