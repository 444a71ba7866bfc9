/**
 * Azure Key Vault keys over their REST API (`@azure/keyvault-keys` 4.10 runs against it unchanged),
 * served over HTTPS on 127.0.0.1 with a certificate generated at `start()` (unless one is given): the
 * SDK sends bearer tokens only over TLS in older versions, and testing the provider's TLS path is
 * part of the point. Clients trust the certificate per client (`clientOptions()` → `tlsOptions.ca`);
 * nothing turns certificate verification off.
 *
 * What it models as the service does:
 * - **challenge-based auth**: a request without `Authorization` is answered `401` with
 *   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
 *   resource="https://vault.azure.net"` (`managedhsm.azure.net` for a Managed HSM). It is logged as
 *   the operation `Challenge`: every new SDK client sends one before its first real request. A
 *   bearer token names its identity (`credential(identity)` makes such tokens); another token is `401`.
 * - **RBAC per identity**: `setPermissions(identity, ["get","wrapKey",…])`; any other operation is
 *   `403 Forbidden` / innererror `ForbiddenByRbac`, whose message names the data action
 *   (`Microsoft.KeyVault/vaults/keys/wrap/action`), as Key Vault's does. Identities not set may do everything.
 * - **keys and versions**: RSA 2048/3072/4096 (RSA-OAEP, RSA-OAEP-256, done here with node:crypto)
 *   and, on a Managed HSM emulator, `oct-HSM` 256 (A256KW). Versions are 32 hex digits; `kid` is
 *   `<url>/keys/<name>/<version>` (the SDK sends crypto calls to `kid`'s origin). `GetKey` returns
 *   public parts only (`n`, `e`), never `d`… or `k`. A crypto call without a version uses the
 *   current one and its `kid` names it.
 * - **key management**: `ListKeyVersions` (`GET /keys/<name>/versions`, paged by `nextLink`, 25 a
 *   page unless `maxresults` says otherwise), `UpdateKey` (`PATCH /keys/<name>/<version>`: the
 *   `enabled` attribute of that version, or of the current one when the path names none, as Key
 *   Vault's attributes are per version), `DeleteKey` (`DELETE /keys/<name>`: soft delete, every
 *   version at once; afterwards the name is `404 KeyNotFound` and `GetDeletedKey`,
 *   `GET /deletedkeys/<name>`, answers with its `recoveryId` and `scheduledPurgeDate`, the vault's
 *   `retentionDays` ahead). Deletion completes at once here (Key Vault's is asynchronous).
 * - **errors**: `404 KeyNotFound`; a disabled version refuses crypto with `403 Forbidden` /
 *   innererror `KeyDisabled` (GetKey still answers, `enabled: false`); a ciphertext that does not
 *   unwrap is `400 BadParameter`; `api-version` is required (parsed with URLSearchParams: the SDK
 *   sends it as `api%2Dversion`).
 *
 * Injected faults answer as Key Vault does: throttle → `429 Throttled` with `Retry-After`
 * (`throttleRetryAfterSeconds`); serverError → that status with `InternalServerError` (or
 * `ServiceUnavailable` for 503); accessDenied → `403 ForbiddenByRbac` for the operation's data
 * action; keyDisabled → `403 KeyDisabled`; keyNotFound → `404 KeyNotFound`. The challenge is answered
 * before any fault.
 *
 * Request bodies are never logged: the log holds the operation, the key name, the status, the
 * identity, and `details` (`apiVersion`, and `version` when the path named one).
 */
import { KeyObject, constants, createCipheriv, createDecipheriv, createHash, generateKeyPair, privateDecrypt, publicEncrypt, randomBytes } from "node:crypto";
import {
  type AuthResult,
  Emulator,
  type EmulatorOptions,
  EmulatorReply,
  type EmulatorRequest,
  type EmulatorResponse,
  type FaultKind,
  type RoutedRequest,
  newRequestId,
} from "./framework";
import { EmulatorCertificate } from "./certificate";

/** Key Vault's names for the key operations this emulator serves, as logged. */
export const AZURE_KEY_VAULT_OPERATIONS = ["CreateKey", "GetKey", "RotateKey", "WrapKey", "UnwrapKey", "ListKeyVersions", "UpdateKey", "DeleteKey", "GetDeletedKey"] as const;
export type AzureKeyVaultOperation = (typeof AZURE_KEY_VAULT_OPERATIONS)[number];

