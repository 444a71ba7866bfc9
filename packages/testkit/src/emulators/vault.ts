/**
 * A HashiCorp Vault emulator: the transit secrets engine and the bits of Vault around it that a
 * transit client touches (token and AppRole auth, `sys/health`, `sys/capabilities-self`), over
 * Vault's HTTP API, so `@kms/vault` is tested through `node-vault` end to end. Semantics follow
 * Vault's own source (builtin/logical/transit, sdk/helper/keysutil); see
 * /work/shared/notes/sdk-wire.md §2.
 *
 * Endpoints (under `/v1/`; `<mount>` is any configured transit mount, default `transit`), with the
 * operation name each is logged under (`emulator.count("datakey")`):
 *
 * | operation               | request                                                           |
 * |-------------------------|-------------------------------------------------------------------|
 * | `datakey`               | POST `<mount>/datakey/{plaintext,wrapped}/:name` `{bits?, context?}` |
 * | `encrypt`               | POST `<mount>/encrypt/:name` `{plaintext, context?, key_version?}`  |
 * | `decrypt`               | POST `<mount>/decrypt/:name` `{ciphertext, context?}`               |
 * | `rewrap`                | POST `<mount>/rewrap/:name` `{ciphertext, context?, key_version?}`  |
 * | `keys.create`           | POST `<mount>/keys/:name` `{type?, derived?, exportable?}`          |
 * | `keys.read`             | GET `<mount>/keys/:name`                                            |
 * | `keys.rotate`           | POST `<mount>/keys/:name/rotate`                                    |
 * | `keys.config`           | POST `<mount>/keys/:name/config` `{min_decryption_version?, min_encryption_version?, deletion_allowed?}` |
 * | `keys.delete`           | DELETE `<mount>/keys/:name` (only once `deletion_allowed` is set; 204, the key and every version gone) |
 * | `keys.list`             | GET `<mount>/keys?list=1` (Node's HTTP server cannot parse the LIST verb) |
 * | `sys/health`            | GET `sys/health` (unauthenticated; `standbyok`, `*code` query parameters) |
 * | `sys/capabilities-self` | POST `sys/capabilities-self` `{paths: [...]}`                      |
 * | `approle.login`         | POST `auth/<approle mount>/login` `{role_id, secret_id}` (unauthenticated) |
 * | `token.renew-self`      | POST `auth/token/renew-self` `{increment?}`                         |
 * | `token.lookup-self`     | GET `auth/token/lookup-self`                                        |
 * | `unknown`               | anything else: 404 "no handler for route", or 405 for a known path with the wrong method |
 *
 * Each log entry carries the key name as `keyId`, the token's name as `identity` (never the token),
 * and `details`: `path` (the Vault path, as a policy names it) and `namespace` (the
 * `X-Vault-Namespace` header, when sent). Never a body.
 *
 * Keys are `aes256-gcm96` only. Ciphertexts are `vault:v<N>:base64(iv ‖ ct ‖ tag)`, AES-256-GCM under
 * the version's material or, for a derived key (`derived: true`), under HKDF-SHA256(material, info =
 * the request's `context`), so a wrong context fails to decrypt exactly as in Vault: HTTP 500
 * `cipher: message authentication failed`. A non-derived key ignores `context`, as Vault does.
 *
 * Auth: a request carries `X-Vault-Token`. A token has an allow-list of Vault path globs (`*` at the
 * end matches any suffix, `+` one path segment, as in Vault policies), each with every capability or,
 * written `{ path, capabilities }`, with only those; it is compared in constant time. A request needs
 * the capability of its method: GET `read` (`list` for a list), POST/PUT `update` (or `create`),
 * DELETE `delete`. Where several rules match a path, their capabilities add up (Vault takes the most
 * specific rule alone: keep test policies free of overlaps). A missing, unknown, revoked or expired token gets 403 `{"errors":["permission denied"]}`; a
 * path outside the list gets Vault's other form, 403 `{"errors":["1 error occurred:\n\t* permission
 * denied\n\n"]}`. `sys/capabilities-self`, `auth/token/lookup-self` and `auth/token/renew-self` are
 * open to every valid token (Vault's `default` policy). AppRole logins issue tokens with the role's
 * paths and TTL, renewable up to the role's max TTL; expiry uses the emulator's `now`, so tests expire
 * tokens without waiting. Capabilities reported: `["root"]` for a token whose list holds `"*"`, the
 * capabilities of the rules matching a path on the list (all of `create delete list read update` for
 * a plain glob), `["deny"]` otherwise.
 *
 * Sealed (`seal()`): every request gets 503 `{"errors":["Vault is sealed"]}`, `sys/health` 503.
 *
 * Injected faults render as Vault would answer:
 * - `throttle`: 429 `request path "<path>": rate limit quota exceeded`;
 * - `serverError`: the status (default 500) with `internal error`;
 * - `accessDenied`: 403, the "1 error occurred" form;
 * - `keyNotFound`: `keys.read` 404 `{"errors":[]}`; `keys.rotate` 400 `key not found`;
 *   `keys.config` 400 `no existing key named <name> could be found`; `keys.delete` 400 `error
 *   deleting policy <name>: could not delete key; not found`; anything else 400 `encryption key not found`;
 * - `keyDisabled`: Vault has no disabled keys. The closest real state is a key version below the
 *   key's `min_decryption_version` / `min_encryption_version`, so every operation answers 400
 *   `ciphertext or signature version is disallowed by policy (too old)`.
 *
 * Choices where Vault depends on more than this emulator models: encrypting under a missing key
 * creates it only with `autoCreateKeys` (Vault's upsert, for a token with `create`); otherwise it is
 * 400 `encryption key not found`, as Vault answers with upsert disabled. Key create, rotate and config
 * answer 200 with the key's read payload (Vault 1.12+; older versions answered 204).
 */
