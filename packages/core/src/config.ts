/**
 * Configuration: one schema for file and environment input, validated synchronously at start-up.
 * Every problem is reported at once (a `KmsConfigError` listing each issue with its path, its own
 * code and a docs link); nothing is ever replaced by a silent fallback, least of all by `local`.
 */
import { createRequire } from "node:module";
import { z } from "zod";
import { keyIdProblem, tenantIdProblem } from "./envelope";
import { type ConfigIssue, KmsConfigError, configIssue } from "./errors";
import { KNOWN_PROVIDERS, PROVIDER_ID_PATTERN, type KmsProvider, type ProviderDefinition } from "./provider";

/** The largest cache capacity (entries per side). */
export const MAX_CACHE_CAPACITY = 1_000_000;
/** The cryptoperiod's bounds and default, in days (NIST SP 800-57's usual 90 days). */
export const CRYPTOPERIOD_DAYS = { min: 1, max: 3650, default: 90 } as const;

/** AES-GCM with random 96-bit IVs: at most 2^32 messages per key (NIST SP 800-38D). */
const MAX_MESSAGES_PER_KEY = 2 ** 32;

const positiveInt = z.number().int().positive();

const keyRefSchema = z.strictObject({
  provider: z.string().min(1),
  keyId: z.string().check((ctx) => {
    const problem = keyIdProblem(ctx.value);
    if (problem !== undefined) ctx.issues.push({ code: "custom", message: problem, input: ctx.value });
  }),
});

const tenantKeySchema = keyRefSchema.extend({
  /** Keys this tenant used before (BYOK key changes): still accepted for decrypt and rewrap. */
  previous: z.array(keyRefSchema).max(32).default([]),
});

const cacheSchema = z
  .strictObject({
    encrypt: z
      .strictObject({
        maxAgeMs: positiveInt.default(300_000),
        maxMessages: positiveInt.max(MAX_MESSAGES_PER_KEY).default(1_000_000),
        maxBytes: positiveInt.max(Number.MAX_SAFE_INTEGER).default(2 ** 36),
        capacity: positiveInt.max(MAX_CACHE_CAPACITY).default(10_000),
      })
      .prefault({}),
    decrypt: z
      .strictObject({
        maxAgeMs: positiveInt.default(300_000),
        capacity: positiveInt.max(MAX_CACHE_CAPACITY).default(10_000),
      })
      .prefault({}),
    /** Each entry's max age is shortened by up to this fraction, at random, against stampedes. */
    jitter: z.number().min(0).max(0.5).default(0.1),
    /** While the KMS fails, cached keys keep serving past their max age until this age. */
    hardMaxAgeMs: positiveInt.default(3_600_000),
    /** The shared tier (docs/SCALING.md): data keys shared between instances, sealed, in Redis. Off when absent. */
    shared: z
      .strictObject({
        /** `redis://` or `rediss://` URL. Credentials in it are a secret: prefer `urlFromEnv`. */
        url: z.string().regex(/^rediss?:\/\/\S+$/, "must be a redis:// or rediss:// URL").optional(),
        /** The environment variable holding the URL. */
        urlFromEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").optional(),
        /** Namespace of every name the tier writes (`<keyPrefix>::<name>`). */
        keyPrefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "1 to 64 of [A-Za-z0-9_.:-]").default("kms"),
        /** Each Redis operation's time limit: past it the tier is skipped (the in-process tier and the KMS serve). */
        timeoutMs: positiveInt.max(10_000).default(50),
        connectTimeoutMs: positiveInt.max(60_000).default(1_000),
        /** How long a failed tier is skipped before one request probes it again. */
        retryAfterMs: positiveInt.max(600_000).default(1_000),
        /** How long the instance loading a cold key from the KMS holds its lock (others poll meanwhile). */
        lockTtlMs: positiveInt.max(60_000).default(3_000),
        /** The key that wraps the cache-sealing key. Default: `tenants.defaultKey`. */
        sealingKey: keyRefSchema.optional(),
        /** A new cache-sealing key per this period. */
        sealingKeyRotationMs: z.number().int().min(60_000).max(30 * 86_400_000).default(86_400_000),
      })
      .optional(),
  })
  .prefault({});

