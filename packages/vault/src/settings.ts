/**
 * Settings of the `vault` provider, from code or from a configuration file, validated without any
 * network access. Every issue is reported at once with its path; no message ever repeats a value
 * (the token and the AppRole secret are settings too).
 *
 * The token and the AppRole secret ID are given inline, or by the name of the environment variable
 * that holds them (`tokenFromEnv`, `secretIdFromEnv`), read here, once, when the settings are parsed:
 * so a configuration file need not hold a secret. The environment is read for those names only.
 *
 * Written by hand rather than with zod: zod is a dependency of `@kms/core`, not of this package, and
 * the rules are few.
 */

/** The transit key name rule, as Vault's own path pattern (`\w(([\w-.]+)?\w)?`) has it, capped at 128. */
const KEY_NAME = /^\w(?:[\w.-]{0,126}\w)?$/;
/** A mount or namespace path: segments of letters, digits, `_ . -`, joined by `/`. */
const PATH = /^[\w-]+(?:\.[\w-]+)*(?:\/[\w-]+(?:\.[\w-]+)*)*$/;
/** A token goes into an HTTP header: printable ASCII, no spaces. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const NO_CONTROL = /^[^\x00-\x1f\x7f]+$/;
/** An environment variable's name, as POSIX shells accept it. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const DEFAULT_MOUNT_PATH = "transit";
export const DEFAULT_APPROLE_MOUNT_PATH = "approle";
/** The SDK's own per-request timeout: a backstop that frees a socket after core's timeout has given up. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

export const VAULT_KEY_NAME_RULE =
  "Vault transit key names are 1 to 128 characters of A-Z a-z 0-9 _ . - that start and end with a letter, a digit or _ (no /: the mount is set in the provider's settings)";

/** Log in with AppRole (`auth/<mountPath>/login`) and renew the token it gets. */
export type VaultAppRoleAuth = {
  roleId: string;
  /** The AppRole auth method's mount. Default `approle`. */
  mountPath?: string;
} & (
  | { secretId: string; secretIdFromEnv?: undefined }
  /** The name of the environment variable that holds the secret ID (`VAULT_SECRET_ID`), read when the settings are parsed. */
  | { secretIdFromEnv: string; secretId?: undefined }
);

/** Exactly one: a Vault token, the name of the environment variable that holds one (`VAULT_TOKEN`), or AppRole credentials. */
export type VaultAuth =
  | { token: string; tokenFromEnv?: undefined; appRole?: undefined }
  | { tokenFromEnv: string; token?: undefined; appRole?: undefined }
  | { appRole: VaultAppRoleAuth; token?: undefined; tokenFromEnv?: undefined };

/** Settings of `providers.vault` in configuration (and the options of `vaultKmsProvider`). */
export interface VaultKmsSettings {
  /** Vault's address: `https://vault.example.com:8200`. Required: `VAULT_ADDR` is never read. */
  endpoint: string;
  /** The transit engine's mount. Default `transit`. */
  mountPath?: string;
  /** Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace` on every request. */
  namespace?: string;
  auth: VaultAuth;
  /** Per-request timeout of the SDK, in ms. Default 10 000. Keep it at or above core's `resilience.timeoutMs`. */
  requestTimeoutMs?: number;
  /** PEM certificate(s) of the CA that signed Vault's TLS certificate, when it is not a public one. */
  caCert?: string;
}

/** Settings with every default filled in. */
export interface ResolvedVaultSettings {
  endpoint: string;
  mountPath: string;
  namespace: string | undefined;
  auth: { kind: "token"; token: string } | { kind: "appRole"; roleId: string; secretId: string; mountPath: string };
  requestTimeoutMs: number;
  caCert: string | undefined;
}

export interface SettingsIssue {
  path: string;
  message: string;
}

/** Why `keyId` cannot name a transit key, or undefined. */
export function vaultKeyIdProblem(keyId: string): string | undefined {
  return typeof keyId === "string" && KEY_NAME.test(keyId) ? undefined : VAULT_KEY_NAME_RULE;
}