import { createHash, hkdfSync, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import {
  type AuthResult,
  EmulatedKey,
  Emulator,
  type EmulatorOptions,
  EmulatorReply,
  type EmulatorRequest,
  type EmulatorResponse,
  type FaultKind,
  type KeyVersion,
  type RoutedRequest,
  newRequestId,
} from "./framework";

/** A capability of a Vault policy rule. */
export type VaultCapability = "create" | "read" | "update" | "delete" | "list";

/** A Vault path glob relative to `/v1/` with every capability, or with only the ones listed. */
export type VaultPathRule = string | { readonly path: string; readonly capabilities: readonly VaultCapability[] };

/** A static token: its allow-list of Vault path rules. */
export interface VaultTokenSpec {
  /** Shown as `identity` in the request log; default `token-<n>`. */
  readonly name?: string;
  readonly paths: readonly VaultPathRule[];
}

/** An AppRole role: the credentials that log in, and what the issued tokens may do. */
export interface VaultAppRoleSpec {
  readonly roleId: string;
  readonly secretId: string;
  /** Path rules of the issued tokens. */
  readonly paths: readonly VaultPathRule[];
  /** Lifetime of an issued token, and of each renewal; default 3600. */
  readonly ttlSeconds?: number;
  /** No renewal extends a token past this age; default 32 days (Vault's default max TTL). */
  readonly maxTtlSeconds?: number;
  /** Reported in `auth.policies`; default `["default"]`. */
  readonly policies?: readonly string[];
}

export interface VaultEmulatorOptions extends EmulatorOptions {
  /** Transit mount paths; default `["transit"]`. */
  readonly mounts?: readonly string[];
  /** Static tokens by token value; default `{ root: { name: "root", paths: ["*"] } }`. */
  readonly tokens?: Readonly<Record<string, VaultTokenSpec>>;
  /** AppRole roles by role name. */
  readonly appRoles?: Readonly<Record<string, VaultAppRoleSpec>>;
  /** Mount of the AppRole auth method; default `approle`. */
  readonly appRoleMount?: string;
  /** `encrypt` under a missing key creates it (Vault's upsert). Default false: 400 `encryption key not found`. */
  readonly autoCreateKeys?: boolean;
  /** Reported by `sys/health`; default `1.15.0`. */
  readonly version?: string;
}

/** Options of `createKey`. */
export interface VaultCreateKeyOptions {
  /** Default true: the emulator's keys are derived unless told otherwise (what `@kms/vault` needs). */
  readonly derived?: boolean;
  /** Default: the first mount. */
  readonly mount?: string;
}

const KEY_NAME = /^\w(?:[\w.-]*\w)?$/;
const MOUNT_PATH = /^[\w.-]+(?:\/[\w.-]+)*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const ALL_CAPABILITIES = ["create", "delete", "list", "read", "update"];
/** Paths Vault's `default` policy opens to every token. */
const DEFAULT_POLICY_PATHS = new Set(["sys/capabilities-self", "auth/token/lookup-self", "auth/token/renew-self"]);
const DEFAULT_TTL_SECONDS = 3600;
const DEFAULT_MAX_TTL_SECONDS = 32 * 24 * 3600;

const DENIED = "permission denied";
const DENIED_MULTI = "1 error occurred:\n\t* permission denied\n\n";
const KEY_NOT_FOUND = "encryption key not found";
const DELETE_NOT_FOUND = "could not delete key; not found";
const TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)";
const AUTH_FAILED = "cipher: message authentication failed";
const MISSING_CONTEXT =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";

interface TransitKey {
  readonly key: EmulatedKey;
  readonly derived: boolean;
  readonly exportable: boolean;
  minDecryptionVersion: number;
  minEncryptionVersion: number;
  deletionAllowed: boolean;
}

interface TokenState {
  readonly digest: Buffer;
  /** The token itself: only ever returned to its own holder (lookup-self, login). */
  readonly token: string;
  readonly name: string;
  paths: readonly VaultPathRule[];
  readonly accessor: string;
  readonly issuedAt: number;
  readonly policies: readonly string[];
  /** AppRole tokens only. */
  readonly lease?: { ttlMs: number; maxExpiresAt: number; expiresAt: number };
}

interface RoleEntry {
  readonly name: string;
  readonly spec: VaultAppRoleSpec;
  readonly roleDigest: Buffer;
  readonly secretDigest: Buffer;
}