export const resilienceSchema = z
  .strictObject({
    timeoutMs: positiveInt.max(600_000).default(2_000),
    retry: z
      .strictObject({
        maxAttempts: positiveInt.max(10).default(3),
        baseDelayMs: z.number().int().min(0).default(50),
        maxDelayMs: z.number().int().min(0).default(1_000),
      })
      .prefault({}),
    circuitBreaker: z
      .strictObject({
        failureThreshold: positiveInt.default(5),
        resetAfterMs: positiveInt.default(10_000),
      })
      .prefault({}),
    bulkhead: z
      .strictObject({
        maxConcurrent: positiveInt.default(64),
        maxQueue: z.number().int().min(0).default(1_000),
      })
      .prefault({}),
  })
  .prefault({});

const tenantsSchema = z
  .strictObject({
    /** The key of every tenant that has no entry in `keys`. */
    defaultKey: tenantKeySchema.optional(),
    /** Per-tenant keys (bring your own key). */
    keys: z.record(z.string(), tenantKeySchema).default({}),
  })
  .prefault({});

const providersSchema = z.record(z.string(), z.unknown());

/**
 * Key rotation policy. Core only validates it: the rotation scheduler (`@kms/rotation`, the server,
 * `kms rotate --all-due`) reads it.
 */
const rotationSchema = z
  .strictObject({
    /** A key's current version is due for rotation at this age (NIST SP 800-57's usual 90 days). */
    cryptoperiodDays: z.number().int().min(CRYPTOPERIOD_DAYS.min).max(CRYPTOPERIOD_DAYS.max).default(CRYPTOPERIOD_DAYS.default),
  })
  .prefault({});

export const kmsConfigSchema = z.strictObject({
  /** Settings per provider id; each provider used by a tenant key needs an entry (`{}` is fine). */
  providers: providersSchema,
  tenants: tenantsSchema,
  cache: cacheSchema,
  resilience: resilienceSchema,
  rotation: rotationSchema,
  /** `local` keeps its keys in a file on this host; in production it needs this explicit opt-in. */
  allowLocalInProduction: z.boolean().default(false),
});

/** Configuration as written (file or code): everything but `providers` has defaults. */
export type KmsConfigInput = z.input<typeof kmsConfigSchema>;
/** Configuration with every default filled in. */
export type KmsConfig = z.output<typeof kmsConfigSchema>;
export type KeyRefConfig = z.output<typeof keyRefSchema>;
export type TenantKeyConfig = z.output<typeof tenantKeySchema>;
export type CacheConfig = KmsConfig["cache"];
export type SharedCacheConfig = NonNullable<CacheConfig["shared"]>;
export type ResilienceConfig = KmsConfig["resilience"];
export type RotationConfig = KmsConfig["rotation"];

export interface ValidatedConfig {
  config: KmsConfig;
  /** Providers created from `config.providers` through the registry. */
  providers: Map<string, KmsProvider>;
  production: boolean;
}

export interface ValidateOptions {
  registry: readonly ProviderDefinition<unknown>[];
  env?: Readonly<Record<string, string | undefined>>;
  /** When the app resolves tenant keys itself, `tenants` may be empty. */
  customResolver?: boolean;
  /** When the app passes the shared tier's store in code, `cache.shared` names no URL. */
  sharedCacheStore?: boolean;
}

/**
 * Whether `env` describes production. NODE_ENV is compared without case and surrounding blanks, and
 * `prod` counts too, so that `NODE_ENV=Production` cannot slip past the production-only checks.
 */
export function isProductionEnv(env: Readonly<Record<string, string | undefined>>): boolean {
  return /^\s*prod(uction)?\s*$/i.test(env.NODE_ENV ?? "");
}

const requireFromHere = createRequire(__filename);

function isInstalled(packageName: string): boolean {
  try {
    requireFromHere.resolve(packageName);
    return true;
  } catch {
    return false;
  }
}