/** The operation name logged for the token-less request every new client sends first (answered 401). */
export const AZURE_CHALLENGE_OPERATION = "Challenge";

/** Access-policy key permissions (the names `setPermissions` takes). */
export type AzureKeyPermission = "get" | "list" | "create" | "update" | "delete" | "rotate" | "wrapKey" | "unwrapKey";

/** Each operation's permission and RBAC data action (and a Managed HSM's, where its name is not derived). */
const ACCESS: Readonly<Record<AzureKeyVaultOperation, { permission: AzureKeyPermission; dataAction: string; hsmDataAction?: string }>> = {
  CreateKey: { permission: "create", dataAction: "Microsoft.KeyVault/vaults/keys/create/action" },
  GetKey: { permission: "get", dataAction: "Microsoft.KeyVault/vaults/keys/read" },
  RotateKey: { permission: "rotate", dataAction: "Microsoft.KeyVault/vaults/keys/rotate/action" },
  WrapKey: { permission: "wrapKey", dataAction: "Microsoft.KeyVault/vaults/keys/wrap/action" },
  UnwrapKey: { permission: "unwrapKey", dataAction: "Microsoft.KeyVault/vaults/keys/unwrap/action" },
  ListKeyVersions: { permission: "list", dataAction: "Microsoft.KeyVault/vaults/keys/read" },
  UpdateKey: { permission: "update", dataAction: "Microsoft.KeyVault/vaults/keys/update/action", hsmDataAction: "Microsoft.KeyVault/managedHsm/keys/write/action" },
  DeleteKey: { permission: "delete", dataAction: "Microsoft.KeyVault/vaults/keys/delete" },
  GetDeletedKey: { permission: "get", dataAction: "Microsoft.KeyVault/vaults/deletedKeys/read/action", hsmDataAction: "Microsoft.KeyVault/managedHsm/keys/deletedKeys/read/action" },
};

/** The identity a `credential()` speaks for unless told otherwise. */
export const AZURE_EMULATOR_IDENTITY = "kms-app";

/** A TokenCredential (structurally `@azure/core-auth`'s) whose tokens name an identity. */
export interface EmulatorTokenCredential {
  getToken(scopes: string | string[], options?: unknown): Promise<{ token: string; expiresOnTimestamp: number }>;
}

export interface AzureKeyVaultEmulatorOptions extends EmulatorOptions {
  /** The Entra tenant named in the challenge; default a fixed GUID. */
  readonly tenantId?: string;
  /** Behave as a Managed HSM (challenge resource `https://managedhsm.azure.net`, `oct-HSM` keys). Default false. */
  readonly managedHsm?: boolean;
  /** The soft-delete retention in days (7-90): `recoverableDays`, and how far ahead a deleted key's purge is. Default 90. */
  readonly retentionDays?: number;
}

/** A soft-deleted key, for assertions. */
export interface AzureDeletedKeyInfo {
  readonly recoveryId: string;
  readonly deletedDate: Date;
  readonly scheduledPurgeDate: Date;
  readonly versions: readonly AzureKeyVersionInfo[];
}

export type AzureKeyType = "RSA" | "RSA-HSM" | "oct-HSM";

/** What `createKey` makes; default RSA 2048. */
export interface AzureCreateKeyOptions {
  readonly kty?: AzureKeyType;
  /** RSA: 2048, 3072 or 4096; oct-HSM: 256. */
  readonly keySize?: number;
}

/** A key version as the emulator holds it, for assertions (no key material). */
export interface AzureKeyVersionInfo {
  readonly version: string;
  readonly kid: string;
  readonly enabled: boolean;
}

interface KeyVersionRecord {
  readonly version: string;
  readonly kty: AzureKeyType;
  readonly keySize: number;
  readonly keyOps: readonly string[];
  /** RSA: the private key (its public half is what GetKey shows). */
  readonly privateKey?: KeyObject;
  /** oct-HSM: the AES key. */
  readonly secret?: Buffer;
  readonly created: number;
  updated: number;
  enabled: boolean;
}