/** What a request is, parsed once from its method and URL. */
interface VaultRoute {
  readonly operation: string;
  /** The Vault path as policies name it (no `/v1/`, no query; `keys/` for a list). */
  readonly path: string;
  readonly mount?: string;
  readonly name?: string;
  /** `datakey/<type>`. */
  readonly dataKeyType?: string;
  /** A known path asked with a method it does not serve. */
  readonly badMethod?: boolean;
  /** The policy capability the request needs (from its method). */
  readonly capability?: VaultCapability;
}

/** A Vault server with the transit engine, token and AppRole auth, on 127.0.0.1. */
export class VaultEmulator extends Emulator<VaultRoute> {
  protected readonly protocol = "vault";
  readonly #mounts: readonly string[];
  readonly #appRoleMount: string;
  readonly #autoCreate: boolean;
  readonly #version: string;
  readonly #keys = new Map<string, Map<string, TransitKey>>();
  #tokens: TokenState[] = [];
  readonly #roles: RoleEntry[];
  #sealed = false;
  #standby = false;

  constructor(options: VaultEmulatorOptions = {}) {
    super(options);
    const mounts = options.mounts ?? ["transit"];
    if (mounts.length === 0 || !mounts.every((m) => MOUNT_PATH.test(m))) throw new Error("vault emulator: mounts must be paths like transit or kms/transit");
    this.#mounts = mounts;
    for (const m of mounts) this.#keys.set(m, new Map());
    this.#appRoleMount = options.appRoleMount ?? "approle";
    if (!MOUNT_PATH.test(this.#appRoleMount)) throw new Error("vault emulator: appRoleMount must be a path like approle");
    this.#autoCreate = options.autoCreateKeys ?? false;
    this.#version = options.version ?? "1.15.0";
    for (const [token, spec] of Object.entries(options.tokens ?? { root: { name: "root", paths: ["*"] } })) this.setTokenPaths(token, spec.paths, spec.name);
    this.#roles = Object.entries(options.appRoles ?? {}).map(([name, spec]) => ({
      name,
      spec,
      roleDigest: digest(spec.roleId),
      secretDigest: digest(spec.secretId),
    }));
  }

  // --- test controls ----------------------------------------------------------------------------

  /** Creates a transit key (version 1) unless it exists. Derived by default. */
  createKey(name: string, options: VaultCreateKeyOptions = {}): void {
    const keys = this.#keys.get(options.mount ?? this.#mounts[0]!);
    if (keys === undefined) throw new Error(`vault emulator: no transit mount "${options.mount}"`);
    if (!KEY_NAME.test(name)) throw new Error("vault emulator: key names are letters, digits, _ . - (starting and ending with a letter, digit or _)");
    if (!keys.has(name)) keys.set(name, this.#newKey(name, options.derived ?? true, false));
  }

  /** Sets a static token's path globs, creating the token if it is new. */
  setTokenPaths(token: string, paths: readonly VaultPathRule[], name?: string): void {
    if (typeof token !== "string" || token.length === 0) throw new Error("vault emulator: a token must be a non-empty string");
    const existing = this.#lookup(token);
    if (existing) {
      existing.paths = [...paths];
      return;
    }
    this.#tokens.push({
      digest: digest(token),
      token,
      name: name ?? `token-${this.#tokens.length + 1}`,
      paths: [...paths],
      accessor: randomAccessor(),
      issuedAt: this.now().getTime(),
      policies: ["default"],
    });
  }

  /** Revokes a token (static or issued); true if it existed. */
  revokeToken(token: string): boolean {
    const state = this.#lookup(token);
    if (!state) return false;
    this.#tokens = this.#tokens.filter((t) => t !== state);
    return true;
  }

  /** Revokes every token issued by an AppRole login of `role`; returns how many. */
  revokeAppRoleTokens(role: string): number {
    const before = this.#tokens.length;
    this.#tokens = this.#tokens.filter((t) => t.name !== `approle:${role}`);
    return before - this.#tokens.length;
  }

  /** Seals Vault: every request answers 503 until `unseal()`. */
  seal(): void {
    this.#sealed = true;
  }

  unseal(): void {
    this.#sealed = false;
  }

  /** Makes this node a standby (`sys/health` 429, or 200 with `standbyok`); other requests are served. */
  setStandby(standby: boolean): void {
    this.#standby = standby;
  }

  // --- protocol -----------------------------------------------------------------------------------

  protected override responseHeaders(): Record<string, string> {
    return { "cache-control": "no-store" };
  }

  protected route(req: EmulatorRequest): RoutedRequest<VaultRoute> {
    const route = this.#parseRoute(req);
    const namespace = header(req, "x-vault-namespace");
    const known = route.operation !== "unknown";
    const details: Record<string, string> = {
      ...(known ? { path: route.path } : {}),
      ...(namespace === undefined ? {} : { namespace }),
    };
    return {
      operation: route.operation,
      ...(route.name === undefined ? {} : { keyId: route.name }),
      ...(Object.keys(details).length === 0 ? {} : { details }),
      state: route,
    };
  }

  protected authenticate(req: EmulatorRequest, routed: RoutedRequest<VaultRoute>): AuthResult {
    const route = routed.state!;
    if (route.operation === "sys/health") return { ok: true };
    if (this.#sealed) return { ok: false, response: errors(503, "Vault is sealed") };
    if (route.operation === "approle.login") return { ok: true };
    const state = this.#tokenOf(req);
    if (!state) return { ok: false, response: errors(403, DENIED) };
    if (!route.badMethod && route.operation !== "unknown" && !DEFAULT_POLICY_PATHS.has(route.path) && !allows(state.paths, route.path, route.capability)) {
      return { ok: false, response: errors(403, DENIED_MULTI), identity: state.name };
    }
    return { ok: true, identity: state.name };
  }

  protected faultResponse(fault: Exclude<FaultKind, "latency" | "connectionReset">, routed: RoutedRequest, status: number): EmulatorResponse {
    switch (fault) {
      case "throttle":
        return errors(429, `request path "${routed.details?.path ?? ""}": rate limit quota exceeded`);
      case "serverError":
        return errors(status, "internal error");
      case "accessDenied":
        return errors(403, DENIED_MULTI);
      case "keyDisabled":
        return errors(400, TOO_OLD);
      case "keyNotFound":
        if (routed.operation === "keys.read") return { status: 404, body: { errors: [] } };
        if (routed.operation === "keys.rotate") return errors(400, "key not found");
        if (routed.operation === "keys.config") return errors(400, `no existing key named ${routed.keyId ?? ""} could be found`);
        if (routed.operation === "keys.delete") return errors(400, `error deleting policy ${routed.keyId ?? ""}: ${DELETE_NOT_FOUND}`);
        return errors(400, KEY_NOT_FOUND);
    }
  }

  protected handle(req: EmulatorRequest, routed: RoutedRequest<VaultRoute>): EmulatorResponse {
    const route = routed.state!;
    if (route.badMethod) return errors(405, "1 error occurred:\n\t* unsupported operation\n\n");
    switch (route.operation) {
      case "sys/health":
        return this.#health(req);
      case "sys/capabilities-self":
        return this.#capabilities(req);
      case "approle.login":
        return this.#login(req);
      case "token.renew-self":
        return this.#renew(req);
      case "token.lookup-self":
        return this.#lookupSelf(req);
      case "keys.list":
        return this.#listKeys(route.mount!);
      case "unknown":
        return errors(404, `no handler for route "${route.path}". route entry not found.`);
      default:
        return this.#transit(req, route);
    }
  }

  // --- routing ------------------------------------------------------------------------------------

  #parseRoute(req: EmulatorRequest): VaultRoute {
    const raw = req.url.pathname;
    const unknown: VaultRoute = { operation: "unknown", path: "(not a Vault API path)" };
    if (!raw.startsWith("/v1/")) return unknown;
    let path: string;
    try {
      path = decodeURIComponent(raw.slice(4));
    } catch {
      return unknown;
    }
    const method = req.method.toUpperCase();
    const write = method === "POST" || method === "PUT";
    const read = method === "GET";
    const remove = method === "DELETE";
    const capability: VaultCapability | undefined = read ? "read" : write ? "update" : remove ? "delete" : undefined;
    const known = (operation: string, ok: boolean, extra: Partial<VaultRoute> = {}): VaultRoute => ({
      operation,
      path,
      ...(capability === undefined ? {} : { capability }),
      ...extra,
      ...(ok ? {} : { badMethod: true }),
    });
    if (path === "sys/health") return known("sys/health", read || method === "HEAD");
    if (path === "sys/capabilities-self") return known("sys/capabilities-self", write);
    if (path === `auth/${this.#appRoleMount}/login`) return known("approle.login", write);
    if (path === "auth/token/renew-self") return known("token.renew-self", write);
    if (path === "auth/token/lookup-self") return known("token.lookup-self", read);
    for (const mount of this.#mounts) {
      if (!path.startsWith(`${mount}/`)) continue;
      const rest = path.slice(mount.length + 1).split("/");
      const [head, a, b] = rest;
      const named = (name: string | undefined) => name !== undefined && KEY_NAME.test(name);
      const listing = read && ["1", "true"].includes(req.url.searchParams.get("list") ?? "");
      if (head === "keys" && (rest.length === 1 || (rest.length === 2 && a === "")) && listing) {
        return { operation: "keys.list", path: `${mount}/keys/`, mount, capability: "list" };
      }
      if (head === "keys" && rest.length === 2 && named(a)) return known(read ? "keys.read" : remove ? "keys.delete" : "keys.create", read || write || remove, { mount, name: a });
      if (head === "keys" && rest.length === 3 && named(a) && (b === "rotate" || b === "config")) return known(`keys.${b}`, write, { mount, name: a });
      if (head === "datakey" && rest.length === 3 && named(b)) return known("datakey", write, { mount, name: b, dataKeyType: a });
      if ((head === "encrypt" || head === "decrypt" || head === "rewrap") && rest.length === 2 && named(a)) return known(head, write, { mount, name: a });
    }
    return { operation: "unknown", path };
  }

  // --- transit ------------------------------------------------------------------------------------

  #transit(req: EmulatorRequest, route: VaultRoute): EmulatorResponse {
    const keys = this.#keys.get(route.mount!)!;
    const name = route.name!;
    const body = jsonBody(req);
    switch (route.operation) {
      case "keys.create": {
        const type = body.type ?? "aes256-gcm96";
        if (type !== "aes256-gcm96") throw reply(400, `unknown key type "${String(type)}" (this emulator supports aes256-gcm96 only)`);
        if (boolField(body, "convergent_encryption")) throw reply(400, "convergent encryption is not supported by this emulator");
        if (!keys.has(name)) keys.set(name, this.#newKey(name, boolField(body, "derived"), boolField(body, "exportable")));
        return ok(readPayload(name, keys.get(name)!));
      }
      case "keys.read": {
        const entry = keys.get(name);
        if (!entry) return { status: 404, body: { errors: [] } };
        return ok(readPayload(name, entry));
      }
      case "keys.rotate": {
        const entry = keys.get(name);
        if (!entry) throw reply(400, "key not found");
        entry.key.addVersion(this.now());
        return ok(readPayload(name, entry));
      }
      case "keys.config": {
        const entry = keys.get(name);
        if (!entry) throw reply(400, `no existing key named ${name} could be found`);
        configure(entry, body);
        return ok(readPayload(name, entry));
      }
      case "keys.delete": {
        // Vault's path_keys.go pathPolicyDelete and keysutil's DeletePolicy: no body on success.
        const entry = keys.get(name);
        if (!entry) throw reply(400, `error deleting policy ${name}: ${DELETE_NOT_FOUND}`);
        if (!entry.deletionAllowed) throw reply(400, `error deleting policy ${name}: deletion is not allowed for this policy`);
        keys.delete(name);
        return { status: 204 };
      }
      case "datakey": {
        const type = route.dataKeyType;
        if (type !== "plaintext" && type !== "wrapped") throw reply(400, "invalid type");
        const bits = intField(body, "bits") ?? 256;
        if (bits !== 128 && bits !== 256 && bits !== 512) throw reply(400, "invalid bits length");
        const entry = keys.get(name);
        if (!entry) throw reply(400, KEY_NOT_FOUND);
        const context = contextOf(body);
        const plaintext = randomBytes(bits / 8);
        const { ciphertext, version } = this.#encrypt(entry, plaintext, context, 0);
        const data = { ...(type === "plaintext" ? { plaintext: plaintext.toString("base64") } : {}), ciphertext, key_version: version };
        plaintext.fill(0);
        return ok(data);
      }
      case "encrypt": {
        if (body.batch_input !== undefined) throw reply(400, "batch_input is not supported by this emulator");
        const plaintext = base64Field(body, "plaintext", "missing plaintext to encrypt", "failed to base64-decode plaintext");
        const context = contextOf(body);
        let entry = keys.get(name);
        if (!entry) {
          if (!this.#autoCreate) throw reply(400, KEY_NOT_FOUND);
          // Vault's upsert makes a derived key when the first request carries a context.
          entry = this.#newKey(name, context !== undefined, false);
          keys.set(name, entry);
        }
        const { ciphertext, version } = this.#encrypt(entry, plaintext, context, intField(body, "key_version") ?? 0);
        return ok({ ciphertext, key_version: version });
      }
      case "decrypt": {
        if (body.batch_input !== undefined) throw reply(400, "batch_input is not supported by this emulator");
        const entry = keys.get(name);
        if (!entry) throw reply(400, KEY_NOT_FOUND);
        const plaintext = this.#decrypt(entry, body);
        const data = { plaintext: plaintext.toString("base64") };
        plaintext.fill(0);
        return ok(data);
      }
      case "rewrap": {
        const entry = keys.get(name);
        if (!entry) throw reply(400, KEY_NOT_FOUND);
        const plaintext = this.#decrypt(entry, body);
        try {
          const { ciphertext, version } = this.#encrypt(entry, plaintext, contextOf(body), intField(body, "key_version") ?? 0);
          return ok({ ciphertext, key_version: version });
        } finally {
          plaintext.fill(0);
        }
      }
      default:
        throw reply(404, `no handler for route "${route.path}". route entry not found.`);
    }
  }

  #newKey(name: string, derived: boolean, exportable: boolean): TransitKey {
    return { key: new EmulatedKey(name, this.now()), derived, exportable, minDecryptionVersion: 1, minEncryptionVersion: 0, deletionAllowed: false };
  }

  /** Seals under the requested version (0: the latest), checking it as keysutil does. */
  #encrypt(entry: TransitKey, plaintext: Buffer, context: Buffer | undefined, requested: number): { ciphertext: string; version: number } {
    const latest = entry.key.latest.version;
    const n = requested === 0 ? latest : requested;
    if (n < entry.minEncryptionVersion) throw reply(400, "requested version for encryption is less than the minimum encryption key version");
    if (n > latest || n < 1) throw reply(400, "requested version for encryption is higher than the latest key version");
    const version = entry.key.version(n)!;
    const sealed = entry.key.seal(plaintext, Buffer.alloc(0), version, versionKey(entry, version, context));
    return { ciphertext: `vault:v${n}:${sealed.toString("base64")}`, version: n };
  }

  /** keysutil's Decrypt, check by check and message by message. */
  #decrypt(entry: TransitKey, body: Record<string, unknown>): Buffer {
    const value = body.ciphertext;
    if (typeof value !== "string" || value.length === 0) throw reply(400, "missing ciphertext to decrypt");
    const context = contextOf(body);
    if (!value.startsWith("vault:v")) throw reply(400, "invalid ciphertext: no prefix");
    const rest = value.slice("vault:v".length);
    const colon = rest.indexOf(":");
    if (colon < 0) throw reply(400, "invalid ciphertext: wrong number of fields");
    const versionText = rest.slice(0, colon);
    if (!/^[0-9]{1,9}$/.test(versionText)) throw reply(400, "invalid ciphertext: version number could not be decoded");
    const n = Number(versionText) || 1; // v0 was the first key in Vault's earliest releases
    if (n > entry.key.latest.version) throw reply(400, "invalid ciphertext: version is too new");
    if (n < entry.minDecryptionVersion) throw reply(400, TOO_OLD);
    const encoded = rest.slice(colon + 1);
    if (!BASE64.test(encoded)) throw reply(400, "invalid ciphertext: could not decode base64");
    const version = entry.key.version(n)!;
    const opened = entry.key.open(Buffer.from(encoded, "base64"), Buffer.alloc(0), version, versionKey(entry, version, context));
    if (opened === undefined) throw reply(500, AUTH_FAILED);
    return opened;
  }

  #listKeys(mount: string): EmulatorResponse {
    const names = [...this.#keys.get(mount)!.keys()].sort();
    return names.length === 0 ? { status: 404, body: { errors: [] } } : ok({ keys: names });
  }

  // --- sys ----------------------------------------------------------------------------------------

  #health(req: EmulatorRequest): EmulatorResponse {
    const q = req.url.searchParams;
    const code = (name: string, fallback: number) => {
      const v = Number(q.get(name));
      return q.has(name) && Number.isInteger(v) && v >= 100 && v <= 599 ? v : fallback;
    };
    const status = this.#sealed
      ? code("sealedcode", 503)
      : this.#standby
        ? q.get("standbyok") === "true" || q.get("standbyok") === "1"
          ? 200
          : code("standbycode", 429)
        : code("activecode", 200);
    return {
      status,
      body: {
        initialized: true,
        sealed: this.#sealed,
        standby: this.#standby,
        performance_standby: false,
        replication_performance_mode: "disabled",
        replication_dr_mode: "disabled",
        server_time_utc: Math.floor(this.now().getTime() / 1000),
        version: this.#version,
        ...(this.#sealed ? {} : { cluster_name: "vault-emulator", cluster_id: "00000000-0000-4000-8000-000000000000" }),
      },
    };
  }

  #capabilities(req: EmulatorRequest): EmulatorResponse {
    const state = this.#authenticated(req);
    const body = jsonBody(req);
    const raw = body.paths ?? body.path;
    const paths = typeof raw === "string" ? [raw] : raw;
    if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === "string")) throw reply(400, "missing token or path");
    const data: Record<string, string[]> = {};
    const all = new Set<string>();
    for (const path of paths as string[]) {
      const caps = capabilitiesOf(state.paths, path.replace(/^\/+/, ""));
      defineEntry(data, path, caps);
      for (const c of caps) all.add(c);
    }
    data.capabilities = [...all].sort();
    // Vault repeats the data at the top level for backwards compatibility.
    return ok(data, data);
  }

  // --- auth ---------------------------------------------------------------------------------------

  #login(req: EmulatorRequest): EmulatorResponse {
    const body = jsonBody(req);
    if (typeof body.role_id !== "string" || body.role_id.length === 0) throw reply(400, "missing role_id");
    const roleId = digest(body.role_id);
    const secretId = digest(typeof body.secret_id === "string" ? body.secret_id : "");
    // Every role is compared, match or not, so timing does not tell how far a guess got.
    let match: RoleEntry | undefined;
    for (const role of this.#roles) {
      const hit = timingSafeEqual(role.roleDigest, roleId) && timingSafeEqual(role.secretDigest, secretId);
      if (hit) match = role;
    }
    if (!match) throw reply(400, "invalid role or secret ID");
    const now = this.now().getTime();
    const ttlMs = (match.spec.ttlSeconds ?? DEFAULT_TTL_SECONDS) * 1000;
    const token = `hvs.${randomBytes(24).toString("base64url")}`;
    const state: TokenState = {
      digest: digest(token),
      token,
      name: `approle:${match.name}`,
      paths: [...match.spec.paths],
      accessor: randomAccessor(),
      issuedAt: now,
      policies: ["default", ...(match.spec.policies ?? [])].filter((p, i, all) => all.indexOf(p) === i),
      lease: { ttlMs, maxExpiresAt: now + (match.spec.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS) * 1000, expiresAt: now + ttlMs },
    };
    this.#tokens.push(state);
    return ok(null, { auth: authBlock(state, ttlMs / 1000, { role_name: match.name }) });
  }

  #renew(req: EmulatorRequest): EmulatorResponse {
    const state = this.#authenticated(req);
    const lease = state.lease;
    if (!lease) throw reply(400, "lease is not renewable");
    const now = this.now().getTime();
    const increment = intField(jsonBody(req), "increment");
    const wantedMs = increment !== undefined && increment > 0 ? increment * 1000 : lease.ttlMs;
    lease.expiresAt = Math.min(now + wantedMs, lease.maxExpiresAt);
    return ok(null, { auth: authBlock(state, Math.floor((lease.expiresAt - now) / 1000), null) });
  }

  #lookupSelf(req: EmulatorRequest): EmulatorResponse {
    const state = this.#authenticated(req);
    const now = this.now().getTime();
    const lease = state.lease;
    return ok({
      accessor: state.accessor,
      creation_time: Math.floor(state.issuedAt / 1000),
      creation_ttl: lease ? lease.ttlMs / 1000 : 0,
      display_name: state.name,
      entity_id: "",
      expire_time: lease ? new Date(lease.expiresAt).toISOString() : null,
      explicit_max_ttl: 0,
      id: state.token,
      meta: null,
      num_uses: 0,
      orphan: true,
      path: lease ? `auth/${this.#appRoleMount}/login` : "auth/token/create",
      policies: state.policies,
      renewable: lease !== undefined,
      ttl: lease ? Math.max(0, Math.floor((lease.expiresAt - now) / 1000)) : 0,
      type: "service",
    });
  }

  /** The token `authenticate` accepted; a latency fault may have let it expire or be revoked since. */
  #authenticated(req: EmulatorRequest): TokenState {
    const state = this.#tokenOf(req);
    if (!state) throw reply(403, DENIED);
    return state;
  }

  /** The request's token, if it is known and not expired. Every token is compared, in constant time. */
  #tokenOf(req: EmulatorRequest): TokenState | undefined {
    const token = header(req, "x-vault-token") ?? bearer(req);
    if (token === undefined) return undefined;
    const state = this.#lookup(token);
    if (state?.lease && this.now().getTime() >= state.lease.expiresAt) return undefined;
    return state;
  }

  #lookup(token: string): TokenState | undefined {
    const d = digest(token);
    let found: TokenState | undefined;
    for (const t of this.#tokens) if (timingSafeEqual(t.digest, d)) found = t;
    return found;
  }
}