function pathOf(segments: readonly PropertyKey[]): string {
  return segments
    .map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`))
    .join("");
}

/**
 * Validates raw configuration, creates its providers through the registry, and returns them, or
 * throws one `KmsConfigError` listing every problem. Makes no network call.
 */
export function validateConfig(raw: unknown, options: ValidateOptions): ValidatedConfig {
  const issues: ConfigIssue[] = [];
  const parsed = kmsConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      issues.push(configIssue(pathOf(issue.path), "KMS_CONFIG_INVALID", issue.message));
    }
  }
  // The checks below run on every part that is well-typed, even when another part is not, so that
  // one run reports every problem (a bad cache value must not hide an unknown provider).
  const input = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const providersInput = parsed.success ? parsed.data.providers : providersSchema.safeParse(input.providers).data;
  const tenants = parsed.success ? parsed.data.tenants : tenantsSchema.safeParse(input.tenants).data;
  const allowLocalInProduction = parsed.success ? parsed.data.allowLocalInProduction : input.allowLocalInProduction === true;
  const env = options.env ?? process.env;
  const production = isProductionEnv(env);
  const registry = new Map<string, ProviderDefinition<unknown>>();
  for (const definition of options.registry) registry.set(definition.id, definition);

  // Every provider named anywhere must be registered and configured.
  const settingsOk = new Map<string, unknown>();
  for (const [id, rawSettings] of Object.entries(providersInput ?? {})) {
    const path = `providers.${id}`;
    const definition = registry.get(id);
    if (!definition) {
      issues.push(providerMissing(path, id));
      continue;
    }
    const result = definition.parseSettings(rawSettings);
    if (result.ok) settingsOk.set(id, result.settings);
    else for (const i of result.issues) issues.push(configIssue(i.path ? `${path}.${i.path}` : path, "KMS_CONFIG_INVALID", i.message));
  }

  if (tenants !== undefined) issues.push(...tenantIssues(tenants, providersInput, registry, options.customResolver === true));

  if (production && providersInput !== undefined && "local" in providersInput && !allowLocalInProduction) {
    issues.push(
      configIssue(
        "providers.local",
        "KMS_LOCAL_IN_PRODUCTION",
        "the local provider keeps keys in a file on this host and is not fit for production " +
          "(NODE_ENV=production): configure a cloud KMS, or set allowLocalInProduction: true to accept the risk",
      ),
    );
  }
  if (parsed.success) {
    const { retry } = parsed.data.resilience;
    if (retry.maxDelayMs < retry.baseDelayMs) {
      issues.push(configIssue("resilience.retry.maxDelayMs", "KMS_CONFIG_INVALID", "must be >= baseDelayMs"));
    }
    const { cache } = parsed.data;
    if (cache.hardMaxAgeMs < cache.encrypt.maxAgeMs || cache.hardMaxAgeMs < cache.decrypt.maxAgeMs) {
      issues.push(configIssue("cache.hardMaxAgeMs", "KMS_CONFIG_INVALID", "must be >= cache.encrypt.maxAgeMs and cache.decrypt.maxAgeMs"));
    }
    if (cache.shared !== undefined) issues.push(...sharedCacheIssues(cache.shared, parsed.data.tenants, parsed.data.providers, env, options.sharedCacheStore === true));
  }
  if (!parsed.success || issues.length > 0) throw new KmsConfigError(issues);

  const config = parsed.data;
  const providers = new Map<string, KmsProvider>();
  try {
    for (const [id, settings] of settingsOk) {
      const provider = registry.get(id)!.create(settings);
      if (provider.id !== id) {
        void provider.close().catch(() => undefined);
        throw new KmsConfigError([
          configIssue(`providers.${id}`, "KMS_CONFIG_INVALID", `definition "${id}" created a provider with id "${provider.id}"`),
        ]);
      }
      providers.set(id, provider);
    }
  } catch (error) {
    // The providers created before the failing one hold SDK clients (sockets, timers): close them.
    for (const provider of providers.values()) void provider.close().catch(() => undefined);
    throw error;
  }
  return { config, providers, production };
}

/** Tenant ids, and every key reference: its provider must be registered and configured, its key id valid for it. */
function tenantIssues(
  tenants: KmsConfig["tenants"],
  providersInput: Record<string, unknown> | undefined,
  registry: ReadonlyMap<string, ProviderDefinition<unknown>>,
  customResolver: boolean,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const keyRefs: { path: string; ref: KeyRefConfig }[] = [];
  const addKey = (path: string, key: TenantKeyConfig) => {
    keyRefs.push({ path, ref: key });
    key.previous.forEach((p, i) => keyRefs.push({ path: `${path}.previous[${i}]`, ref: p }));
  };
  const { defaultKey, keys } = tenants;
  if (defaultKey) addKey("tenants.defaultKey", defaultKey);
  for (const [tenantId, key] of Object.entries(keys)) {
    const tenantProblem = tenantIdProblem(tenantId);
    if (tenantProblem !== undefined) issues.push(configIssue("tenants.keys", "KMS_CONFIG_INVALID", tenantProblem));
    addKey(`tenants.keys.${tenantId}`, key);
  }
  if (!defaultKey && Object.keys(keys).length === 0 && !customResolver) {
    issues.push(configIssue("tenants", "KMS_CONFIG_INVALID", "no tenant key: set tenants.defaultKey, tenants.keys, or a resolver"));
  }
  for (const { path, ref } of keyRefs) {
    const { provider, keyId } = ref;
    const definition = registry.get(provider);
    if (!PROVIDER_ID_PATTERN.test(provider)) {
      issues.push(configIssue(`${path}.provider`, "KMS_CONFIG_INVALID", "provider ids are 1 to 64 of [a-z0-9-]"));
    } else if (!definition) {
      issues.push(providerMissing(`${path}.provider`, provider));
    } else if (providersInput !== undefined && !(provider in providersInput)) {
      issues.push(configIssue(`${path}.provider`, "KMS_CONFIG_INVALID", `provider "${provider}" has no settings: add providers.${provider}`));
    } else {
      const problem = definition.keyIdProblem?.(keyId);
      if (problem !== undefined) issues.push(configIssue(`${path}.keyId`, "KMS_CONFIG_INVALID", `${provider}: ${problem}`));
    }
  }
  return issues;
}

/** The shared tier: where Redis is (one of url, urlFromEnv set, or a store in code), and a sealing key on a configured provider. */
function sharedCacheIssues(
  shared: NonNullable<KmsConfig["cache"]["shared"]>,
  tenants: KmsConfig["tenants"],
  providersInput: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
  storeInCode: boolean,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const path = "cache.shared";
  if (storeInCode) {
    if (shared.url !== undefined || shared.urlFromEnv !== undefined) {
      issues.push(configIssue(path, "KMS_CONFIG_INVALID", "the store is passed to createKms (sharedCacheStore): remove url and urlFromEnv"));
    }
  } else if ((shared.url === undefined) === (shared.urlFromEnv === undefined)) {
    issues.push(configIssue(path, "KMS_CONFIG_INVALID", "set exactly one of url and urlFromEnv"));
  } else if (shared.urlFromEnv !== undefined && !/^rediss?:\/\/\S+$/.test(env[shared.urlFromEnv] ?? "")) {
    issues.push(configIssue(`${path}.urlFromEnv`, "KMS_CONFIG_INVALID", `environment variable ${shared.urlFromEnv} must hold a redis:// or rediss:// URL`));
  }
  const sealingKey = shared.sealingKey ?? tenants.defaultKey;
  if (sealingKey === undefined) {
    issues.push(configIssue(`${path}.sealingKey`, "KMS_CONFIG_INVALID", "set cache.shared.sealingKey (there is no tenants.defaultKey to use)"));
  } else if (!(sealingKey.provider in providersInput)) {
    issues.push(configIssue(`${path}.sealingKey.provider`, "KMS_CONFIG_INVALID", `provider "${sealingKey.provider}" has no settings: add providers.${sealingKey.provider}`));
  }
  return issues;
}

/** The shared tier's Redis URL (validated: `sharedCacheIssues`). */
export function sharedCacheUrl(shared: NonNullable<KmsConfig["cache"]["shared"]>, env: Readonly<Record<string, string | undefined>>): string {
  return shared.url ?? env[shared.urlFromEnv!]!;
}

function providerMissing(path: string, id: string): ConfigIssue {
  const packageName = KNOWN_PROVIDERS[id];
  if (packageName === undefined) {
    const known = Object.keys(KNOWN_PROVIDERS).join(", ");
    return configIssue(path, "KMS_PROVIDER_UNKNOWN", `unknown provider "${id}" (known providers: ${known})`);
  }
  const how = isInstalled(packageName)
    ? `${packageName} is installed but its definition is not in the registry passed to createKms`
    : `install ${packageName} (pnpm add ${packageName}) and add its definition to the registry passed to createKms`;
  return configIssue(path, "KMS_PROVIDER_NOT_INSTALLED", `provider "${id}" is not available: ${how}`);
}