/** What a request is, beyond the framework's routing. */
export interface AzureCallState {
  /** The version the path named ("" for the current one). */
  readonly version: string;
  readonly body: Record<string, unknown> | undefined;
  /** The query string (ListKeyVersions' `maxresults` and page token). */
  readonly query?: URLSearchParams;
}

export type AzureKeyVaultRoute = RoutedRequest<AzureCallState>;

const TOKEN_PREFIX = "kv-emulator.";
const IDENTITY = /^[A-Za-z0-9._@-]{1,128}$/;
const KEY_NAME = /^[0-9A-Za-z-]{1,127}$/;
const VERSION = /^[0-9a-f]{32}$/;
const API_VERSION = /^(?:7\.\d|\d{4}-\d{2}-\d{2}(?:-preview)?)$/;
const RSA_SIZES = new Set([2048, 3072, 4096]);
const DEFAULT_KEY_OPS = ["encrypt", "decrypt", "wrapKey", "unwrapKey"];
const AES_KW_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex");
const SERVICE_VERSION = "1.9.2000.1";
/** ListKeyVersions' page size when `maxresults` is not given (Key Vault's), and its largest. */
const DEFAULT_PAGE_SIZE = 25;
const MAX_PAGE_SIZE = 25;

type Json = Record<string, unknown>;

/** An Azure Key Vault (or Managed HSM) emulator on 127.0.0.1, over HTTPS. See the module comment. */
export class AzureKeyVaultEmulator extends Emulator<AzureCallState> {
  protected readonly protocol = "azure-key-vault";
  readonly tenantId: string;
  readonly managedHsm: boolean;
  /** Seconds announced in `Retry-After` by the throttle fault. */
  throttleRetryAfterSeconds = 1;
  readonly #certificate: EmulatorCertificate;
  readonly #keys = new Map<string, KeyVersionRecord[]>();
  readonly #deleted = new Map<string, { versions: KeyVersionRecord[]; deletedDate: number }>();
  readonly #retentionDays: number;
  readonly #permissions = new Map<string, ReadonlySet<string> | "*">();