/** Validates raw settings; returns them with defaults filled in, or every issue. */
export function resolveSettings(raw: unknown): { ok: true; settings: ResolvedVaultSettings } | { ok: false; issues: SettingsIssue[] } {
  const issues: SettingsIssue[] = [];
  const issue = (path: string, message: string) => issues.push({ path, message });
  if (!isRecord(raw)) return { ok: false, issues: [{ path: "", message: "must be an object with endpoint and auth" }] };
  unknownKeys(raw, ["endpoint", "mountPath", "namespace", "auth", "requestTimeoutMs", "caCert"], "", issue);

  const endpoint = endpointOf(raw.endpoint);
  if (endpoint === undefined) issue("endpoint", "must be Vault's address, an http:// or https:// URL without credentials, query or fragment (e.g. https://vault.example.com:8200)");

  const mountPath = optionalPath(raw.mountPath, DEFAULT_MOUNT_PATH);
  if (mountPath === undefined) issue("mountPath", "must be a mount path such as transit or kms/transit");

  let namespace: string | undefined;
  if (raw.namespace !== undefined) {
    namespace = optionalPath(raw.namespace, undefined);
    if (namespace === undefined) issue("namespace", "must be a namespace path such as admin or admin/team-a");
  }

  let auth: ResolvedVaultSettings["auth"] | undefined;
  if (!isRecord(raw.auth)) {
    issue("auth", "must be { token }, { tokenFromEnv } or { appRole: { roleId, secretId or secretIdFromEnv } }");
  } else {
    const a = raw.auth;
    unknownKeys(a, ["token", "tokenFromEnv", "appRole"], "auth.", issue);
    const byToken = a.token !== undefined || a.tokenFromEnv !== undefined;
    if (byToken === (a.appRole !== undefined)) {
      issue("auth", "must set exactly one of token, tokenFromEnv or appRole");
    } else if (byToken) {
      const token = secretOf(a, "token", "auth.", HEADER_SAFE, "Vault token (printable ASCII, no spaces)", issue);
      if (token !== undefined) auth = { kind: "token", token };
    } else if (!isRecord(a.appRole)) {
      issue("auth.appRole", "must be { roleId, secretId or secretIdFromEnv, mountPath? }");
    } else {
      const r = a.appRole;
      unknownKeys(r, ["roleId", "secretId", "secretIdFromEnv", "mountPath"], "auth.appRole.", issue);
      const roleId = typeof r.roleId === "string" && NO_CONTROL.test(r.roleId) ? r.roleId : undefined;
      if (roleId === undefined) issue("auth.appRole.roleId", "must be a non-empty string");
      const secretId = secretOf(r, "secretId", "auth.appRole.", NO_CONTROL, "string without control characters", issue);
      const roleMount = optionalPath(r.mountPath, DEFAULT_APPROLE_MOUNT_PATH);
      if (roleMount === undefined) issue("auth.appRole.mountPath", "must be a mount path such as approle");
      if (roleId !== undefined && secretId !== undefined && roleMount !== undefined) auth = { kind: "appRole", roleId, secretId, mountPath: roleMount };
    }
  }

  const timeout = raw.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!(typeof timeout === "number" && Number.isInteger(timeout) && timeout >= 1 && timeout <= 600_000)) {
    issue("requestTimeoutMs", "must be an integer number of milliseconds from 1 to 600000");
  }

  let caCert: string | undefined;
  if (raw.caCert !== undefined) {
    if (typeof raw.caCert === "string" && raw.caCert.includes("-----BEGIN CERTIFICATE-----")) caCert = raw.caCert;
    else issue("caCert", "must be PEM text (-----BEGIN CERTIFICATE----- …)");
  }

  if (issues.length > 0 || endpoint === undefined || mountPath === undefined || auth === undefined) return { ok: false, issues };
  return { ok: true, settings: { endpoint, mountPath, namespace, auth, requestTimeoutMs: timeout as number, caCert } };
}

/** The settings as a user would write them, defaults filled in (what `parseSettings` returns). */
export function toSettings(resolved: ResolvedVaultSettings): VaultKmsSettings {
  const { auth } = resolved;
  return {
    endpoint: resolved.endpoint,
    mountPath: resolved.mountPath,
    ...(resolved.namespace === undefined ? {} : { namespace: resolved.namespace }),
    auth: auth.kind === "token" ? { token: auth.token } : { appRole: { roleId: auth.roleId, secretId: auth.secretId, mountPath: auth.mountPath } },
    requestTimeoutMs: resolved.requestTimeoutMs,
    ...(resolved.caCert === undefined ? {} : { caCert: resolved.caCert }),
  };
}

/**
 * A secret set inline (`<key>`) or by the name of the environment variable that holds it
 * (`<key>FromEnv`, read now): exactly one of the two. `what` describes a valid value. Issues name the
 * setting or the variable, never the value.
 */
function secretOf(
  settings: Record<string, unknown>,
  key: "token" | "secretId",
  prefix: string,
  valid: RegExp,
  what: string,
  issue: (path: string, message: string) => void,
): string | undefined {
  const envKey = `${key}FromEnv`;
  const inline = settings[key];
  const name = settings[envKey];
  if ((inline === undefined) === (name === undefined)) {
    issue(prefix.slice(0, -1), `must set exactly one of ${key} or ${envKey}`);
    return undefined;
  }
  if (inline !== undefined) {
    if (typeof inline === "string" && valid.test(inline)) return inline;
    issue(`${prefix}${key}`, `must be a non-empty ${what}`);
    return undefined;
  }
  if (typeof name !== "string" || !ENV_NAME.test(name)) {
    issue(`${prefix}${envKey}`, "must be the name of an environment variable: letters, digits and _, not starting with a digit");
    return undefined;
  }
  const value = process.env[name];
  if (value === undefined || value === "") issue(`${prefix}${envKey}`, `the environment variable ${name} is not set, or is empty`);
  else if (!valid.test(value)) issue(`${prefix}${envKey}`, `the environment variable ${name} must hold a ${what}`);
  else return value;
  return undefined;
}

function endpointOf(value: unknown): string | undefined {
  if (typeof value !== "string" || value.length === 0 || value.length > 2048) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") return undefined;
  return `${url.origin}${url.pathname}`.replace(/\/+$/, "");
}

/** A path setting, trimmed of surrounding slashes; `fallback` when absent; undefined when invalid. */
function optionalPath(value: unknown, fallback: string | undefined): string | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== "string") return undefined;
  const trimmed = value.replace(/^\/+|\/+$/g, "");
  return trimmed.length > 0 && trimmed.length <= 256 && PATH.test(trimmed) ? trimmed : undefined;
}

function unknownKeys(value: Record<string, unknown>, known: readonly string[], prefix: string, issue: (path: string, message: string) => void): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) issue(`${prefix}${printable(key)}`, `unknown setting (known: ${known.join(", ")})`);
  }
}

function printable(key: string): string {
  return key.length <= 64 && /^[\x20-\x7e]*$/.test(key) ? key : "(unprintable key)";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