// --- helpers --------------------------------------------------------------------------------------

function ok(data: unknown, extra: Record<string, unknown> = {}): EmulatorResponse {
  return {
    status: 200,
    body: { request_id: newRequestId(), lease_id: "", renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null, ...extra },
  };
}

function errors(status: number, ...messages: string[]): EmulatorResponse {
  return { status, body: { errors: messages } };
}

function reply(status: number, message: string): EmulatorReply {
  return new EmulatorReply(errors(status, message));
}

function authBlock(state: TokenState, leaseSeconds: number, metadata: Record<string, string> | null): Record<string, unknown> {
  return {
    client_token: state.token,
    accessor: state.accessor,
    policies: state.policies,
    token_policies: state.policies,
    metadata,
    lease_duration: leaseSeconds,
    renewable: true,
    entity_id: "",
    token_type: "service",
    orphan: true,
  };
}

function readPayload(name: string, entry: TransitKey): Record<string, unknown> {
  const keys: Record<string, number> = {};
  for (const v of entry.key.versions) keys[String(v.version)] = Math.floor(v.createdAt.getTime() / 1000);
  return {
    name,
    type: "aes256-gcm96",
    keys,
    latest_version: entry.key.latest.version,
    min_available_version: 0,
    min_decryption_version: entry.minDecryptionVersion,
    min_encryption_version: entry.minEncryptionVersion,
    deletion_allowed: entry.deletionAllowed,
    derived: entry.derived,
    ...(entry.derived ? { kdf: "hkdf_sha256", convergent_encryption: false } : {}),
    exportable: entry.exportable,
    allow_plaintext_backup: false,
    auto_rotate_period: 0,
    imported_key: false,
    supports_encryption: true,
    supports_decryption: true,
    supports_derivation: true,
    supports_signing: false,
  };
}

