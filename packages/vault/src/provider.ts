/**
 * The `vault` provider: data keys from HashiCorp Vault's transit engine, through node-vault.
 *
 * - Data keys: `datakey/plaintext/<key>` (Vault draws the key), `encrypt/<key>` (wrap),
 *   `decrypt/<key>` (unwrap). The wrapped key is the ciphertext string `vault:v<N>:…` as UTF-8 bytes;
 *   the key version is its `<N>`.
 * - Context binding: every data-key call sends `context` = the canonical encoding of the encryption
 *   context (context.ts). Only a derived key (`derived=true`) uses it: a non-derived key ignores it,
 *   so a data key wrapped for one tenant would unwrap for any other. Before its first data-key call
 *   for a key, the provider reads `keys/<key>` once and refuses a non-derived key (KMS_CONFIG_INVALID).
 *   A key found derived is remembered for the provider's life, by any read of it: `describeKey`,
 *   `checkHealth`, `validatePermissions` too, so after a start-up health check the first encrypt makes
 *   exactly one Vault call. A key found not derived (or not found) is read again next time.
 * - Vault has no disabled keys: `describeKey` always says `enabled: true`; refusals for versions
 *   below `min_decryption_version` / `min_encryption_version` are KMS_KEY_DISABLED.
 * - Crypto-shredding (`disableKey`): only `schedule-destruction`, and it is NOT a schedule: Vault has
 *   no waiting period, so it sets `deletion_allowed=true` and then DELETEs the key, every version,
 *   at once and for good. `disable` is INPUT_INVALID: transit has no disabled state.
 * - Auth: a token, or AppRole (the token or the secret ID inline, or from the environment variable the
 *   settings name: settings.ts). An AppRole token is obtained at first use and renewed lazily, before
 *   a call, once two thirds of its lease have passed (renew-self); when renewal is refused (403) or
 *   the lease is about to end, the provider logs in again. No timer: nothing to leak, nothing to
 *   cancel. A call refused with 403 drops the AppRole token, so the next call logs in afresh (a
 *   revoked token heals itself; the refused call is not repeated). Logins and renewals are
 *   single-flight.
 * - The SDK is pinned: every option is passed explicitly, so node-vault never falls back to
 *   VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_PREFIX or VAULT_SKIP_VERIFY, and its debug logger
 *   (which prints request bodies, plaintext included) is replaced by a no-op.
 * - Cancellation: node-vault does not forward an AbortSignal to axios (its request wrapper copies a
 *   fixed list of options), so an aborted call rejects at once with the signal's reason and its HTTP
 *   request runs on until Vault answers or `requestTimeoutMs` ends it.
 * - `close()` destroys the provider's own keep-alive agents (no socket outlives it) and forgets the
 *   AppRole token.
 */
import * as http from "node:http";
import * as https from "node:https";
import {
  type Cancellable,
  type Clock,
  DATA_KEY_BYTES,
  DOCS_BASE_URL,
  type DataKey,
  type DisableKeyOptions,
  type DisableKeyResult,
  type GenerateDataKeyRequest,
  type KeyDescription,
  type KeyDisableMode,
  KmsConfigError,
  KmsError,
  type KmsErrorCode,
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
  systemClock,
} from "@kms/core";
import vault from "node-vault";
import { encodeVaultContext } from "./context";
import { type VaultCall, hasStatus, mapVaultError } from "./errors";
import { type ResolvedVaultSettings, type VaultKmsSettings, resolveSettings, toSettings, vaultKeyIdProblem } from "./settings";
import { base64Of, ciphertextOf, dataOf, isRecord, keyInfoOf, parseCiphertext, unexpected, type KeyInfo } from "./wire";

const PROVIDER_ID = "vault";
/** Where the Vault policy this provider needs is documented. */
export const VAULT_POLICY_DOCS_URL = `${DOCS_BASE_URL}docs/setup/VAULT_SETUP.md#policy`;
/** Renew an AppRole token once this fraction of its lease has passed. */
const RENEW_AT_FRACTION = 2 / 3;
/** Log in again rather than use a token this close to its expiry (at most this, at most a tenth of the lease). */
const EXPIRY_MARGIN_MS = 10_000;