  constructor(options: AzureKeyVaultEmulatorOptions = {}) {
    // The certificate is generated when the emulator first listens (selfsigned is asynchronous),
    // unless one is given; `ca` reads it from there.
    const certificate = new EmulatorCertificate(options.tls);
    super({ ...options, tls: certificate.material });
    this.#certificate = certificate;
    this.tenantId = options.tenantId ?? "72f988bf-86f1-41af-91ab-2d7cd011db47";
    this.managedHsm = options.managedHsm ?? false;
    this.#retentionDays = options.retentionDays ?? 90;
    if (!(Number.isInteger(this.#retentionDays) && this.#retentionDays >= 7 && this.#retentionDays <= 90)) throw new RangeError("retentionDays must be a whole number from 7 to 90");
  }

  /** The PEM certificate clients must trust (the generated self-signed one, or the one given); after `start()`. */
  get ca(): string {
    return this.#certificate.pem(this.protocol);
  }

  // --- test helpers -----------------------------------------------------------------------------

  /**
   * Options for `KeyClient` / `CryptographyClient` (spread them into the client's options): trusts
   * `ca` for this client only, one attempt per call (so counts are exact), and accepts the challenge's
   * resource for a 127.0.0.1 host.
   */
  clientOptions(): { tlsOptions: { ca: string }; retryOptions: { maxRetries: number }; disableChallengeResourceVerification: boolean } {
    return { tlsOptions: { ca: this.ca }, retryOptions: { maxRetries: 0 }, disableChallengeResourceVerification: true };
  }

  /** A TokenCredential whose tokens authenticate as `identity` (default `AZURE_EMULATOR_IDENTITY`). */
  credential(identity: string = AZURE_EMULATOR_IDENTITY): EmulatorTokenCredential {
    if (!IDENTITY.test(identity)) throw new RangeError("identity must be 1-128 letters, digits or ._@-");
    return { getToken: async () => ({ token: `${TOKEN_PREFIX}${identity}`, expiresOnTimestamp: Date.now() + 3_600_000 }) };
  }

  /** The Entra object id the emulator gives `identity` (a GUID derived from its name), as RBAC messages name it. */
  objectId(identity: string): string {
    const hex = createHash("sha256").update(identity).digest("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
  }

  /** Replaces the key permissions of `identity` (`"*"`: everything; `[]`: nothing). */
  setPermissions(identity: string, permissions: readonly AzureKeyPermission[] | "*"): void {
    this.#permissions.set(identity, permissions === "*" ? "*" : new Set(permissions));
  }

  /** Creates a key (or, if the name exists, a new current version of it); returns the new version's `kid`. */
  async createKey(name: string, options: AzureCreateKeyOptions = {}): Promise<string> {
    if (!KEY_NAME.test(name)) throw new RangeError("key names are 1-127 letters, digits and dashes");
    const problem = this.#keySpecProblem(options.kty ?? "RSA", options.keySize);
    if (problem !== undefined) throw new RangeError(problem);
    const record = await this.#newVersion(name, options.kty ?? "RSA", options.keySize, DEFAULT_KEY_OPS);
    return this.#kid(name, record.version);
  }

  /** Rotates a key now; returns the new version's `kid`. */
  async rotateKey(name: string): Promise<string> {
    const current = this.#current(this.#helperVersions(name));
    return this.#kid(name, (await this.#newVersion(name, current.kty, current.keySize, current.keyOps)).version);
  }

  /** Disables a version (default the current one): it then refuses crypto with KeyDisabled. */
  disableKey(name: string, version?: string): void {
    this.#helperVersion(name, version).enabled = false;
  }

  enableKey(name: string, version?: string): void {
    this.#helperVersion(name, version).enabled = true;
  }

  /** A soft-deleted key (undefined when `name` is not deleted). */
  deletedKey(name: string): AzureDeletedKeyInfo | undefined {
    const deleted = this.#deleted.get(name);
    if (deleted === undefined) return undefined;
    return {
      recoveryId: `${this.url}/deletedkeys/${name}`,
      deletedDate: new Date(deleted.deletedDate * 1000),
      scheduledPurgeDate: new Date((deleted.deletedDate + this.#retentionDays * 86_400) * 1000),
      versions: deleted.versions.map((v) => ({ version: v.version, kid: this.#kid(name, v.version), enabled: v.enabled })),
    };
  }

  /** A key's versions, oldest first (the last is current). */
  versions(name: string): readonly AzureKeyVersionInfo[] {
    return this.#helperVersions(name).map((v) => ({ version: v.version, kid: this.#kid(name, v.version), enabled: v.enabled }));
  }

  // --- protocol ---------------------------------------------------------------------------------

  protected override responseHeaders(): Record<string, string> {
    return { "x-ms-request-id": newRequestId(), "x-ms-keyvault-service-version": SERVICE_VERSION, "x-ms-keyvault-region": "local" };
  }

  protected route(req: EmulatorRequest): AzureKeyVaultRoute {
    const parts = req.url.pathname.split("/").slice(1); // "/keys/a/b" → ["keys","a","b"]
    const name = parts[1] ?? "";
    if ((parts[0] !== "keys" && parts[0] !== "deletedkeys") || !KEY_NAME.test(name)) throw new EmulatorReply(badParameter("The request URI is not supported by this emulator."));
    const keyId = name;
    if (header(req, "authorization") === undefined) return { operation: AZURE_CHALLENGE_OPERATION, keyId };
    const apiVersion = new URLSearchParams(req.url.search).get("api-version");
    if (apiVersion === null || !API_VERSION.test(apiVersion)) throw new EmulatorReply(badParameter("The api-version query parameter is missing or not supported."));
    const rest = parts.slice(2);
    const method = req.method.toUpperCase();
    let operation: AzureKeyVaultOperation | undefined;
    let version = "";
    if (parts[0] === "deletedkeys") {
      operation = method === "GET" && rest.length === 0 ? "GetDeletedKey" : undefined;
    } else if (method === "GET" && rest.length === 1 && rest[0] === "versions") {
      operation = "ListKeyVersions";
    } else if (method === "PATCH" && rest.length <= 1) {
      // `/keys/k/` (the SDK's form without a version: the current one) or `/keys/k/<version>`.
      operation = "UpdateKey";
      version = rest[0] ?? "";
    } else if (method === "DELETE" && rest.length === 0) {
      operation = "DeleteKey";
    } else if (method === "GET" && rest.length <= 1) {
      operation = "GetKey";
      version = rest[0] ?? "";
    } else if (method === "POST" && rest.length === 1 && (rest[0] === "create" || rest[0] === "rotate")) {
      operation = rest[0] === "create" ? "CreateKey" : "RotateKey";
    } else if (method === "POST" && (rest.length === 1 || rest.length === 2)) {
      // `/keys/k/wrapkey`, `/keys/k//wrapkey` (the SDK's form without a version) or `/keys/k/<version>/wrapkey`.
      const action = rest[rest.length - 1];
      version = rest.length === 2 ? rest[0]! : "";
      operation = action === "wrapkey" ? "WrapKey" : action === "unwrapkey" ? "UnwrapKey" : undefined;
    }
    if (operation === undefined) throw new EmulatorReply(badParameter("The request URI is not supported by this emulator."));
    if (version !== "" && !VERSION.test(version)) throw new EmulatorReply(keyNotFound(name));
    const details = { apiVersion, ...(version === "" ? {} : { version }) };
    return { operation, keyId, details, state: { version, body: parseObject(req.body), query: new URLSearchParams(req.url.search) } };
  }

  protected authenticate(req: EmulatorRequest, routed: AzureKeyVaultRoute): AuthResult {
    if (routed.operation === AZURE_CHALLENGE_OPERATION) return { ok: false, response: this.#challenge() };
    const [scheme, token] = (header(req, "authorization") ?? "").split(" ");
    const identity = scheme === "Bearer" && token?.startsWith(TOKEN_PREFIX) ? token.slice(TOKEN_PREFIX.length) : undefined;
    if (identity === undefined || !IDENTITY.test(identity)) {
      return { ok: false, response: { ...this.#challenge(), body: error("Unauthorized", "AKV10032: Invalid issuer or token.") } };
    }
    const allowed = this.#permissions.get(identity) ?? "*";
    const access = ACCESS[routed.operation as AzureKeyVaultOperation];
    if (allowed !== "*" && !allowed.has(access.permission)) return { ok: false, identity, response: this.#forbidden(routed, identity) };
    return { ok: true, identity };
  }

  protected faultResponse(fault: Exclude<FaultKind, "latency" | "connectionReset">, routed: AzureKeyVaultRoute, status: number, identity: string | undefined): EmulatorResponse {
    switch (fault) {
      case "throttle":
        return {
          status: 429,
          headers: { "retry-after": String(this.throttleRetryAfterSeconds) },
          body: error("Throttled", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"),
        };
      case "serverError":
        return status === 503
          ? { status, body: error("ServiceUnavailable", "The service is temporarily unavailable. Please retry later.") }
          : { status, body: error("InternalServerError", "An unexpected error occurred.") };
      case "accessDenied":
        return this.#forbidden(routed, identity ?? "unknown");
      case "keyDisabled":
        return keyDisabled(routed.operation);
      case "keyNotFound":
        return keyNotFound(routed.keyId ?? "");
    }
  }

  protected async handle(_req: EmulatorRequest, routed: AzureKeyVaultRoute): Promise<EmulatorResponse> {
    const name = routed.keyId!;
    const { version, body } = routed.state!;
    switch (routed.operation as AzureKeyVaultOperation) {
      case "CreateKey": {
        if (body === undefined) throw new EmulatorReply(badParameter("The request body is not valid JSON."));
        const kty = body.kty;
        const keySize = body.key_size;
        if (kty !== "RSA" && kty !== "RSA-HSM" && kty !== "oct-HSM") throw new EmulatorReply(badParameter("The key type (kty) is not supported."));
        if (keySize !== undefined && typeof keySize !== "number") throw new EmulatorReply(badParameter("key_size must be a number."));
        const problem = this.#keySpecProblem(kty, keySize);
        if (problem !== undefined) throw new EmulatorReply(badParameter(problem));
        const ops = Array.isArray(body.key_ops) && body.key_ops.every((o) => typeof o === "string") ? (body.key_ops as string[]) : DEFAULT_KEY_OPS;
        return ok(this.#bundle(name, await this.#newVersion(name, kty, keySize, ops)));
      }
      case "GetKey":
        return ok(this.#bundle(name, this.#version(name, version)));
      case "RotateKey": {
        const current = this.#current(this.#versions(name));
        return ok(this.#bundle(name, await this.#newVersion(name, current.kty, current.keySize, current.keyOps)));
      }
      case "WrapKey":
      case "UnwrapKey":
        return ok(this.#keyOperation(routed.operation as "WrapKey" | "UnwrapKey", name, this.#version(name, version), body));
      case "ListKeyVersions":
        return ok(this.#listVersions(name, routed.state!.query ?? new URLSearchParams()));
      case "UpdateKey": {
        if (body === undefined) throw new EmulatorReply(badParameter("The request body is not valid JSON."));
        const attributes = body.attributes;
        if (attributes !== undefined && (typeof attributes !== "object" || attributes === null || Array.isArray(attributes))) throw new EmulatorReply(badParameter("attributes must be an object."));
        const enabled = (attributes as Json | undefined)?.enabled;
        if (enabled !== undefined && typeof enabled !== "boolean") throw new EmulatorReply(badParameter("attributes.enabled must be true or false."));
        const record = this.#version(name, version);
        if (enabled !== undefined) {
          record.enabled = enabled;
          record.updated = Math.floor(this.now().getTime() / 1000);
        }
        return ok(this.#bundle(name, record));
      }
      case "DeleteKey": {
        const versions = this.#versions(name);
        this.#keys.delete(name);
        this.#deleted.set(name, { versions, deletedDate: Math.floor(this.now().getTime() / 1000) });
        return ok(this.#deletedBundle(name));
      }
      case "GetDeletedKey":
        if (!this.#deleted.has(name)) throw new EmulatorReply(deletedKeyNotFound(name));
        return ok(this.#deletedBundle(name));
    }
  }

  // --- internals --------------------------------------------------------------------------------

  #keyOperation(operation: "WrapKey" | "UnwrapKey", name: string, record: KeyVersionRecord, body: Json | undefined): Json {
    if (!record.enabled) throw new EmulatorReply(keyDisabled(operation));
    const alg = body?.alg;
    const value = typeof body?.value === "string" && /^[A-Za-z0-9_-]*$/.test(body.value) ? Buffer.from(body.value, "base64url") : undefined;
    if (typeof alg !== "string" || value === undefined) throw new EmulatorReply(badParameter("The request must carry alg and a base64url value."));
    const wrap = operation === "WrapKey";
    let out: Buffer | undefined;
    if (record.privateKey !== undefined && (alg === "RSA-OAEP" || alg === "RSA-OAEP-256")) {
      const key = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: alg === "RSA-OAEP" ? "sha1" : "sha256" };
      try {
        out = wrap ? publicEncrypt({ key: record.privateKey, ...key }, value) : privateDecrypt({ key: record.privateKey, ...key }, value);
      } catch {
        out = undefined;
      }
    } else if (record.secret !== undefined && alg === "A256KW") {
      out = aesKeyWrap(wrap, record.secret, value);
    } else {
      throw new EmulatorReply(badParameter(`Algorithm ${/^[A-Za-z0-9-]{1,32}$/.test(alg) ? alg : "(invalid)"} is not supported for key type ${record.kty}.`));
    }
    if (out === undefined) throw new EmulatorReply(badParameter(wrap ? "The value could not be wrapped with this key." : "The ciphertext could not be unwrapped with this key."));
    return { kid: this.#kid(name, record.version), value: out.toString("base64url") };
  }

  #keySpecProblem(kty: AzureKeyType, keySize: number | undefined): string | undefined {
    if (kty === "oct-HSM") {
      if (!this.managedHsm) return "Key type oct-HSM is only supported by a Managed HSM.";
      return keySize === undefined || keySize === 256 ? undefined : "oct-HSM keys are 256 bits in this emulator.";
    }
    return keySize === undefined || RSA_SIZES.has(keySize) ? undefined : "RSA key_size must be 2048, 3072 or 4096.";
  }

  async #newVersion(name: string, kty: AzureKeyType, keySize: number | undefined, keyOps: readonly string[]): Promise<KeyVersionRecord> {
    const created = Math.floor(this.now().getTime() / 1000);
    const size = keySize ?? (kty === "oct-HSM" ? 256 : 2048);
    const material = kty === "oct-HSM" ? { secret: randomBytes(32) } : { privateKey: await rsaPrivateKey(size) };
    const record: KeyVersionRecord = { version: randomBytes(16).toString("hex"), kty, keySize: size, keyOps: [...keyOps], ...material, created, updated: created, enabled: true };
    const versions = this.#keys.get(name) ?? [];
    versions.push(record);
    this.#keys.set(name, versions);
    return record;
  }

  #bundle(name: string, record: KeyVersionRecord): Json {
    const jwk: Json = { kid: this.#kid(name, record.version), kty: record.kty, key_ops: record.keyOps };
    if (record.privateKey !== undefined) {
      const { n, e } = record.privateKey.export({ format: "jwk" }); // only the public members are copied
      Object.assign(jwk, { n, e });
    }
    return {
      key: jwk,
      attributes: this.#attributes(record),
      tags: {},
      ...(this.managedHsm ? { managed: false } : {}),
    };
  }

  /** One page of a key's versions (oldest first): `kid` and attributes only; `nextLink` names the next page. */
  #listVersions(name: string, query: URLSearchParams): Json {
    const versions = this.#versions(name);
    const asked = query.get("maxresults");
    const size = asked === null ? DEFAULT_PAGE_SIZE : /^[1-9][0-9]{0,2}$/.test(asked) && Number(asked) <= MAX_PAGE_SIZE ? Number(asked) : NaN;
    if (Number.isNaN(size)) throw new EmulatorReply(badParameter(`maxresults must be a whole number from 1 to ${MAX_PAGE_SIZE}.`));
    const token = query.get("$skiptoken");
    const start = token === null ? 0 : /^[0-9]{1,6}$/.test(token) ? Number(token) : NaN;
    if (!(start >= 0 && start <= versions.length)) throw new EmulatorReply(badParameter("The $skiptoken is not valid."));
    const end = Math.min(start + size, versions.length);
    const value = versions.slice(start, end).map((v) => ({ kid: this.#kid(name, v.version), attributes: this.#attributes(v), tags: {} }));
    const apiVersion = query.get("api-version") ?? "7.5";
    return { value, nextLink: end < versions.length ? `${this.url}/keys/${name}/versions?api-version=${encodeURIComponent(apiVersion)}&maxresults=${size}&$skiptoken=${end}` : null };
  }

  /** A DeletedKeyBundle: the current version's bundle, with its recovery id and dates. */
  #deletedBundle(name: string): Json {
    const deleted = this.#deleted.get(name)!;
    return {
      ...this.#bundle(name, this.#current(deleted.versions)),
      recoveryId: `${this.url}/deletedkeys/${name}`,
      deletedDate: deleted.deletedDate,
      scheduledPurgeDate: deleted.deletedDate + this.#retentionDays * 86_400,
    };
  }

  #attributes(record: KeyVersionRecord): Json {
    return { enabled: record.enabled, created: record.created, updated: record.updated, recoveryLevel: "Recoverable+Purgeable", recoverableDays: this.#retentionDays, exportable: false };
  }

  #kid(name: string, version: string): string {
    return `${this.url}/keys/${name}/${version}`;
  }

  #versions(name: string): KeyVersionRecord[] {
    const versions = this.#keys.get(name);
    if (versions === undefined) throw new EmulatorReply(keyNotFound(name));
    return versions;
  }

  #version(name: string, version: string): KeyVersionRecord {
    const versions = this.#versions(name);
    const record = version === "" ? this.#current(versions) : versions.find((v) => v.version === version);
    if (record === undefined) throw new EmulatorReply(keyNotFound(name));
    return record;
  }

  #current(versions: readonly KeyVersionRecord[]): KeyVersionRecord {
    return versions[versions.length - 1]!;
  }

  #helperVersions(name: string): KeyVersionRecord[] {
    const versions = this.#keys.get(name);
    if (versions === undefined) throw new RangeError(`no key named ${name}`);
    return versions;
  }

  #helperVersion(name: string, version: string | undefined): KeyVersionRecord {
    const versions = this.#helperVersions(name);
    const record = version === undefined ? this.#current(versions) : versions.find((v) => v.version === version);
    if (record === undefined) throw new RangeError(`key ${name} has no version ${String(version)}`);
    return record;
  }

  #challenge(): EmulatorResponse {
    const resource = this.managedHsm ? "https://managedhsm.azure.net" : "https://vault.azure.net";
    return {
      status: 401,
      headers: { "www-authenticate": `Bearer authorization="https://login.microsoftonline.com/${this.tenantId}", resource="${resource}"` },
      body: error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
    };
  }

  /** Key Vault's RBAC denial: the caller, the data action and the resource, in its own layout. */
  #forbidden(routed: AzureKeyVaultRoute, identity: string): EmulatorResponse {
    const access = ACCESS[routed.operation as AzureKeyVaultOperation] ?? ACCESS.GetKey;
    const vault = this.managedHsm ? "managedhsms/emulator" : "vaults/emulator";
    // A Managed HSM's local RBAC names its data actions `managedHsm/keys/…/action`.
    const dataAction = this.managedHsm ? (access.hsmDataAction ?? access.dataAction.replace("/vaults/", "/managedHsm/").replace(/\/read$/, "/read/action")) : access.dataAction;
    const message = [
      "Caller is not authorized to perform action on resource.",
      "If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.",
      `Caller: appid=${this.objectId(identity)};oid=${this.objectId(identity)};iss=https://sts.windows.net/${this.tenantId}/`,
      `Action: '${dataAction}'`,
      `Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/microsoft.keyvault/${vault}/keys/${(routed.keyId ?? "").toLowerCase()}'`,
      "Assignment: (not found)",
      "DecisionReason: 'DeniedWithNoValidRBAC' ",
      "Vault: emulator;location=local",
      "",
    ].join("\r\n");
    return { status: 403, body: error("Forbidden", message, "ForbiddenByRbac") };
  }
}

// --- wire helpers -------------------------------------------------------------------------------

function error(code: string, message: string, inner?: string): Json {
  return { error: { code, message, ...(inner === undefined ? {} : { innererror: { code: inner } }) } };
}

const ok = (body: Json): EmulatorResponse => ({ status: 200, body });

function badParameter(message: string): EmulatorResponse {
  return { status: 400, body: error("BadParameter", message) };
}

function keyNotFound(name: string): EmulatorResponse {
  const shown = KEY_NAME.test(name) ? name : "(invalid)";
  return {
    status: 404,
    body: error(
      "KeyNotFound",
      `A key with (name/id) ${shown} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
    ),
  };
}

function deletedKeyNotFound(name: string): EmulatorResponse {
  const shown = KEY_NAME.test(name) ? name : "(invalid)";
  return { status: 404, body: error("KeyNotFound", `Deleted Key not found: ${shown}`) };
}

function keyDisabled(operation: string): EmulatorResponse {
  const op = operation === "WrapKey" ? "wrapKey" : operation === "UnwrapKey" ? "unwrapKey" : "get";
  return { status: 403, body: error("Forbidden", `Operation ${op} is not allowed on a disabled key.`, "KeyDisabled") };
}

function header(req: EmulatorRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function parseObject(body: Buffer): Json | undefined {
  if (body.length === 0) return undefined;
  try {
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Json) : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 3394 AES key wrap (A256KW); undefined when an unwrap does not check out. */
function aesKeyWrap(wrap: boolean, key: Buffer, value: Buffer): Buffer | undefined {
  if (value.length < (wrap ? 16 : 24) || value.length % 8 !== 0) return undefined;
  try {
    const cipher = wrap ? createCipheriv("id-aes256-wrap", key, AES_KW_IV) : createDecipheriv("id-aes256-wrap", key, AES_KW_IV);
    return Buffer.concat([cipher.update(value), cipher.final()]);
  } catch {
    return undefined;
  }
}

function rsaPrivateKey(modulusLength: number): Promise<KeyObject> {
  return new Promise((resolve, reject) => generateKeyPair("rsa", { modulusLength }, (err, _publicKey, privateKey) => (err ? reject(err) : resolve(privateKey))));
}
