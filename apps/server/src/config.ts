/**
 * Server configuration: an optional JSON or YAML file (`KMS_CONFIG_FILE`, in @kms/core's configuration
 * format) plus environment overrides and the server's own settings. Every problem is collected and
 * reported at once as a `KmsConfigError`, like core's own validation; the KMS part is validated by
 * `createKms` (see `loadServerConfig` callers).
 */
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { configIssue, CRYPTOPERIOD_DAYS, isProductionEnv, LOCAL_DEFAULT_PATH, readConfigFile, tenantIdProblem, type ConfigIssue } from "@kms/core";
import { defaultEvidenceFile, MIN_HMAC_KEY_BYTES } from "@kms/rotation";
import { TOKEN_PATTERN, tokenDigest, type TokenDigests } from "./auth";
import {
  MIN_HS256_SECRET_BYTES,
  publicKeyFromPem,
  publicKeysFromJwks,
  type JwtAlgorithm,
  type JwtSettings,
} from "./jwt";

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
   * could not be read as an object (JSON or YAML), so there is nothing for core to check.
   */
  kms: Record<string, unknown> | undefined;
  /** Tokens from the environment; `undefined` when none is configured (or with `KMS_AUTH=jwt`). */
  tokens: TokenDigests | undefined;
  /** JWT verification settings with `KMS_AUTH=jwt`, else `undefined`. */
  jwt: JwtSettings | undefined;
  /** Tenants that get generated tokens when none is configured (development only). */
  demoTenants: string[];
  /** Non-fatal remarks for the log. */
  warnings: string[];
  /**
   * The evidence log's JSON Lines file (`KMS_EVIDENCE_FILE`; default `evidence.jsonl` next to the
   * local key store). Not used when `evidenceDatabaseUrl` is set.
   */
  evidenceFile: string;
  /**
   * `KMS_EVIDENCE_DATABASE_URL` (`postgres://` or `postgresql://`): the evidence log in PostgreSQL,
   * shared by every instance, instead of the file. Holds credentials: never logged or echoed.
   */
  evidenceDatabaseUrl: string | undefined;
  /**
   * `KMS_ROTATION_LOCKS_URL`: the per-key rotation leases in Redis or PostgreSQL, shared by every
   * instance; `undefined`: the in-process lock (one instance). The URL holds credentials: never
   * logged or echoed.
   */
  rotationLocks: RotationLocksConfig | undefined;
  /** `KMS_EVIDENCE_HMAC_KEY` (≥ 32 bytes): MACs every evidence record and signs exports. Never logged. */
  evidenceHmacKey: Buffer | undefined;
  /** `KMS_ROTATION_CRYPTOPERIOD_DAYS`, else the file's `rotation.cryptoperiodDays`, else 90; in milliseconds. */
  cryptoperiodMs: number;
  /** `KMS_ROTATION_INTERVAL_MS`: the periodic scheduler runs only when set. */
  rotationIntervalMs: number | undefined;
  /** `KMS_BENCH_NOOP_ROUTE=true`: the benchmark's no-op route (`POST /v1/tenants/:tenantId/noop`); refused in production. */
  benchNoopRoute: boolean;
}

/** Where the rotation leases live (`KMS_ROTATION_LOCKS_URL`). */
export interface RotationLocksConfig {
  kind: "redis" | "postgres";
  url: string;
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