export interface VaultKmsOptions extends VaultKmsSettings {
  /** Time source of the AppRole token's renewal schedule; default the system clock. */
  clock?: Clock;
}

export interface VaultKmsProvider extends KmsProvider {
  /** Vault's address, as configured (no trailing slash). */
  readonly endpoint: string;
  /** The transit mount. */
  readonly mountPath: string;
  generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey>;
  disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult>;
}

/** The `vault` provider for configuration-driven set-up: `createKms({ registry: [vaultKms], … })`. */
export const vaultKms: ProviderDefinition<VaultKmsSettings> = {
  id: PROVIDER_ID,
  packageName: "@kms/vault",
  keyIdProblem: vaultKeyIdProblem,
  parseSettings(raw) {
    const result = resolveSettings(raw);
    return result.ok ? { ok: true, settings: toSettings(result.settings) } : { ok: false, issues: result.issues };
  },
  create: (settings) => vaultKmsProvider(settings),
};

/** A Vault transit provider. Validates its options at once (KmsConfigError listing every issue); no network until the first call. */
export function vaultKmsProvider(options: VaultKmsOptions): VaultKmsProvider {
  const { clock, ...settings } = options ?? ({} as VaultKmsOptions);
  const result = resolveSettings(settings);
  if (!result.ok) throw new KmsConfigError(result.issues.map((i) => configIssue(i.path, "KMS_CONFIG_INVALID", `vault: ${i.message}`)));
  return new VaultKms(result.settings, clock ?? systemClock);
}

/** The node-vault client, with the fields it reads from the environment when left empty. */
type NodeVaultClient = vault.client & { namespace?: string; pathPrefix?: string };

/** An AppRole token and its renewal schedule (clock milliseconds). */
interface Session {
  readonly token: string;
  readonly expiresAt: number;
  readonly renewAt: number;
  readonly renewable: boolean;
  readonly marginMs: number;
}

type Capability = "read" | "update" | "delete";

/** One Vault policy grant: a capability on a path under the transit mount, `<key>` standing for the key name. */
export interface VaultPolicyGrant {
  readonly capability: Capability;
  /** Relative to the transit mount, with `<key>` for the key's name: `encrypt/<key>`. */
  readonly path: string;
}

/**
 * The grants the application's token needs per key: exactly what `validatePermissions` asks
 * `sys/capabilities-self` about, in its order. `deploy/vault/kms-runtime.hcl` grants exactly these
 * (mount `transit`, any one key name); a test compares the two.
 */
export const VAULT_RUNTIME_GRANTS: readonly VaultPolicyGrant[] = Object.freeze([
  Object.freeze({ capability: "update", path: "datakey/plaintext/<key>" }), // new data keys
  Object.freeze({ capability: "update", path: "encrypt/<key>" }), // rewrap
  Object.freeze({ capability: "update", path: "decrypt/<key>" }), // data keys not yet cached
  Object.freeze({ capability: "read", path: "keys/<key>" }), // derived check, describeKey, health
] as const);

/** What `rotateKey` needs: only the process that rotates keys. */
export const VAULT_ROTATION_GRANTS: readonly VaultPolicyGrant[] = Object.freeze([Object.freeze({ capability: "update", path: "keys/<key>/rotate" })] as const);

/** What `disableKey` (crypto-shredding, immediate) needs: a key-administration token only, never the application's. */
export const VAULT_SHREDDING_GRANTS: readonly VaultPolicyGrant[] = Object.freeze([
  Object.freeze({ capability: "update", path: "keys/<key>/config" }),
  Object.freeze({ capability: "delete", path: "keys/<key>" }),
] as const);

/** The full Vault path of a grant: `vaultGrantPath(grant, "transit", "tenant-a")` → `transit/encrypt/tenant-a`. */
export function vaultGrantPath(grant: VaultPolicyGrant, mountPath: string, keyName: string): string {
  return `${mountPath}/${grant.path.replace("<key>", keyName)}`;
}

