/**
 * The `azure-key-vault` provider: data keys drawn locally by core (32 random bytes) and wrapped with
 * the tenant's Key Vault key (`WrapKey` / `UnwrapKey`, RSA-OAEP-256 by default, A256KW for Managed
 * HSM `oct-HSM` keys) through the official `@azure/keyvault-keys`.
 *
 * Rules kept here (docs/WRITING_A_PROVIDER.md): the SDK makes one attempt per call (`maxRetries: 0`;
 * core retries, honouring `Retry-After`), every call has a deadline (`timeoutMs`, and core's signal),
 * every SDK error goes through `mapAzureError`, every response is checked before use, and unwrapped
 * keys are copied into memory of their own and the SDK's copy zeroed.
 *
 * Clients: one `KeyClient` and one https agent (connection pool, trusted `ca`) per provider, shared
 * by all tenants; a `CryptographyClient` per key and version, created lazily and kept in a bounded
 * map. Each is built from a `KeyVaultKey` without key material, which makes the SDK skip its initial
 * GET of the key and do every operation remotely: a new client costs one 401 challenge, then one
 * request per operation (README "Call counts").
 *
 * Encryption context: RSA-OAEP and AES-KW take no AAD, so Key Vault cannot bind it
 * (`capabilities.encryptionContext: false`); core's envelope binds tenant and context itself (its
 * payload AAD and key-section HMAC), so an envelope moved to another tenant or context still fails.
 */
import { Agent } from "node:https";
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenCredential } from "@azure/core-auth";
import { CryptographyClient, type KeyClientOptions, KeyClient, type KeyVaultKey } from "@azure/keyvault-keys";
import {
  type Cancellable,
  DATA_KEY_BYTES,
  DOCS_BASE_URL,
  type DisableKeyOptions,
  type DisableKeyResult,
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
  isKmsError,
  takeDataKey,
  shortKeyId,
} from "@kms/core";
import { ACCESS, AZURE_RUNTIME_OPERATIONS, type AzureCall, type AzureOperation, type AzureRuntimeOperation, PROVIDER_ID, fixOf, kmsError, mapAzureError, unwrapFailed } from "./errors";
import { AZURE_KEY_ID_RULE, type AzureKeyVaultSettings, type AzureWrapAlgorithm, DEFAULT_TIMEOUT_MS, azureKeyIdProblem, parseAzureKeyId, parseAzureKeyVaultSettings } from "./settings";

/** Where each failing permission check points. */
export const AZURE_PERMISSIONS_DOCS_URL = `${DOCS_BASE_URL}docs/setup/AZURE_KEY_VAULT_SETUP.md#permissions`;

/** How many CryptographyClients (key × version) a provider keeps; the least recently used goes first. */
export const MAX_CRYPTOGRAPHY_CLIENTS = 1000;

/** No Key Vault key wraps 32 bytes into more than this (RSA 4096: 512 bytes). */
const MAX_WRAPPED_BYTES = 1024;
const VERSION = /^[0-9A-Za-z]{1,64}$/;
/** A bound on the pages of versions read (25 a page: far more versions than a key has). */
const MAX_VERSION_PAGES = 1000;
/** Key Vault's `x-ms-request-id` (a GUID), as returned by `disableKey`. */
const REQUEST_ID = /^[A-Za-z0-9-]{1,128}$/;

export interface AzureKeyVaultProviderOptions extends AzureKeyVaultSettings {
  /** Who the provider authenticates as: `new DefaultAzureCredential()` from `@azure/identity` 4.x, usually. */
  readonly credential: TokenCredential;
}

/**
 * The `azure-key-vault` provider for configuration-driven set-up:
 * `createKms({ registry: [azureKeyVault()], config })`, the settings coming from
 * `providers["azure-key-vault"]` (a file cannot hold a credential). Without `credential`, each provider
 * created authenticates with its own `new DefaultAzureCredential()` from `@azure/identity`, made in
 * `create` (core calls it after validating the configuration, which stays network-free), never at
 * import: `@azure/identity` is loaded then, so registering the definition costs nothing where Azure is
 * not configured.
 */