  // --- the KMS configuration: the file (core's reader makes a relative local key store path
  // absolute against the file's directory), or without one the local development default; then
  // environment overrides. `undefined` when the file cannot be used: nothing for core to check.
  let kms: Record<string, unknown> | undefined;
  const file = env.KMS_CONFIG_FILE;
  if (file === undefined || file === "") {
    // Only the one-command dev start gets defaults. A file states its providers and tenant keys
    // itself: filling in `local` there would quietly keep keys on this host instead of in the KMS.
    kms = {
      providers: { local: { path: resolve(baseDir, LOCAL_DEFAULT_PATH) } },
      tenants: { defaultKey: { provider: "local", keyId: DEFAULT_KEY_ID } },
    };
  } else {
    const path = resolve(baseDir, file);
    const read = readConfigFile(path);
    if (read.ok) kms = read.config;
    else issues.push(read.issue);
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

  // --- credentials: static tokens (the default) or JWTs
  const authMode = env.KMS_AUTH === undefined || env.KMS_AUTH === "" ? "tokens" : env.KMS_AUTH;
  if (authMode !== "tokens" && authMode !== "jwt") invalid("KMS_AUTH", `must be "tokens" or "jwt", got "${authMode}"`);
  let tokens: TokenDigests | undefined;
  let jwt: JwtSettings | undefined;
  if (authMode === "jwt") {
    for (const name of TOKEN_VARIABLES) {
      if (env[name] !== undefined && env[name] !== "") invalid(name, "must not be set with KMS_AUTH=jwt: credentials are either static tokens or JWTs");
    }
    jwt = loadJwtSettings(env, baseDir, invalid);
  } else {
    tokens = loadTokens(env, production, invalid);
  }
  const demoTenants = (env.KMS_DEMO_TENANTS ?? DEFAULT_DEMO_TENANTS.join(","))
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  for (const t of demoTenants) {
    const problem = tenantIdProblem(t);
    if (problem !== undefined) invalid("KMS_DEMO_TENANTS", problem);
  }
  if (tokens === undefined && authMode !== "jwt" && production) {
    invalid(
      "KMS_TENANT_TOKENS",
      "no credentials are configured and NODE_ENV=production: set KMS_TENANT_TOKEN_HASHES (a JSON map tenant id → " +
        '"sha256:<hex>") and KMS_ADMIN_TOKEN_HASH, or KMS_TENANT_TOKENS and KMS_ADMIN_TOKEN, or use JWTs (KMS_AUTH=jwt); ' +
        "tokens are generated only outside production",
    );
  }

  // --- evidence and rotation
  const localPath = isPlainObject(kms?.providers) && isPlainObject(kms.providers.local) ? kms.providers.local.path : undefined;
  const evidenceDefault = defaultEvidenceFile(typeof localPath === "string" ? localPath : undefined, baseDir);
  const evidenceFile = env.KMS_EVIDENCE_FILE !== undefined && env.KMS_EVIDENCE_FILE !== "" ? resolve(baseDir, env.KMS_EVIDENCE_FILE) : evidenceDefault;
  let evidenceHmacKey: Buffer | undefined;
  const hmacRaw = env.KMS_EVIDENCE_HMAC_KEY;
  if (hmacRaw !== undefined && hmacRaw !== "") {
    const bytes = Buffer.byteLength(hmacRaw, "utf8");
    // Its length only: the key itself is never repeated.
    if (bytes < MIN_HMAC_KEY_BYTES) invalid("KMS_EVIDENCE_HMAC_KEY", `must be at least ${MIN_HMAC_KEY_BYTES} bytes, got ${bytes}`);
    else evidenceHmacKey = Buffer.from(hmacRaw, "utf8");
  }
  let evidenceDatabaseUrl: string | undefined;
  const evidenceDatabase = serviceUrl(env, "KMS_EVIDENCE_DATABASE_URL", POSTGRES_SCHEMES, invalid);
  if (evidenceDatabase !== undefined && env.KMS_EVIDENCE_FILE !== undefined && env.KMS_EVIDENCE_FILE !== "") {
    invalid("KMS_EVIDENCE_DATABASE_URL", "set either KMS_EVIDENCE_FILE or KMS_EVIDENCE_DATABASE_URL, not both");
  } else if (evidenceDatabase !== undefined) {
    evidenceDatabaseUrl = evidenceDatabase.url;
  }
  let rotationLocks: RotationLocksConfig | undefined;
  const locks = serviceUrl(env, "KMS_ROTATION_LOCKS_URL", [...REDIS_SCHEMES, ...POSTGRES_SCHEMES], invalid);
  if (locks !== undefined) rotationLocks = { kind: REDIS_SCHEMES.includes(locks.scheme) ? "redis" : "postgres", url: locks.url };
  if (rotationLocks !== undefined && evidenceDatabase === undefined) {
    warnings.push(
      "KMS_ROTATION_LOCKS_URL is set but the evidence log is a file of this instance: with several instances each keeps its own " +
        "log, and a rotation's records (and its crash recovery) are only in the log of the instance that made it; " +
        "set KMS_EVIDENCE_DATABASE_URL for one log shared by every instance",
    );
  }
  // The file's `rotation.cryptoperiodDays` (core validates it) is the default; the environment wins.
  const fileRotation = isPlainObject(kms?.rotation) ? kms.rotation.cryptoperiodDays : undefined;
  const { min, max } = CRYPTOPERIOD_DAYS;
  const inRange = (days: unknown): days is number => Number.isInteger(days) && (days as number) >= min && (days as number) <= max;
  const fileDays = inRange(fileRotation) ? fileRotation : CRYPTOPERIOD_DAYS.default;
  const cryptoperiodDays = parseInteger(env.KMS_ROTATION_CRYPTOPERIOD_DAYS, fileDays);
  if (!inRange(cryptoperiodDays)) {
    invalid("KMS_ROTATION_CRYPTOPERIOD_DAYS", `must be an integer from ${min} to ${max}, got "${env.KMS_ROTATION_CRYPTOPERIOD_DAYS}"`);
  }
  let rotationIntervalMs: number | undefined;
  if (env.KMS_ROTATION_INTERVAL_MS !== undefined && env.KMS_ROTATION_INTERVAL_MS !== "") {
    rotationIntervalMs = parseInteger(env.KMS_ROTATION_INTERVAL_MS, 0);
    if (rotationIntervalMs === undefined || rotationIntervalMs < 1_000 || rotationIntervalMs > 7 * 86_400_000) {
      invalid("KMS_ROTATION_INTERVAL_MS", `must be an integer from 1000 to 604800000, got "${env.KMS_ROTATION_INTERVAL_MS}"`);
      rotationIntervalMs = undefined;
    }
  }

  const benchNoop = env.KMS_BENCH_NOOP_ROUTE;
  if (benchNoop !== undefined && benchNoop !== "" && benchNoop !== "true" && benchNoop !== "false") {
    invalid("KMS_BENCH_NOOP_ROUTE", `must be "true" or "false", got "${benchNoop}"`);
  } else if (benchNoop === "true" && production) {
    invalid("KMS_BENCH_NOOP_ROUTE", "the benchmark's no-op route is for benchmarks only and is refused in production");
  }

  const config: ServerConfig = {
    host,
    port: port ?? DEFAULT_PORT,
    bodyLimitBytes: bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    production,
    logLevel: LOG_LEVELS.has(logLevel) ? logLevel : "info",
    kms,
    tokens,
    jwt,
    demoTenants,
    warnings,
    evidenceFile,
    evidenceDatabaseUrl,
    rotationLocks,
    evidenceHmacKey,
    cryptoperiodMs: (cryptoperiodDays ?? fileDays) * 86_400_000,
    rotationIntervalMs,
    benchNoopRoute: benchNoop === "true" && !production,
  };
  return issues.length === 0 ? { ok: true, config } : { ok: false, issues, partial: config };
}

function parseInteger(raw: string | undefined, fallback: number): number | undefined {
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

const REDIS_SCHEMES: readonly string[] = ["redis", "rediss"];
const POSTGRES_SCHEMES: readonly string[] = ["postgres", "postgresql"];
/** A scheme followed by `://`: only this much of a service URL is ever repeated in a message. */
const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]{0,31}):\/\//;