/** The key config endpoint's checks, as Vault's path_config.go makes them. */
function configure(entry: TransitKey, body: Record<string, unknown>): void {
  const latest = entry.key.latest.version;
  let minDecryption = entry.minDecryptionVersion;
  let minEncryption = entry.minEncryptionVersion;
  const dec = intField(body, "min_decryption_version");
  if (dec !== undefined) {
    if (dec < 0) throw reply(400, "min decryption version cannot be negative");
    if (dec > latest) throw reply(400, `cannot set min decryption version of ${dec}, latest key version is ${latest}`);
    minDecryption = Math.max(dec, 1);
  }
  const enc = intField(body, "min_encryption_version");
  if (enc !== undefined) {
    if (enc < 0) throw reply(400, "min encryption version cannot be negative");
    if (enc > latest) throw reply(400, `cannot set min encryption version of ${enc}, latest key version is ${latest}`);
    minEncryption = enc;
  }
  if (minEncryption > 0 && minEncryption < minDecryption) {
    throw reply(400, `min encryption version ${minEncryption} must be greater than or equal to min decryption version ${minDecryption}`);
  }
  entry.minDecryptionVersion = minDecryption;
  entry.minEncryptionVersion = minEncryption;
  if (body.deletion_allowed !== undefined) entry.deletionAllowed = boolField(body, "deletion_allowed");
}