export function azureKeyVault(options: { readonly credential?: TokenCredential } = {}): ProviderDefinition<AzureKeyVaultSettings> {
  const given = options?.credential;
  if (given !== undefined && !isCredential(given)) throw new KmsConfigError([configIssue("credential", "KMS_CONFIG_INVALID", "must be a TokenCredential (an object with getToken)")]);
  return {
    id: PROVIDER_ID,
    packageName: "@kms/azure",
    keyIdProblem: azureKeyIdProblem,
    parseSettings: parseAzureKeyVaultSettings,
    create: (settings) => azureKeyVaultProvider({ ...settings, credential: given ?? defaultAzureCredential() }),
  };
}

/** What `AZURE_TOKEN_CREDENTIALS` may hold (`@azure/identity` 4.13; case and surrounding blanks ignored). */
const AZURE_TOKEN_CREDENTIALS_VALUES = [
  "prod",
  "dev",
  "EnvironmentCredential",
  "WorkloadIdentityCredential",
  "ManagedIdentityCredential",
  "VisualStudioCodeCredential",
  "AzureCliCredential",
  "AzurePowerShellCredential",
  "AzureDeveloperCliCredential",
] as const;

/**
 * `new DefaultAzureCredential()`. No network here: the chain reads its environment now and asks for a
 * token at the first Key Vault call. `@azure/identity` is required here rather than imported at the
 * top, so that it is loaded only when an Azure provider is created. When it throws (an unknown
 * `AZURE_TOKEN_CREDENTIALS`), a `KmsConfigError` at `providers.azure-key-vault` says why, without the
 * SDK's message (which quotes the variable's value).
 */
function defaultAzureCredential(): TokenCredential {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (see above)
  const { DefaultAzureCredential } = require("@azure/identity") as typeof import("@azure/identity");
  try {
    return new DefaultAzureCredential();
  } catch (error) {
    const chosen = process.env.AZURE_TOKEN_CREDENTIALS?.trim().toLowerCase();
    const known = AZURE_TOKEN_CREDENTIALS_VALUES.some((v) => v.toLowerCase() === chosen);
    const why =
      chosen && !known
        ? `: AZURE_TOKEN_CREDENTIALS must be one of ${AZURE_TOKEN_CREDENTIALS_VALUES.join(", ")}`
        : ` (${error instanceof Error ? error.name : typeof error} from @azure/identity)`;
    throw new KmsConfigError([configIssue(`providers.${PROVIDER_ID}`, "KMS_CONFIG_INVALID", `the Azure credential (DefaultAzureCredential) could not be created${why}`)]);
  }
}

/** Creates the provider; throws a `KmsConfigError` listing every problem with the options. No network. */
export function azureKeyVaultProvider(options: AzureKeyVaultProviderOptions): KmsProvider {
  const { credential, ...settings } = options ?? ({} as AzureKeyVaultProviderOptions);
  const issues = [];
  if (!isCredential(credential)) issues.push(configIssue("credential", "KMS_CONFIG_INVALID", "must be a TokenCredential (an object with getToken)"));
  const parsed = parseAzureKeyVaultSettings(settings);
  if (!parsed.ok) for (const i of parsed.issues) issues.push(configIssue(i.path, "KMS_CONFIG_INVALID", i.message));
  if (issues.length > 0 || !parsed.ok) throw new KmsConfigError(issues);
  return new AzureKeyVault(parsed.settings, credential);
}

function isCredential(value: unknown): value is TokenCredential {
  return typeof value === "object" && value !== null && typeof (value as { getToken?: unknown }).getToken === "function";
}