/**
 * A service URL from the environment (`undefined` when unset or empty, or with an issue). Messages
 * name at most its scheme: the rest may hold a user name and password.
 */
function serviceUrl(
  env: Env,
  name: string,
  schemes: readonly string[],
  invalid: (path: string, message: string) => void,
): { scheme: string; url: string } | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const expected = `must be a ${schemes.map((s) => `${s}://`).join(", ").replace(/, ([^,]*)$/, " or $1")} URL`;
  const scheme = URL_SCHEME.exec(raw)?.[1]?.toLowerCase();
  if (scheme === undefined) return void invalid(name, `${expected} (the value is not repeated: it may hold a password)`);
  if (!schemes.includes(scheme)) return void invalid(name, `${expected}, got "${scheme}://…"`);
  let url: URL;
  try {
    url = new URL(raw);
    // The clients decode the user name and password: a bad escape would fail only when connecting.
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    return void invalid(name, `is not a valid ${scheme}:// URL (the value is not repeated: it may hold a password)`);
  }
  return { scheme, url: raw };
}

/** A token hash as configured: `sha256:` then the 64 hex digits of the token's SHA-256 digest. */
const TOKEN_HASH = /^sha256:([0-9a-f]{64})$/;

/**
 * Static tokens from the environment, kept as SHA-256 digests: `KMS_TENANT_TOKEN_HASHES` (tenant id →
 * `sha256:<hex>`) and `KMS_ADMIN_TOKEN_HASH`, so no token is stored in the deployment; and, for the
 * quick start, the tokens themselves in `KMS_TENANT_TOKENS` and `KMS_ADMIN_TOKEN`.
 */