/** The AES key of one version for one request: the material itself, or HKDF(material, context) for a derived key. */
function versionKey(entry: TransitKey, version: KeyVersion, context: Buffer | undefined): Buffer {
  if (!entry.derived) return version.material; // Vault ignores the context of a non-derived key
  if (context === undefined || context.length === 0) throw reply(400, MISSING_CONTEXT);
  return Buffer.from(hkdfSync("sha256", version.material, Buffer.alloc(0), context, 32));
}

function contextOf(body: Record<string, unknown>): Buffer | undefined {
  const raw = body.context;
  if (raw === undefined || raw === null || raw === "") return undefined;
  if (typeof raw !== "string" || !BASE64.test(raw)) throw reply(400, "failed to base64-decode context");
  return Buffer.from(raw, "base64");
}

function base64Field(body: Record<string, unknown>, name: string, missing: string, invalid: string): Buffer {
  const raw = body[name];
  if (raw === undefined || raw === null) throw reply(400, missing);
  if (typeof raw !== "string" || !BASE64.test(raw)) throw reply(400, invalid);
  return Buffer.from(raw, "base64");
}

/** An integer field; Vault accepts numbers and numeric strings. */
function intField(body: Record<string, unknown>, name: string): number | undefined {
  const raw = body[name];
  if (raw === undefined || raw === null) return undefined;
  const n = typeof raw === "string" && /^-?[0-9]{1,9}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw reply(400, `error converting input for field "${name}": not an integer`);
  return n;
}