class AzureKeyVault implements KmsProvider {
  readonly id = PROVIDER_ID;
  readonly capabilities: ProviderCapabilities = Object.freeze({
    encryptionContext: false,
    rotation: true,
    generatesDataKeys: false,
    insecure: false,
    keyDisabling: Object.freeze(["disable", "schedule-destruction"] as const),
  });
  readonly #vaultUrl: string;
  readonly #algorithm: AzureWrapAlgorithm;
  readonly #timeoutMs: number;
  readonly #credential: TokenCredential;
  readonly #agent: Agent;
  readonly #clientOptions: KeyClientOptions;
  readonly #keyClient: KeyClient;
  /** CryptographyClients by `<name>/<version>` (`<name>/` for the current version), least recently used first. */
  readonly #cryptographyClients = new Map<string, CryptographyClient>();
  #closed = false;

  constructor(settings: AzureKeyVaultSettings, credential: TokenCredential) {
    this.#vaultUrl = settings.vaultUrl;
    this.#algorithm = settings.algorithm ?? "RSA-OAEP-256";
    this.#timeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#credential = credential;
    // One connection pool for every client of this provider; close() destroys it. `ca` trusts a
    // private CA for this vault only: certificate verification is never switched off.
    this.#agent = new Agent({ keepAlive: true, ...(settings.ca === undefined ? {} : { ca: settings.ca }) });
    this.#clientOptions = {
      agent: this.#agent,
      retryOptions: { maxRetries: 0 }, // core's resilience policy retries; the SDK's own retries would multiply its attempts
      ...(settings.disableChallengeResourceVerification ? { disableChallengeResourceVerification: true } : {}),
    };
    this.#keyClient = new KeyClient(this.#vaultUrl, credential, this.#clientOptions);
  }

  // --- data keys ------------------------------------------------------------------------------

  async wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey> {
    const key = this.#enter(req, req?.keyId);
    if (!(req.plaintextKey instanceof Uint8Array) || req.plaintextKey.length !== DATA_KEY_BYTES) {
      throw kmsError("INPUT_INVALID", `the data key to wrap must be ${DATA_KEY_BYTES} bytes`, `pass a ${DATA_KEY_BYTES}-byte data key`);
    }
    return this.#wrap(key, req.plaintextKey, req.signal);
  }

  async unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array> {
    const { name } = this.#enter(req, req?.keyId);
    const wrapped = req.wrappedKey;
    if (!(wrapped instanceof Uint8Array)) throw kmsError("INPUT_INVALID", "the wrapped key must be bytes (Uint8Array)", "pass the envelope's wrapped key");
    // No version, or no Key Vault ciphertext, looks like this: not worth a call.
    if (typeof req.keyVersion !== "string" || !VERSION.test(req.keyVersion) || wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) throw unwrapFailed();
    const client = this.#cryptographyClient(name, req.keyVersion);
    const result = await this.#send({ operation: "UnwrapKey", key: name }, req.signal, (o) => client.unwrapKey(this.#algorithm, wrapped, o));
    const key = takeDataKey(result.result);
    if (key === undefined) throw unwrapFailed(); // it unwrapped, but to something that is not a data key
    return key;
  }

  /** WrapKey on the pinned or current version; the version used is read from the response's `kid`. */
  async #wrap({ name, version }: { name: string; version?: string }, plaintextKey: Uint8Array, signal: AbortSignal | undefined): Promise<WrappedDataKey> {
    const client = this.#cryptographyClient(name, version ?? "");
    let kid: unknown;
    // The SDK reports the key id it was built with (no version), so the version comes from the wire.
    const onResponse = (response: { parsedBody?: unknown }) => {
      kid = (response.parsedBody as { kid?: unknown } | undefined)?.kid;
    };
    const call: AzureCall = { operation: "WrapKey", key: name };
    const result = await this.#send(call, signal, (o) => client.wrapKey(this.#algorithm, plaintextKey, { ...o, onResponse }));
    const wrappedKey = result.result;
    if (!(wrappedKey instanceof Uint8Array) || wrappedKey.length === 0 || wrappedKey.length > MAX_WRAPPED_BYTES) {
      throw kmsError("KMS_PROVIDER_ERROR", `WrapKey on key ${name} returned no usable value`, "report it with the request id");
    }
    return { wrappedKey, keyVersion: versionOfKid(kid, name, call) };
  }

  // --- key management -------------------------------------------------------------------------

  async describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription> {
    const key = this.#enter(options, keyId);
    const found = await this.#getKey(key, options?.signal);
    const rotatedAt = found.properties.createdOn;
    return {
      keyId,
      enabled: found.properties.enabled !== false,
      currentVersion: versionOfKid(found.id, key.name, { operation: "GetKey", key: key.name }),
      ...(rotatedAt instanceof Date && !Number.isNaN(rotatedAt.getTime()) ? { rotatedAt } : {}),
    };
  }

  /** Key Vault rotates synchronously: the new version is current when RotateKey answers. */
  async rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult> {
    const key = this.#enter(options, keyId);
    if (key.version !== undefined) throw kmsError("INPUT_INVALID", "a key id pinned to a version cannot be rotated", "rotate the key by its name alone");
    const previousVersion = (await this.describeKey(keyId, options)).currentVersion;
    const call: AzureCall = { operation: "RotateKey", key: key.name };
    const rotated = await this.#send(call, options?.signal, (o) => this.#keyClient.rotateKey(key.name, o));
    return { keyId, previousVersion, currentVersion: versionOfKid(rotated.id, key.name, call) };
  }

  /**
   * Takes every version of the key out of use (crypto-shredding); a key id pinned to a version stands
   * for its whole key.
   * - `disable`: Key Vault's `enabled` attribute is per version (a PATCH without a version changes
   *   the current one only), so the versions are listed (`GET /keys/<name>/versions`, paged) and each
   *   enabled one is updated with `enabled: false` (`PATCH /keys/<name>/<version>`,
   *   `updateKeyProperties`). Reversible; versions already disabled are skipped, so a call that failed
   *   half-way is finished by calling again. The request id is the last PATCH's (none when nothing
   *   was left to disable).
   * - `schedule-destruction`: `beginDeleteKey` (`DELETE /keys/<name>`, every version): a soft delete,
   *   recoverable for the vault's retention period (7-90 days), then purged by Key Vault. The SDK's
   *   poller looks once at `GET /deletedkeys/<name>`; it is not waited on. The request id is the
   *   DELETE's. A key already deleted is `KMS_KEY_NOT_FOUND`.
   * Each step is one `#send`: a deadline (`timeoutMs`) and core's signal, errors mapped.
   */
  async disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult> {
    const { name } = this.#enter(options, keyId);
    const mode: unknown = options?.mode;
    if (mode !== "disable" && mode !== "schedule-destruction") {
      const shown = typeof mode === "string" && /^[a-z-]{1,32}$/.test(mode) ? `"${mode}"` : "this mode";
      throw kmsError("INPUT_INVALID", `disableKey: ${shown} is not a mode Key Vault supports (disable, schedule-destruction)`, "use mode disable or schedule-destruction");
    }
    const signal = options.signal;
    let requestId: string | undefined;
    const onResponse = (response: { headers?: { get?(name: string): string | undefined }; request?: { method?: string } }) => {
      const id = typeof response.headers?.get === "function" ? response.headers.get("x-ms-request-id") : undefined;
      if (typeof id === "string" && REQUEST_ID.test(id) && response.request?.method !== "GET") requestId = id;
    };
    if (mode === "schedule-destruction") {
      await this.#send({ operation: "DeleteKey", key: name }, signal, (o) => this.#keyClient.beginDeleteKey(name, { ...o, onResponse }));
      return requestId === undefined ? {} : { requestId };
    }
    const versions = await this.#send({ operation: "ListKeyVersions", key: name }, signal, async (o) => {
      // The SDK's pager passes the abort signal to the first page only: every page is raced against it.
      const pages = this.#keyClient.listPropertiesOfKeyVersions(name, o).byPage();
      const found: { version: string; enabled: boolean }[] = [];
      for (let page = 0; ; page++) {
        if (page === MAX_VERSION_PAGES) throw kmsError("KMS_PROVIDER_ERROR", `ListKeyVersions on key ${name} did not end after ${MAX_VERSION_PAGES} pages`, "report it with the request id");
        const next = await untilAborted(pages.next(), o.abortSignal);
        if (next.done === true) return found;
        for (const properties of next.value) {
          const version = properties.version;
          if (typeof version !== "string" || !VERSION.test(version)) throw kmsError("KMS_PROVIDER_ERROR", `ListKeyVersions on key ${name} returned a version without a usable id`, "report it with the request id");
          found.push({ version, enabled: properties.enabled !== false });
        }
      }
    });
    for (const { version, enabled } of versions) {
      if (!enabled) continue;
      await this.#send({ operation: "UpdateKey", key: name }, signal, (o) => this.#keyClient.updateKeyProperties(name, version, { ...o, enabled: false, onResponse }));
    }
    return requestId === undefined ? {} : { requestId };
  }

  async checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth> {
    this.#enter(options);
    const unhealthy = (detail: string): ProviderHealth => ({ healthy: false, insecure: false, detail });
    if (!Array.isArray(keyIds)) return unhealthy("invalid key list (INPUT_INVALID)");
    const unique = [...new Set(keyIds)];
    for (const keyId of unique) {
      const key = parseAzureKeyId(keyId);
      if (key === undefined) return unhealthy("invalid key id (INPUT_INVALID)");
      try {
        if ((await this.#getKey(key, options?.signal)).properties.enabled === false) return unhealthy(`key ${shortKeyId(keyId)} is disabled (KMS_KEY_DISABLED)`);
      } catch (error) {
        return unhealthy(`key ${shortKeyId(keyId)}: ${isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR"}`);
      }
    }
    return { healthy: true, insecure: false, detail: unique.length === 0 ? "no keys to check" : `${unique.length} key(s) enabled` };
  }

  /**
   * One check per key permission, each by a real call with harmless input: `get` (GetKey), `wrapKey`
   * (32 random bytes) and `unwrapKey` of what was wrapped, compared with what went in. When the wrap
   * failed, `unwrapKey` is reported as failing ("not checked"), never as passing.
   */
  async validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]> {
    const key = this.#enter(options, keyId);
    const signal = options?.signal;
    const check = async (operation: AzureOperation, fn: () => Promise<void>): Promise<PermissionCheck> => {
      const { permission } = ACCESS[operation];
      try {
        await fn();
        return { permission, ok: true, docsUrl: AZURE_PERMISSIONS_DOCS_URL };
      } catch (raw) {
        const error = isKmsError(raw) ? raw : kmsError("KMS_PROVIDER_ERROR", `${permission} check failed unexpectedly`, "see the error's cause", raw);
        return { permission, ok: false, remediation: `${permission} on key ${key.name}: ${fixOf(error) ?? "see the error"}`, docsUrl: AZURE_PERMISSIONS_DOCS_URL, error };
      }
    };
    const plaintext = randomBytes(DATA_KEY_BYTES);
    let sample: WrappedDataKey | undefined;
    try {
      // One step per operation of AZURE_RUNTIME_OPERATIONS (the Record type keeps the two in step), run in its order.
      const steps: Record<AzureRuntimeOperation, () => Promise<void>> = {
        GetKey: async () => {
          await this.#getKey(key, signal);
        },
        WrapKey: async () => {
          sample = await this.#wrap(key, plaintext, signal);
        },
        UnwrapKey: async () => {
          if (sample === undefined) {
            throw kmsError("KMS_PROVIDER_ERROR", "unwrapKey was not checked: wrapKey produced nothing to unwrap", "grant wrapKey too, then validate again to check unwrapKey");
          }
          const back = await this.unwrapDataKey({ keyId, keyVersion: sample.keyVersion, wrappedKey: sample.wrappedKey, context: {}, ...(signal ? { signal } : {}) });
          const same = timingSafeEqual(back, plaintext);
          back.fill(0);
          if (!same) throw kmsError("KMS_PROVIDER_ERROR", "UnwrapKey returned other bytes than were wrapped", "report it with the request id");
        },
      };
      const checks: PermissionCheck[] = [];
      for (const operation of AZURE_RUNTIME_OPERATIONS) checks.push(await check(operation, steps[operation]));
      return checks;
    } finally {
      plaintext.fill(0);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cryptographyClients.clear();
    this.#agent.destroy(); // closes every socket of this provider's clients
  }

  // --- helpers --------------------------------------------------------------------------------

  /** Refuses calls after close(), after an abort, and key ids this provider could never use. */
  #enter(options: Cancellable | undefined, keyId?: unknown): { name: string; version?: string } {
    if (this.#closed) throw kmsError("KMS_CLOSED", "this provider has been closed", "create a new provider");
    const signal = options?.signal;
    if (signal?.aborted) throw mapAzureError(undefined, { operation: "GetKey", key: "" }, signal);
    if (keyId === undefined) return { name: "" };
    const key = parseAzureKeyId(keyId);
    if (key === undefined) throw kmsError("INPUT_INVALID", AZURE_KEY_ID_RULE, "use this form");
    return key;
  }

  #getKey(key: { name: string; version?: string }, signal: AbortSignal | undefined): Promise<KeyVaultKey> {
    return this.#send({ operation: "GetKey", key: key.name }, signal, (o) => this.#keyClient.getKey(key.name, { ...o, ...(key.version ? { version: key.version } : {}) }));
  }

  /**
   * The client for one key version ("" = current), built from a `KeyVaultKey` without key material:
   * the SDK then neither GETs the key first nor tries local cryptography.
   */
  #cryptographyClient(name: string, version: string): CryptographyClient {
    const id = `${name}/${version}`;
    let client = this.#cryptographyClients.get(id);
    if (client !== undefined) {
      this.#cryptographyClients.delete(id); // re-inserted below: most recently used last
    } else {
      const remoteOnly: KeyVaultKey = {
        name,
        id: `${this.#vaultUrl}/keys/${name}${version === "" ? "" : `/${version}`}`,
        properties: { name, vaultUrl: this.#vaultUrl, ...(version === "" ? {} : { version }) },
      };
      client = new CryptographyClient(remoteOnly, this.#credential, this.#clientOptions);
      if (this.#cryptographyClients.size >= MAX_CRYPTOGRAPHY_CLIENTS) this.#cryptographyClients.delete(this.#cryptographyClients.keys().next().value!);
    }
    this.#cryptographyClients.set(id, client);
    return client;
  }

  /** One SDK call with a deadline (`timeoutMs`, and core's signal); every rejection is mapped. */
  async #send<T>(call: AzureCall, signal: AbortSignal | undefined, send: (options: { abortSignal: AbortSignal }) => Promise<T>): Promise<T> {
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    try {
      return await send({ abortSignal: signal === undefined ? deadline : AbortSignal.any([signal, deadline]) });
    } catch (error) {
      throw mapAzureError(error, call, signal, deadline);
    }
  }
}

/**
 * The version named by a `kid` (`https://<vault>/keys/<name>/<version>`) for key `name` (Key Vault
 * names are case-insensitive); KMS_PROVIDER_ERROR when it names none or another key.
 */
function versionOfKid(kid: unknown, name: string, call: AzureCall): string {
  let parts: string[] = [];
  try {
    parts = typeof kid === "string" ? new URL(kid).pathname.split("/") : [];
  } catch {
    // not a URL: reported below
  }
  const [, keys, keyName, version, ...rest] = parts;
  if (keys === "keys" && keyName?.toLowerCase() === name.toLowerCase() && version !== undefined && VERSION.test(version) && rest.length === 0) return version;
  throw kmsError("KMS_PROVIDER_ERROR", `${call.operation} on key ${name} answered without a key id naming its version`, "report it with the request id");
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts (the promise is then left to settle unobserved). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error as Error);
      },
    );
  });
}