function loadTokens(
  env: Env,
  production: boolean,
  invalid: (path: string, message: string) => void,
): TokenDigests | undefined {
  const tenants: Record<string, Buffer> = {};
  let admin: Buffer | undefined;
  const seen = new Map<string, string>();
  const accept = (path: string, owner: string, digest: Buffer): Buffer | undefined => {
    const other = seen.get(digest.toString("hex"));
    if (other !== undefined) {
      invalid(path, `the same token is also configured for ${other}: every token must be unique`);
      return undefined;
    }
    seen.set(digest.toString("hex"), owner);
    return digest;
  };
  const fromToken = (path: string, owner: string, token: unknown): Buffer | undefined => {
    if (typeof token !== "string") return void invalid(path, "must be a string");
    if (!TOKEN_PATTERN.test(token)) return void invalid(path, "tokens must be non-empty and use only A-Z a-z 0-9 - . _ ~ + / (then optional =)");
    if (production && token.length < MIN_PRODUCTION_TOKEN_LENGTH) {
      return void invalid(path, `tokens must be at least ${MIN_PRODUCTION_TOKEN_LENGTH} characters in production`);
    }
    return accept(path, owner, tokenDigest(token));
  };
  const fromHash = (path: string, owner: string, hash: unknown): Buffer | undefined => {
    const hex = typeof hash === "string" ? TOKEN_HASH.exec(hash)?.[1] : undefined;
    if (hex === undefined) return void invalid(path, 'must be "sha256:" followed by the 64 lowercase hex digits of the token\'s SHA-256 digest');
    return accept(path, owner, Buffer.from(hex, "hex"));
  };
  const set = (value: string | undefined) => value !== undefined && value.trim() !== "";

  const tenantMaps: [string, (path: string, owner: string, value: unknown) => Buffer | undefined, string][] = [
    ["KMS_TENANT_TOKENS", fromToken, '{"tenant-a":"<token>"}'],
    ["KMS_TENANT_TOKEN_HASHES", fromHash, '{"tenant-a":"sha256:<hex>"}'],
  ];
  for (const [name, read, example] of tenantMaps) {
    const raw = env[name];
    if (!set(raw)) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw!);
    } catch {
      // The JSON parser's message may quote the input, which holds secrets: not repeated here.
      invalid(name, `is not valid JSON: expected a map like ${example}`);
      continue;
    }
    if (!isPlainObject(parsed)) {
      invalid(name, `must be a JSON object like ${example}`);
      continue;
    }
    for (const [tenantId, value] of Object.entries(parsed)) {
      const problem = tenantIdProblem(tenantId);
      if (problem !== undefined) {
        invalid(name, problem);
      } else if (Object.hasOwn(tenants, tenantId)) {
        invalid(`${name}.${tenantId}`, "this tenant already has a token in KMS_TENANT_TOKENS: give each tenant one credential");
      } else {
        const digest = read(`${name}.${tenantId}`, `tenant ${tenantId}`, value);
        if (digest !== undefined) tenants[tenantId] = digest;
      }
    }
  }
  if (set(env.KMS_ADMIN_TOKEN) && set(env.KMS_ADMIN_TOKEN_HASH)) {
    invalid("KMS_ADMIN_TOKEN_HASH", "set either KMS_ADMIN_TOKEN or KMS_ADMIN_TOKEN_HASH, not both");
  } else if (set(env.KMS_ADMIN_TOKEN)) {
    admin = fromToken("KMS_ADMIN_TOKEN", "the admin", env.KMS_ADMIN_TOKEN);
  } else if (set(env.KMS_ADMIN_TOKEN_HASH)) {
    admin = fromHash("KMS_ADMIN_TOKEN_HASH", "the admin", env.KMS_ADMIN_TOKEN_HASH);
  }

  const configured = TOKEN_VARIABLES.some((name) => set(env[name]));
  return configured ? { tenants, admin } : undefined;
}

/** The environment variables that configure static tokens (any one of them turns generation off). */
export const TOKEN_VARIABLES = ["KMS_TENANT_TOKENS", "KMS_TENANT_TOKEN_HASHES", "KMS_ADMIN_TOKEN", "KMS_ADMIN_TOKEN_HASH"] as const;

