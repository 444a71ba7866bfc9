/**
 * Server configuration: an optional JSON file (`KMS_CONFIG_FILE`, in @kms/core's configuration
 * format) plus environment overrides and the server's own settings. Every problem is collected and
 * reported at once as a `KmsConfigError`, like core's own validation; the KMS part is validated by
 * `createKms` (see `loadServerConfig` callers).
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { configIssue, isProductionEnv, LOCAL_DEFAULT_PATH, tenantIdProblem, type ConfigIssue } from "@kms/core";
import { TOKEN_PATTERN, type TokenSet } from "./auth";

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 8080;
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;
export const DEFAULT_KEY_ID = "default";
export const DEFAULT_DEMO_TENANTS = ["tenant-a", "tenant-b"];
/** Tokens shorter than this are refused in production. */
export const MIN_PRODUCTION_TOKEN_LENGTH = 16;

export interface ServerConfig {
  host: string;
  port: number;
  bodyLimitBytes: number;
  production: boolean;
  logLevel: string;
  /**
   * The configuration handed to `createKms` (core validates it); `undefined` when KMS_CONFIG_FILE
   * could not be read as a JSON object, so there is nothing for core to check.
   */
  kms: Record<string, unknown> | undefined;
  /** Tokens from the environment; `undefined` when none is configured. */
  tokens: TokenSet | undefined;
  /** Tenants that get generated tokens when none is configured (development only). */
  demoTenants: string[];
  /** Non-fatal remarks for the log. */
  warnings: string[];
}

export type LoadResult = { ok: true; config: ServerConfig } | { ok: false; issues: ConfigIssue[]; partial: ServerConfig };

const LOG_LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads configuration from `env` (and the file it names). Relative paths in the environment are
 * resolved against `baseDir` (the directory the user ran the command from); a relative
 * `providers.local.path` inside the file is resolved against the file's directory.
 */
export function loadServerConfig(env: Env, baseDir: string): LoadResult {
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const invalid = (path: string, message: string) => issues.push(configIssue(path, "KMS_CONFIG_INVALID", message));
  // Core's test (case-insensitive, `prod` too): `NODE_ENV=Production` must not skip production checks.
  const production = isProductionEnv(env);

  // --- the KMS configuration: the file, or without one the local development default; then
  // environment overrides. `undefined` when the file cannot be used: nothing for core to check.
  let kms: Record<string, unknown> | undefined;
  let fileDir = baseDir;
  const file = env.KMS_CONFIG_FILE;
  if (file === undefined || file === "") {
    // Only the one-command dev start gets defaults. A file states its providers and tenant keys
    // itself: filling in `local` there would quietly keep keys on this host instead of in the KMS.
    kms = {
      providers: { local: { path: LOCAL_DEFAULT_PATH } },
      tenants: { defaultKey: { provider: "local", keyId: DEFAULT_KEY_ID } },
    };
  } else {
    const path = resolve(baseDir, file);
    fileDir = dirname(path);
    kms = readConfigFile(path, invalid);
    if (kms !== undefined && kms.providers === undefined) {
      invalid(
        "providers",
        `configuration file ${path} names no providers: add them, e.g. "providers": {"local": {}} ` +
          "(the local provider is the default only when KMS_CONFIG_FILE is not set)",
      );
    }
  }

  const providers = kms?.providers;
  if (isPlainObject(providers)) {
    const local = providers.local;
    const storeOverride = env.KMS_LOCAL_KEY_STORE;
    if (storeOverride !== undefined && storeOverride !== "") {
      if (isPlainObject(local)) {
        kms = { ...kms, providers: { ...providers, local: { ...local, path: resolve(baseDir, storeOverride) } } };
      } else {
        warnings.push("KMS_LOCAL_KEY_STORE is set but the configuration does not use the local provider: ignored");
      }
    } else if (isPlainObject(local) && typeof local.path === "string" && !isAbsolute(local.path)) {
      kms = { ...kms, providers: { ...providers, local: { ...local, path: resolve(fileDir, local.path) } } };
    }
  }
  // (A non-object `providers` is left as is: core reports it.)

  const allowLocal = env.KMS_ALLOW_LOCAL_IN_PRODUCTION;
  if (allowLocal === "true" || allowLocal === "false") {
    if (kms !== undefined) kms = { ...kms, allowLocalInProduction: allowLocal === "true" };
  } else if (allowLocal !== undefined && allowLocal !== "") {
    invalid("KMS_ALLOW_LOCAL_IN_PRODUCTION", `must be "true" or "false", got "${allowLocal}"`);
  }

  // --- listening address and limits
  const host = env.HOST !== undefined && env.HOST !== "" ? env.HOST : DEFAULT_HOST;
  const port = parseInteger(env.PORT, DEFAULT_PORT);
  if (port === undefined || port < 0 || port > 65_535) invalid("PORT", `must be an integer from 0 to 65535, got "${env.PORT}"`);
  const bodyLimitBytes = parseInteger(env.KMS_BODY_LIMIT_BYTES, DEFAULT_BODY_LIMIT_BYTES);
  if (bodyLimitBytes === undefined || bodyLimitBytes < 1 || bodyLimitBytes > 1024 ** 3) {
    invalid("KMS_BODY_LIMIT_BYTES", `must be an integer from 1 to 1073741824, got "${env.KMS_BODY_LIMIT_BYTES}"`);
  }
  const logLevel = env.LOG_LEVEL !== undefined && env.LOG_LEVEL !== "" ? env.LOG_LEVEL : "info";
  if (!LOG_LEVELS.has(logLevel)) invalid("LOG_LEVEL", `must be one of ${[...LOG_LEVELS].join(", ")}, got "${logLevel}"`);

  // --- credentials
  const tokens = loadTokens(env, production, invalid);
  const demoTenants = (env.KMS_DEMO_TENANTS ?? DEFAULT_DEMO_TENANTS.join(","))
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  for (const t of demoTenants) {
    const problem = tenantIdProblem(t);
    if (problem !== undefined) invalid("KMS_DEMO_TENANTS", problem);
  }
  if (tokens === undefined && production) {
    invalid(
      "KMS_TENANT_TOKENS",
      "no credentials are configured and NODE_ENV=production: set KMS_TENANT_TOKENS (a JSON map tenant id → token) " +
        "and/or KMS_ADMIN_TOKEN; tokens are generated only outside production",
    );
  }

  const config: ServerConfig = {
    host,
    port: port ?? DEFAULT_PORT,
    bodyLimitBytes: bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    production,
    logLevel: LOG_LEVELS.has(logLevel) ? logLevel : "info",
    kms,
    tokens,
    demoTenants,
    warnings,
  };
  return issues.length === 0 ? { ok: true, config } : { ok: false, issues, partial: config };
}