/** `schedule-destruction` only, and it is immediate: see `disableKey`. */
const KEY_DISABLING: readonly KeyDisableMode[] = Object.freeze(["schedule-destruction"]);

class VaultKms implements VaultKmsProvider {
  readonly id = PROVIDER_ID;
  readonly capabilities: ProviderCapabilities = Object.freeze({
    encryptionContext: true,
    rotation: true,
    generatesDataKeys: true,
    insecure: false,
    keyDisabling: KEY_DISABLING,
  });
  readonly endpoint: string;
  readonly mountPath: string;
  readonly #settings: ResolvedVaultSettings;
  readonly #clock: Clock;
  readonly #client: NodeVaultClient;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  /** Keys read and found derived. */
  readonly #derivedKeys = new Set<string>();
  /** First-use key checks in flight, one per key. */
  readonly #keyChecks = new Map<string, Promise<void>>();
  #session: Session | undefined;
  #authFlight: Promise<void> | undefined;
  #closed = false;

  constructor(settings: ResolvedVaultSettings, clock: Clock) {
    this.#settings = settings;
    this.#clock = clock;
    this.endpoint = settings.endpoint;
    this.mountPath = settings.mountPath;
    this.#httpAgent = new http.Agent({ keepAlive: true });
    this.#httpsAgent = new https.Agent({ keepAlive: true, ...(settings.caCert === undefined ? {} : { ca: settings.caCert }) });
    const token = settings.auth.kind === "token" ? settings.auth.token : "";
    const options: vault.VaultOptions & { rpDefaults: { strictSSL: boolean } } = {
      apiVersion: "v1",
      endpoint: settings.endpoint,
      token,
      ...(settings.namespace === undefined ? {} : { namespace: settings.namespace }),
      noCustomHTTPVerbs: true,
      pathPrefix: "",
      // node-vault's default logger (the `debug` package, DEBUG=node-vault) prints request bodies: plaintext.
      debug: () => undefined,
      // Otherwise VAULT_SKIP_VERIFY in the environment would turn TLS verification off.
      rpDefaults: { strictSSL: true },
      requestOptions: { timeout: settings.requestTimeoutMs, httpAgent: this.#httpAgent, httpsAgent: this.#httpsAgent },
    };
    const client = vault(options) as NodeVaultClient;
    // node-vault falls back to VAULT_ADDR / VAULT_TOKEN / VAULT_NAMESPACE / VAULT_PREFIX for any empty
    // option: pin every one to what the settings say (empty means "none", not "ask the environment").
    client.endpoint = settings.endpoint;
    client.token = token;
    client.namespace = settings.namespace ?? "";
    client.pathPrefix = "";
    this.#client = client;
  }

  // --- data keys ------------------------------------------------------------------------------

  async generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey> {
    this.#enter(req?.signal);
    const keyId = keyName(req.keyId);
    const context = encodeVaultContext(req.context);
    await this.#requireDerived(keyId, "generateDataKey", req.signal);
    const call = this.#call("generateDataKey", `${this.mountPath}/datakey/plaintext/${keyId}`, "update", keyId);
    const data = dataOf(await this.#send(call, req.signal, (c) => c.write(call.path, { bits: DATA_KEY_BYTES * 8, context })), call);
    const plaintextKey = base64Of(data.plaintext);
    if (plaintextKey === undefined || plaintextKey.length !== DATA_KEY_BYTES) {
      plaintextKey?.fill(0);
      throw unexpected(call, `plaintext is not a ${DATA_KEY_BYTES}-byte key`);
    }
    try {
      return { ...ciphertextOf(data, call), plaintextKey };
    } catch (error) {
      plaintextKey.fill(0);
      throw error;
    }
  }

  async wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey> {
    this.#enter(req?.signal);
    const keyId = keyName(req.keyId);
    const key = req.plaintextKey;
    if (!(key instanceof Uint8Array) || key.length !== DATA_KEY_BYTES) throw inputError(`the data key to wrap must be ${DATA_KEY_BYTES} bytes`);
    const context = encodeVaultContext(req.context);
    await this.#requireDerived(keyId, "wrapDataKey", req.signal);
    const call = this.#call("wrapDataKey", `${this.mountPath}/encrypt/${keyId}`, "update", keyId);
    const plaintext = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("base64"); // a view: no copy to zero
    return ciphertextOf(dataOf(await this.#send(call, req.signal, (c) => c.write(call.path, { plaintext, context })), call), call);
  }

  async unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array> {
    this.#enter(req?.signal);
    const keyId = keyName(req.keyId);
    if (typeof req.keyVersion !== "string") throw inputError("the key version must be a string");
    if (!(req.wrappedKey instanceof Uint8Array)) throw inputError("the wrapped key must be bytes (Uint8Array)");
    const context = encodeVaultContext(req.context);
    // Checked here, not by Vault: a wrapped key that is not a transit ciphertext of the envelope's
    // version was not written by this provider, and costs no call.
    const ciphertext = Buffer.from(req.wrappedKey.buffer, req.wrappedKey.byteOffset, req.wrappedKey.byteLength).toString("latin1");
    if (parseCiphertext(ciphertext)?.keyVersion !== req.keyVersion) throw authFailed(keyId);
    await this.#requireDerived(keyId, "unwrapDataKey", req.signal);
    const call = this.#call("unwrapDataKey", `${this.mountPath}/decrypt/${keyId}`, "update", keyId);
    const data = dataOf(await this.#send(call, req.signal, (c) => c.write(call.path, { ciphertext, context })), call);
    const plaintextKey = base64Of(data.plaintext);
    if (plaintextKey === undefined) throw unexpected(call, "plaintext is not base64");
    if (plaintextKey.length !== DATA_KEY_BYTES) {
      // Vault decrypted something, but not one of our data keys: not an envelope of ours.
      plaintextKey.fill(0);
      throw authFailed(keyId);
    }
    return plaintextKey;
  }

  // --- key management -------------------------------------------------------------------------

  async describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription> {
    this.#enter(options?.signal);
    const name = keyName(keyId);
    const info = await this.#readKey(name, "describeKey", options?.signal);
    const versions = [...info.versionTimes.keys()].sort((a, b) => a - b);
    const createdAt = versions.length > 0 ? info.versionTimes.get(versions[0]!) : undefined;
    const rotatedAt = info.versionTimes.get(info.latestVersion);
    return {
      keyId: name,
      enabled: true, // Vault keys have no disabled state (see KMS_KEY_DISABLED in errors.ts)
      currentVersion: String(info.latestVersion),
      ...(createdAt === undefined ? {} : { createdAt }),
      ...(rotatedAt === undefined ? {} : { rotatedAt }),
    };
  }

  /**
   * Rotates, then reads the new version from the answer (Vault 1.12+ returns the key) or from a read
   * (older versions answer 204). Vault numbers versions one by one, so the previous one is latest − 1.
   */
  async rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult> {
    this.#enter(options?.signal);
    const name = keyName(keyId);
    const call = this.#call("rotateKey", `${this.mountPath}/keys/${name}/rotate`, "update", name);
    const body = await this.#send(call, options?.signal, (c) => c.write(call.path, {}));
    let info: KeyInfo;
    try {
      info = keyInfoOf(body, call);
    } catch {
      info = await this.#readKey(name, "rotateKey", options?.signal);
    }
    if (info.latestVersion < 2) throw unexpected(call, "the key still has one version after rotation");
    return { keyId: name, previousVersion: String(info.latestVersion - 1), currentVersion: String(info.latestVersion) };
  }

  /**
   * Crypto-shredding, as far as Vault transit allows. Transit keys have no disabled state and no
   * deletion schedule, so:
   * - `disable` is INPUT_INVALID (no call): restrict the application's policy, or raise the key's
   *   `min_decryption_version` above every version, with Vault's own tools instead;
   * - `schedule-destruction` DESTROYS THE KEY AT ONCE, with no waiting period and no undo:
   *   `POST <mount>/keys/<name>/config {deletion_allowed: true}` ("update" on that path), then
   *   `DELETE <mount>/keys/<name>` ("delete"). Every version goes, and every envelope wrapped under
   *   the key is unreadable for good (KMS_KEY_NOT_FOUND), unless a Vault backup or snapshot holds it.
   *
   * Each request has the provider's deadline (`requestTimeoutMs`) and goes through `mapVaultError`.
   * If the DELETE fails after the config succeeded, the key is left intact with deletion allowed:
   * call again. Vault answers the DELETE with 204 and no body, so there is no request id to return
   * (Vault's audit device logs both requests, under the token's accessor).
   */
  async disableKey(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult> {
    this.#enter(options?.signal);
    const name = keyName(keyId);
    const mode: unknown = options?.mode;
    if (mode !== "schedule-destruction") {
      throw inputError(
        mode === "disable"
          ? `transit key "${name}" cannot be disabled: Vault transit keys have no disabled state. Use "schedule-destruction" ` +
              "(immediate, irreversible deletion), or restrict the application's policy or raise the key's min_decryption_version with Vault's own tools"
          : `disableKey on transit key "${name}": the mode must be "schedule-destruction" (the only one Vault transit supports)`,
      );
    }
    const signal = options.signal;
    const config = this.#call("disableKey", `${this.mountPath}/keys/${name}/config`, "update", name);
    await this.#send(config, signal, (c) => c.write(config.path, { deletion_allowed: true }));
    const remove = this.#call("disableKey", `${this.mountPath}/keys/${name}`, "delete", name);
    this.#derivedKeys.delete(name);
    try {
      const body = await this.#send(remove, signal, (c) => c.delete(remove.path));
      const requestId = isRecord(body) && typeof body.request_id === "string" && /^[\w-]{1,64}$/.test(body.request_id) ? body.request_id : undefined;
      return requestId === undefined ? {} : { requestId };
    } finally {
      // A key of this name created later is a new key: it is checked again before its first use.
      this.#derivedKeys.delete(name);
    }
  }

  // --- operations -----------------------------------------------------------------------------

  /** `sys/health` (sealed, uninitialised: unhealthy), then a read of each key (exists, readable, derived). Never throws for Vault's failures. */
  async checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth> {
    this.#enter(options?.signal);
    const unhealthy = (detail: string): ProviderHealth => ({ healthy: false, insecure: false, detail: detail.slice(0, 200) });
    const call = this.#call("checkHealth", "sys/health", "read");
    let health: unknown;
    try {
      health = await abortable(this.#client.health({ standbyok: true }), options?.signal);
    } catch (error) {
      return unhealthy(`Vault unreachable (${mapVaultError(error, call).code})`);
    }
    if (!isRecord(health) || typeof health.sealed !== "boolean") return unhealthy("Vault's sys/health answer is not a health report");
    if (health.initialized === false) return unhealthy("Vault is not initialized");
    if (health.sealed) return unhealthy("Vault is sealed");
    for (const keyId of keyIds) {
      if (vaultKeyIdProblem(keyId) !== undefined) return unhealthy("invalid key id (INPUT_INVALID)");
      try {
        if (!(await this.#readKey(keyId, "checkHealth", options?.signal)).derived) return unhealthy(`key "${keyId}" is not derived (KMS_CONFIG_INVALID)`);
      } catch (error) {
        return unhealthy(`key "${keyId}": ${isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR"}`);
      }
    }
    const version = typeof health.version === "string" && /^[\w.+-]{1,32}$/.test(health.version) ? ` ${health.version}` : "";
    return { healthy: true, insecure: false, detail: `Vault${version} (${health.standby === true ? "standby" : "active"}), ${keyIds.length} key(s) readable` };
  }

  /**
   * One `sys/capabilities-self` call for the paths the data path uses, one check per path and
   * capability, then a read of the key (its `read` permission in use, and a check that it is
   * derived). Rotation (`keys/<key>/rotate`) is not checked: applications need not hold it; the
   * job that rotates does (see the README).
   */
  async validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]> {
    this.#enter(options?.signal);
    const name = keyName(keyId);
    const m = this.mountPath;
    const required: [Capability, string][] = VAULT_RUNTIME_GRANTS.map((grant) => [grant.capability, vaultGrantPath(grant, m, name)]);
    const call = this.#call("validatePermissions", "sys/capabilities-self", "update", name);
    let granted: Map<string, readonly string[]> | undefined;
    let failure: KmsError | undefined;
    try {
      const body = await this.#send(call, options?.signal, (c) => c.write(call.path, { paths: required.map(([, path]) => path) }));
      granted = capabilitiesOf(body, required.map(([, path]) => path), call);
    } catch (error) {
      failure = mapVaultError(error, call);
    }
    const checks: PermissionCheck[] = required.map(([capability, path]): PermissionCheck => {
      const permission = `${capability} ${path}`;
      const grant = `add to the token's Vault policy: ${policyStanza(path, capability)}`;
      if (failure) return { permission, ok: false, remediation: this.#remediation(failure, name, grant), docsUrl: VAULT_POLICY_DOCS_URL, error: failure };
      const caps = granted!.get(path)!;
      if (caps.includes(capability) || caps.includes("root")) return { permission, ok: true, docsUrl: VAULT_POLICY_DOCS_URL };
      const error = new KmsError("KMS_ACCESS_DENIED", `vault: the token may not "${capability}" on "${path}" (key "${name}"); ${grant}`, { provider: PROVIDER_ID });
      return { permission, ok: false, remediation: grant, docsUrl: VAULT_POLICY_DOCS_URL, error };
    });
    const permission = `derived=true ${m}/keys/${name}`;
    try {
      const info = await this.#readKey(name, "validatePermissions", options?.signal);
      checks.push(
        info.derived
          ? { permission, ok: true, docsUrl: VAULT_POLICY_DOCS_URL }
          : { permission, ok: false, remediation: derivedFix(m), docsUrl: VAULT_POLICY_DOCS_URL, error: this.#notDerived(name) },
      );
    } catch (error) {
      const e = mapVaultError(error, call);
      const grant = `add to the token's Vault policy: ${policyStanza(`${m}/keys/${name}`, "read")}`;
      checks.push({ permission, ok: false, remediation: this.#remediation(e, name, grant), docsUrl: VAULT_POLICY_DOCS_URL, error: e });
    }
    return checks;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#session = undefined;
    this.#client.token = "";
    this.#derivedKeys.clear();
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  // --- Vault calls ----------------------------------------------------------------------------

  /** Authenticates (AppRole), runs `fn` against the client, and maps any failure. */
  async #send(call: VaultCall, signal: AbortSignal | undefined, fn: (client: NodeVaultClient) => Promise<unknown>): Promise<unknown> {
    this.#enter(signal);
    try {
      await this.#authenticate(signal);
      const session = this.#session;
      try {
        return await abortable(fn(this.#client), signal);
      } catch (error) {
        // A refused AppRole token may have been revoked: the next call logs in again.
        if (session !== undefined && hasStatus(error, 403) && this.#session === session) this.#session = undefined;
        throw error;
      }
    } catch (error) {
      throw mapVaultError(error, call);
    }
  }

  /** Reads a key; remembers it when it is derived. */
  async #readKey(name: string, operation: string, signal: AbortSignal | undefined): Promise<KeyInfo> {
    const call = this.#call(operation, `${this.mountPath}/keys/${name}`, "read", name);
    const info = keyInfoOf(await this.#send(call, signal, (c) => c.read(call.path)), call);
    if (info.derived) this.#derivedKeys.add(name);
    return info;
  }

  /** Refuses a key that is not derived (see the header comment); one read per key, shared by concurrent first calls. */
  async #requireDerived(name: string, operation: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.#derivedKeys.has(name)) return;
    let check = this.#keyChecks.get(name);
    if (check === undefined) {
      // Not bound to one caller's signal: the others share it.
      check = this.#readKey(name, operation, undefined)
        .then((info) => {
          if (!info.derived) throw this.#notDerived(name);
        })
        .finally(() => this.#keyChecks.delete(name));
      this.#keyChecks.set(name, check);
    }
    await abortable(check, signal);
  }

  // --- AppRole --------------------------------------------------------------------------------

  /** Makes sure an AppRole token is there and fresh: logs in, or renews, first (single-flight). */
  async #authenticate(signal: AbortSignal | undefined): Promise<void> {
    if (this.#settings.auth.kind !== "appRole") return;
    const s = this.#session;
    const now = this.#clock.now();
    if (s !== undefined && now < s.expiresAt - s.marginMs && !(s.renewable && now >= s.renewAt)) return;
    this.#authFlight ??= this.#refreshSession().finally(() => {
      this.#authFlight = undefined;
    });
    await abortable(this.#authFlight, signal);
  }

  async #refreshSession(): Promise<void> {
    const s = this.#session;
    if (s !== undefined && s.renewable && this.#clock.now() < s.expiresAt - s.marginMs) {
      try {
        await this.#renew(s);
        return;
      } catch (error) {
        // Refused: the token is gone, log in. Any other failure: keep the token while it lasts and
        // try to renew again before the next call (the call itself will tell whether Vault is down).
        if (!hasStatus(error, 403)) return;
      }
    }
    await this.#login();
  }

  async #login(): Promise<void> {
    const auth = this.#settings.auth;
    if (auth.kind !== "appRole") return;
    const call = this.#call("login", `auth/${auth.mountPath}/login`, "update");
    this.#session = undefined;
    this.#client.token = ""; // the login carries no token
    let body: unknown;
    try {
      body = await this.#client.write(call.path, { role_id: auth.roleId, secret_id: auth.secretId });
    } catch (error) {
      if (hasStatus(error, 400) || hasStatus(error, 403)) {
        throw new KmsError(
          "KMS_ACCESS_DENIED",
          `vault: the AppRole login at "${call.path}" was refused: check roleId and secretId (a secret_id can expire or run out of uses)`,
          { provider: PROVIDER_ID, cause: error },
        );
      }
      throw mapVaultError(error, call);
    }
    const block = isRecord(body) ? body.auth : undefined;
    if (!isRecord(block) || typeof block.client_token !== "string" || !/^[\x21-\x7e]{1,4096}$/.test(block.client_token)) {
      throw unexpected(call, "no auth.client_token");
    }
    if (this.#closed) return;
    this.#session = this.#sessionOf(block.client_token, block.lease_duration, block.renewable);
    this.#client.token = block.client_token;
  }

  async #renew(s: Session): Promise<void> {
    const call = this.#call("renew", "auth/token/renew-self", "update");
    const body = await this.#client.write(call.path, {});
    const block = isRecord(body) ? body.auth : undefined;
    if (!isRecord(block)) throw unexpected(call, "no auth block");
    if (this.#closed || this.#session !== s) return;
    this.#session = this.#sessionOf(s.token, block.lease_duration, block.renewable);
  }

  #sessionOf(token: string, leaseSeconds: unknown, renewable: unknown): Session {
    const now = this.#clock.now();
    const leaseMs = typeof leaseSeconds === "number" && Number.isFinite(leaseSeconds) && leaseSeconds > 0 ? leaseSeconds * 1000 : 0;
    // A lease of 0 is a token that does not expire.
    if (leaseMs === 0) return { token, expiresAt: Infinity, renewAt: Infinity, renewable: false, marginMs: 0 };
    return {
      token,
      expiresAt: now + leaseMs,
      renewAt: now + leaseMs * RENEW_AT_FRACTION,
      renewable: renewable === true,
      marginMs: Math.min(EXPIRY_MARGIN_MS, leaseMs / 10),
    };
  }

  // --- helpers --------------------------------------------------------------------------------

  #enter(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new KmsError("KMS_CLOSED", "vault: this provider has been closed", { provider: PROVIDER_ID });
    if (signal?.aborted) throw abortError(signal);
  }

  #call(operation: string, path: string, capability: Capability, keyId?: string): VaultCall {
    return {
      operation,
      path,
      capability,
      ...(keyId === undefined ? {} : { keyId }),
      mount: this.mountPath,
      endpoint: this.endpoint,
      requestTimeoutMs: this.#settings.requestTimeoutMs,
    };
  }

  /**
   * KMS_CONFIG_INVALID, not KMS_PROVIDER_ERROR: nothing failed unexpectedly; the key exists and
   * answers, but is configured in a way this provider must not use, and only an operator can fix it.
   */
  #notDerived(name: string): KmsError {
    return new KmsError(
      "KMS_CONFIG_INVALID",
      `vault: transit key "${name}" at mount "${this.mountPath}" is not a derived key, so Vault would ignore the encryption context ` +
        `and a data key wrapped for one tenant would unwrap for any other; ${derivedFix(this.mountPath)}`,
      { provider: PROVIDER_ID },
    );
  }

  #remediation(error: KmsError, name: string, grant: string): string {
    const byCode: Partial<Record<KmsErrorCode, string>> = {
      KMS_ACCESS_DENIED: `${grant} (or replace an expired or revoked token)`,
      KMS_KEY_NOT_FOUND: `create the key: vault write -f ${this.mountPath}/keys/${name} derived=true`,
      KMS_CONFIG_INVALID: derivedFix(this.mountPath),
      KMS_UNAVAILABLE: `Vault could not be asked (${error.code}): check the endpoint and that Vault is unsealed, then validate again`,
      KMS_TIMEOUT: `Vault did not answer in time (${error.code}): check the endpoint and Vault's load, then validate again`,
      KMS_THROTTLED: "Vault's rate limit quota refused the check: validate again later",
    };
    return byCode[error.code] ?? `see ${error.docsUrl}`;
  }
}

/** The capabilities Vault reports for each of `paths` (in `data`, or at the top level for old versions). */
function capabilitiesOf(body: unknown, paths: readonly string[], call: VaultCall): Map<string, readonly string[]> {
  const data = isRecord(body) && isRecord(body.data) ? body.data : isRecord(body) ? body : {};
  const out = new Map<string, readonly string[]>();
  for (const path of paths) {
    const caps = data[path];
    if (!Array.isArray(caps) || !caps.every((c) => typeof c === "string")) throw unexpected(call, "no capabilities for a path asked about");
    out.set(path, caps as string[]);
  }
  return out;
}

function policyStanza(path: string, capability: Capability): string {
  return `path "${path}" { capabilities = ["${capability}"] }`;
}

function derivedFix(mount: string): string {
  return (
    `use a derived key: vault write -f ${mount}/keys/<name> derived=true ` +
    "(an existing key cannot be made derived: create a new one, point the tenant at it, and re-wrap existing envelopes with kms.rewrap)"
  );
}

function keyName(keyId: unknown): string {
  if (typeof keyId !== "string" || vaultKeyIdProblem(keyId) !== undefined) throw inputError(vaultKeyIdProblem(String(keyId))!);
  return keyId;
}

function inputError(message: string): KmsError {
  return new KmsError("INPUT_INVALID", `vault: ${message}`, { provider: PROVIDER_ID });
}

function authFailed(keyId: string): KmsError {
  return new KmsError("ENVELOPE_AUTH_FAILED", `vault: the wrapped data key does not decrypt under transit key "${keyId}" with this encryption context`, {
    provider: PROVIDER_ID,
  });
}

function abortError(signal: AbortSignal): KmsError {
  return isKmsError(signal.reason) ? signal.reason : new KmsError("KMS_TIMEOUT", "vault: the call was cancelled", { provider: PROVIDER_ID });
}

/** `promise`, or the signal's reason as soon as it aborts (node-vault cannot cancel the request itself). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    if (signal.aborted) {
      promise.catch(() => {}); // its outcome no longer matters, but must never be unhandled
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