/** A boolean field; Vault accepts booleans and "true"/"false" (what `vault write k derived=true` sends). */
function boolField(body: Record<string, unknown>, name: string): boolean {
  const raw = body[name];
  if (raw === undefined || raw === null) return false;
  if (typeof raw === "boolean") return raw;
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0" || raw === "") return false;
  throw reply(400, `error converting input for field "${name}": not a boolean`);
}

/** The JSON object body (empty: `{}`). Never echoes the body in an error: it may hold plaintext. */
function jsonBody(req: EmulatorRequest): Record<string, unknown> {
  if (req.body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(req.body.toString("utf8"));
  } catch {
    throw reply(400, "failed to parse JSON input");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw reply(400, "failed to parse JSON input: not an object");
  return parsed as Record<string, unknown>;
}

function header(req: EmulatorRequest, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === "" ? undefined : s;
}

function bearer(req: EmulatorRequest): string | undefined {
  const m = /^Bearer (\S+)$/.exec(header(req, "authorization") ?? "");
  return m?.[1];
}

/** SHA-256, so tokens and secrets are compared as equal-length digests. */
function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

function randomAccessor(): string {
  return randomUUID().replace(/-/g, "").slice(0, 24);
}

/** Does a Vault policy glob match `path`? `+` is one segment; a final `*` any suffix. */
function globMatches(glob: string, path: string): boolean {
  const prefix = glob.endsWith("*");
  const body = prefix ? glob.slice(0, -1) : glob;
  const pattern = body
    .split("+")
    .map((part) => part.replace(/[.*?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]+");
  return new RegExp(`^${pattern}${prefix ? "[\\s\\S]*" : ""}$`).test(path);
}

/** The capabilities the rules grant on `path` (the union of every matching rule's). */
function granted(rules: readonly VaultPathRule[], path: string): Set<string> {
  const out = new Set<string>();
  for (const rule of rules) {
    const glob = typeof rule === "string" ? rule : rule.path;
    if (!globMatches(glob, path)) continue;
    for (const c of typeof rule === "string" ? ALL_CAPABILITIES : rule.capabilities) out.add(c);
  }
  return out;
}

/** May a token with these rules use `capability` on `path`? `create` stands in for `update` (Vault's create-or-update writes). */
function allows(rules: readonly VaultPathRule[], path: string, capability: VaultCapability | undefined): boolean {
  const caps = granted(rules, path);
  if (capability === undefined) return caps.size > 0;
  return caps.has(capability) || (capability === "update" && caps.has("create"));
}

function capabilitiesOf(rules: readonly VaultPathRule[], path: string): string[] {
  if (rules.includes("*")) return ["root"];
  if (DEFAULT_POLICY_PATHS.has(path)) return [...ALL_CAPABILITIES];
  const caps = granted(rules, path);
  return caps.size === 0 ? ["deny"] : ALL_CAPABILITIES.filter((c) => caps.has(c));
}

/** Sets an own property even for names like "__proto__". */
function defineEntry(target: Record<string, unknown>, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}