/** The JSON object in the file, or `undefined` (and an issue) when there is none. */
function readConfigFile(path: string, invalid: (path: string, message: string) => void): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "unreadable";
    invalid("KMS_CONFIG_FILE", `cannot read configuration file ${path} (${reason})`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // Only the position: the parser's message may quote the file, which can hold credentials.
    const where = /position \d+(?: \(line \d+ column \d+\))?/.exec((error as Error).message)?.[0];
    invalid("KMS_CONFIG_FILE", `configuration file ${path} is not valid JSON${where ? ` (at ${where})` : ""}`);
    return undefined;
  }
  if (isPlainObject(parsed)) return parsed;
  invalid("KMS_CONFIG_FILE", `configuration file ${path} must hold a JSON object`);
  return undefined;
}

function parseInteger(raw: string | undefined, fallback: number): number | undefined {
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

function loadTokens(
  env: Env,
  production: boolean,
  invalid: (path: string, message: string) => void,
): TokenSet | undefined {
  const tenants: Record<string, string> = {};
  const seen = new Map<string, string>();
  const check = (path: string, owner: string, token: string): boolean => {
    if (!TOKEN_PATTERN.test(token)) {
      invalid(path, "tokens must be non-empty and use only A-Z a-z 0-9 - . _ ~ + / (then optional =)");
      return false;
    }
    if (production && token.length < MIN_PRODUCTION_TOKEN_LENGTH) {
      invalid(path, `tokens must be at least ${MIN_PRODUCTION_TOKEN_LENGTH} characters in production`);
      return false;
    }
    const other = seen.get(token);
    if (other !== undefined) {
      invalid(path, `the same token is also configured for ${other}: every token must be unique`);
      return false;
    }
    seen.set(token, owner);
    return true;
  };

  const raw = env.KMS_TENANT_TOKENS;
  if (raw !== undefined && raw.trim() !== "") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      // The JSON parser's message may quote the input, which holds secrets: not repeated here.
      invalid("KMS_TENANT_TOKENS", 'is not valid JSON: expected a map like {"tenant-a":"<token>"}');
    }
    if (parsed !== undefined) {
      if (!isPlainObject(parsed)) {
        invalid("KMS_TENANT_TOKENS", 'must be a JSON object like {"tenant-a":"<token>"}');
      } else {
        for (const [tenantId, token] of Object.entries(parsed)) {
          const path = `KMS_TENANT_TOKENS.${tenantId}`;
          const problem = tenantIdProblem(tenantId);
          if (problem !== undefined) {
            invalid("KMS_TENANT_TOKENS", problem);
          } else if (typeof token !== "string") {
            invalid(path, "must be a string");
          } else if (check(path, `tenant ${tenantId}`, token)) {
            tenants[tenantId] = token;
          }
        }
      }
    }
  }
  let admin: string | undefined;
  const adminRaw = env.KMS_ADMIN_TOKEN;
  if (adminRaw !== undefined && adminRaw !== "" && check("KMS_ADMIN_TOKEN", "the admin", adminRaw)) admin = adminRaw;

  const configured =
    (raw !== undefined && raw.trim() !== "") || (adminRaw !== undefined && adminRaw !== "");
  return configured ? { tenants, admin } : undefined;
}