/** The largest accepted `KMS_JWT_CLOCK_SKEW_SECONDS`. */
export const MAX_CLOCK_SKEW_SECONDS = 300;
/** PEM and JWKS files larger than this are refused. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** `KMS_AUTH=jwt`: the JWT settings, or `undefined` with issues. Messages never quote a secret or key. */
function loadJwtSettings(env: Env, baseDir: string, report: (path: string, message: string) => void): JwtSettings | undefined {
  let problems = 0;
  const invalid = (path: string, message: string) => {
    problems += 1;
    report(path, message);
  };
  const value = (name: string): string | undefined => {
    const raw = env[name];
    return raw === undefined || raw === "" ? undefined : raw;
  };
  const alg = value("KMS_JWT_ALG");
  if (alg !== "HS256" && alg !== "RS256") {
    invalid("KMS_JWT_ALG", `must be "HS256" or "RS256" with KMS_AUTH=jwt, got ${alg === undefined ? "nothing" : `"${alg}"`}`);
    return undefined;
  }
  const algorithm: JwtAlgorithm = alg;
  const settings: JwtSettings = { algorithm };
  const secret = value("KMS_JWT_SECRET");
  const pemFile = value("KMS_JWT_PUBLIC_KEY_FILE");
  const jwksFile = value("KMS_JWT_JWKS_FILE");
  if (algorithm === "HS256") {
    if (pemFile !== undefined || jwksFile !== undefined) {
      invalid("KMS_JWT_ALG", "HS256 uses KMS_JWT_SECRET only: unset KMS_JWT_PUBLIC_KEY_FILE and KMS_JWT_JWKS_FILE");
    }
    const bytes = secret === undefined ? 0 : Buffer.byteLength(secret, "utf8");
    if (secret === undefined || bytes < MIN_HS256_SECRET_BYTES) {
      invalid("KMS_JWT_SECRET", `HS256 needs a shared secret of at least ${MIN_HS256_SECRET_BYTES} bytes (e.g. openssl rand -base64 48), got ${bytes}`);
    } else {
      settings.secret = Buffer.from(secret, "utf8");
    }
  } else {
    if (secret !== undefined) invalid("KMS_JWT_SECRET", "must not be set with RS256 (it verifies with a public key)");
    if ((pemFile === undefined) === (jwksFile === undefined)) {
      invalid("KMS_JWT_PUBLIC_KEY_FILE", "RS256 needs exactly one of KMS_JWT_PUBLIC_KEY_FILE (PEM) and KMS_JWT_JWKS_FILE");
    } else {
      const name = pemFile !== undefined ? "KMS_JWT_PUBLIC_KEY_FILE" : "KMS_JWT_JWKS_FILE";
      const path = resolve(baseDir, (pemFile ?? jwksFile)!);
      let text: string | undefined;
      try {
        if (statSync(path).size > MAX_KEY_FILE_BYTES) invalid(name, `${path} is larger than ${MAX_KEY_FILE_BYTES} bytes`);
        else text = readFileSync(path, "utf8");
      } catch (error) {
        invalid(name, `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
      }
      if (text !== undefined) {
        try {
          settings.publicKeys = pemFile !== undefined ? [{ kid: undefined, key: publicKeyFromPem(text) }] : publicKeysFromJwks(text);
        } catch (error) {
          invalid(name, `${path} ${(error as Error).message}`);
        }
      }
    }
  }
  settings.issuer = value("KMS_JWT_ISSUER");
  settings.audience = value("KMS_JWT_AUDIENCE");
  const claimName = (name: string, fallback: string): string => {
    const claim = value(name) ?? fallback;
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(claim)) invalid(name, "must be a claim name of 1 to 64 characters A-Z a-z 0-9 _ . : -");
    return claim;
  };
  settings.tenantClaim = claimName("KMS_JWT_TENANT_CLAIM", "tenant");
  settings.adminClaim = claimName("KMS_JWT_ADMIN_CLAIM", "role");
  settings.adminValue = value("KMS_JWT_ADMIN_VALUE") ?? "kms-admin";
  if (settings.adminClaim === settings.tenantClaim) invalid("KMS_JWT_ADMIN_CLAIM", "must differ from KMS_JWT_TENANT_CLAIM");
  const skew = parseInteger(env.KMS_JWT_CLOCK_SKEW_SECONDS, 60);
  if (skew === undefined || skew > MAX_CLOCK_SKEW_SECONDS) {
    invalid("KMS_JWT_CLOCK_SKEW_SECONDS", `must be an integer from 0 to ${MAX_CLOCK_SKEW_SECONDS}, got "${env.KMS_JWT_CLOCK_SKEW_SECONDS}"`);
  } else {
    settings.clockSkewSeconds = skew;
  }
  return problems === 0 ? settings : undefined;
}
