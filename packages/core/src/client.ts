/**
 * `createKms`: the per-tenant envelope-encryption client. Data keys come from the cache first; a
 * provider is called only on a miss, through its resilience policy, and what it returns is checked.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { KeyCache } from "./cache";
import type {
  BatchResult,
  CacheStats,
  DecryptItem,
  EncryptItem,
  KmsClient,
  KeyReport,
  KmsHealth,
  PermissionReport,
  ProviderHealthReport,
  ProviderStats,
} from "./client-types";
import { type Clock, systemClock } from "./clock";
import { type KmsConfigInput, sharedCacheUrl, validateConfig } from "./config";
import {
  type DataKeyMaterial,
  type EncryptTemplate,
  type DecryptTemplate,
  type KeySection,
  type ParsedEnvelope,
  FIXED_HEADER_BYTES,
  authFailed,
  createDecryptTemplate,
  createEncryptTemplate,
  deriveMaterial,
  encodeKeySection,
  encodeTenantContext,
  fromBase64Url,
  keySectionTag,
  locateKeySection,
  openWith,
  parseEnvelope,
  parseKeySection,
  replaceKeySection,
  seal,
  toBase64Url,
  verifyKeySectionChecksum,
  zeroMaterial,
} from "./envelope";
import { KmsError, isKmsError } from "./errors";
import { type KmsEventListener, KmsEvents } from "./events";
import { DATA_KEY_BYTES, type EncryptionContext, type KmsProvider, type ProviderDefinition, copyKeyBytes } from "./provider";
import { ProviderPolicy } from "./resilience";
import { type SharedCacheStore, type SharedLoaded, type SharedLookup, type SharedValue, SharedTier } from "./shared-cache";
import { redisSharedCacheStore } from "./shared-cache-store";
import { type KeyRef, type TenantKeyResolver, type TenantKeys, configResolver, tenantKeys } from "./tenant";

/** The encryption-context key under which core sends the tenant id to the KMS. Reserved. */
export const TENANT_CONTEXT_KEY = "kms:tenant";
const RESERVED_CONTEXT_PREFIX = "kms:";
const UNCHECKED = { verifyChecksum: false } as const;

export interface CreateKmsOptions {
  /** The provider definitions this app installed: the only way a provider name becomes a provider. */
  registry: readonly ProviderDefinition<unknown>[];
  /** Plain configuration data (file, environment or code); validated at once, every problem reported. */
  config: KmsConfigInput | unknown;
  /** Read for NODE_ENV; defaults to process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Resolve tenant keys in the app (e.g. from a database) instead of `config.tenants`. */
  resolveTenantKeys?: TenantKeyResolver;
  /** Subscribed before the first call (e.g. @kms/metrics). */
  onEvent?: KmsEventListener;
  clock?: Clock;
  /** For deterministic tests of jitter and backoff. */
  random?: () => number;
  /**
   * The shared tier's store, for a keyv store other than Redis (`keyvSharedCacheStore`); then
   * `cache.shared` holds the tier's settings without a URL. Closed by `close()`.
   */
  sharedCacheStore?: SharedCacheStore;
}

export function createKms(options: CreateKmsOptions): KmsClient {
  const { config, providers } = validateConfig(options.config, {
    registry: options.registry,
    env: options.env,
    customResolver: options.resolveTenantKeys !== undefined,
    sharedCacheStore: options.sharedCacheStore !== undefined,
  });
  const clock = options.clock ?? systemClock;
  const events = new KmsEvents();
  if (options.onEvent) events.on(options.onEvent);

  const policies = new Map<string, ProviderPolicy>();
  for (const id of providers.keys()) {
    policies.set(id, new ProviderPolicy(id, config.resilience, { events, clock, random: options.random }));
  }
  const cacheDeps = { clock, events, random: options.random };
  const { cache } = config;
  const encryptCache = new KeyCache<EncryptTemplate>("encrypt", { ...cache.encrypt, hardMaxAgeMs: cache.hardMaxAgeMs, jitter: cache.jitter }, cacheDeps);
  const decryptCache = new KeyCache<DecryptEntry>("decrypt", { ...cache.decrypt, hardMaxAgeMs: cache.hardMaxAgeMs, jitter: cache.jitter }, cacheDeps);

  const fromConfig = configResolver(config.tenants);
  const custom = options.resolveTenantKeys;
  const resolve = async (tenantId: string): Promise<TenantKeys> => {
    if (!custom) return fromConfig(tenantId);
    const keys = tenantKeys(await custom(tenantId));
    for (const provider of keys.decryptable.keys()) {
      if (!providers.has(provider)) {
        throw new KmsError("KMS_CONFIG_INVALID", `the tenant key resolver returned provider "${provider}", which is not configured`);
      }
    }
    return keys;
  };

  /**
   * The tenant's keys from configuration; when there are none, a bad tenant id or context is still
   * reported as INPUT_INVALID first (a cache hit never validates, so the miss path and this do).
   */
  const configKeys = (tenantId: string, context: EncryptionContext | undefined): TenantKeys => {
    try {
      return fromConfig(tenantId);
    } catch (error) {
      canonicalContext(tenantId, context);
      throw error;
    }
  };

  let closed = false;
  const ensureOpen = () => {
    if (closed) throw new KmsError("KMS_CLOSED", "this KMS client has been closed");
  };

  /** Every provider call: policy (bulkhead, retry, breaker, timeout) around the provider. */
  const call = <T>(ref: KeyRef, operation: Parameters<ProviderPolicy["execute"]>[0], fn: (p: KmsProvider, signal: AbortSignal) => Promise<T>): Promise<T> => {
    const provider = providers.get(ref.provider);
    const policy = policies.get(ref.provider);
    if (!provider || !policy) throw new KmsError("KMS_PROVIDER_UNKNOWN", `provider "${ref.provider}" is not configured`);
    return policy.execute(operation, (signal) => fn(provider, signal));
  };

  /** A new data key under `ref`: its plaintext (the caller zeroes it) and its encoded key section. */
  const generateDataKey = async (ref: KeyRef, context: EncryptionContext): Promise<{ plaintextKey: Buffer; keySection: Buffer }> => {
    const dataKey = await call(ref, "generateDataKey", async (p, signal) => {
      if (p.generateDataKey) return p.generateDataKey({ keyId: ref.keyId, context, signal });
      const plaintextKey = randomBytes(DATA_KEY_BYTES);
      try {
        const wrapped = await p.wrapDataKey({ keyId: ref.keyId, plaintextKey, context, signal });
        return { ...wrapped, plaintextKey: copyKeyBytes(plaintextKey) };
      } finally {
        plaintextKey.fill(0);
      }
    });
    try {
      checkKey(ref.provider, dataKey.plaintextKey);
      const keySection = encodeKeySection({ providerId: ref.provider, keyId: ref.keyId, keyVersion: dataKey.keyVersion, wrappedKey: dataKey.wrappedKey });
      return { plaintextKey: copyKeyBytes(dataKey.plaintextKey), keySection };
    } finally {
      dataKey.plaintextKey.fill(0);
    }
  };

  /** Unwraps a key section's data key (the caller zeroes it). */
  const unwrapKeySection = async (ks: KeySection, kmsContext: EncryptionContext): Promise<Buffer> => {
    const dek = await call({ provider: ks.providerId, keyId: ks.keyId }, "unwrapDataKey", (p, signal) =>
      p.unwrapDataKey({ keyId: ks.keyId, keyVersion: ks.keyVersion, wrappedKey: ks.wrappedKey, context: kmsContext, signal }),
    ).catch((error: unknown) => {
      // The same error whether the KMS or the envelope's own checks refused: callers (and attackers)
      // cannot tell a cached key from a fresh one by the message.
      throw isKmsError(error) && error.code === "ENVELOPE_AUTH_FAILED" ? authFailed() : error;
    });
    try {
      checkKey(ks.providerId, dek);
      return copyKeyBytes(dek);
    } finally {
      dek.fill(0);
    }
  };

  /**
   * The template that opens the envelope with `dek`, when `dek` is the envelope's data key (checked
   * against its commitment and key-section tag, so the tag's HMAC is computed once); else undefined.
   */
  const verifiedTemplate = (parsed: ParsedEnvelope, tenantContext: Buffer, dek: Uint8Array): { material: DataKeyMaterial; template: DecryptTemplate } | undefined => {
    const material = deriveMaterial(dek);
    const template = createDecryptTemplate(material, parsed.keySectionBytes, tenantContext);
    // Both comparisons always run (timingSafeEqual is constant time for equal lengths).
    const commitmentOk = timingSafeEqual(template.commitment, parsed.commitment);
    const tagOk = timingSafeEqual(template.keySectionTag, parsed.keySectionTag);
    if (commitmentOk && tagOk) return { material, template };
    zeroMaterial(material);
    return undefined;
  };

  /** Unwraps an envelope's data key from the KMS; a key that does not match the envelope is an integrity failure. */
  const unwrapVerified = async (parsed: ParsedEnvelope, tenantContext: Buffer, kmsContext: EncryptionContext, dek: Buffer): Promise<{ material: DataKeyMaterial; template: DecryptTemplate }> => {
    const unwrapped = await unwrapKeySection(parsed.keySection, kmsContext);
    try {
      const verified = verifiedTemplate(parsed, tenantContext, unwrapped);
      if (verified === undefined) {
        if (events.active) events.emit({ type: "cache.integrity-failure", side: "decrypt", provider: parsed.keySection.providerId, tier: "local" });
        throw authFailed();
      }
      dek.set(unwrapped);
      return verified;
    } finally {
      unwrapped.fill(0);
    }
  };

  /**
   * The shared tier (`cache.shared`), when configured: its sealing key is a data key under
   * `cache.shared.sealingKey` (default: the tenants' default key), through that provider's policy.
   */
  const shared = ((): SharedTier | undefined => {
    const settings = cache.shared;
    if (settings === undefined) return undefined;
    const sealingRef = settings.sealingKey ?? config.tenants.defaultKey!; // validated: one of them is set
    const store = options.sharedCacheStore ?? redisSharedCacheStore({ url: sharedCacheUrl(settings, options.env ?? process.env), keyPrefix: settings.keyPrefix, connectTimeoutMs: settings.connectTimeoutMs });
    return new SharedTier(
      store,
      { ...settings, hardMaxAgeMs: cache.hardMaxAgeMs },
      {
        clock,
        events,
        random: options.random ?? Math.random,
        kms: {
          generate: (context) => generateDataKey(sealingRef, context),
          unwrap: (ks, context) => {
            // Only the configured sealing key: a record naming another (a tenant's) is refused unread.
            if (ks.providerId !== sealingRef.provider || ks.keyId !== sealingRef.keyId) return Promise.reject(authFailed());
            return unwrapKeySection(ks, context);
          },
        },
      },
    );
  })();

  /**
   * Loads an entry through the shared tier when there is one (the tier calls `load` on its miss),
   * straight from `load` otherwise. Entries are taken from the tier only while younger than the
   * side's shortest jittered max age, so every entry installed here starts fresh.
   */
  const throughShared = (lookup: Omit<SharedLookup, "maxAgeMs">, load: () => Promise<SharedValue>): Promise<SharedLoaded & { fromStore?: boolean }> => {
    if (shared === undefined) return load().then((value) => ({ ...value, createdAt: clock.now() }));
    const maxAgeMs = Math.floor(cache[lookup.side].maxAgeMs * (1 - cache.jitter));
    return shared.load({ ...lookup, maxAgeMs }, load);
  };

  /**
   * Both caches are keyed by the tenant and context as given (`inputKeyOf`), not by their canonical
   * encoding: a hit then needs no validation or encoding of the context at all (only validated inputs
   * are ever installed), and two orders of one context are merely two entries. A miss validates and
   * encodes (`canonicalContext`) before any KMS call.
   */
  const encryptUnder = (keys: TenantKeys, tenantId: string, data: Buffer, context?: EncryptionContext, validated?: Buffer): Promise<Buffer> => {
    const { current } = keys;
    const input = inputKeyOf(tenantId, context);
    // Provider ids are [a-z0-9-]; the key id is length-prefixed; the input key runs to the end.
    const cacheKey = input === undefined ? undefined : `${current.provider}\0${current.keyId.length}:${current.keyId}${input}`;
    const hit = cacheKey === undefined ? undefined : encryptCache.take(cacheKey, data.length);
    if (hit !== undefined) return Promise.resolve(seal(hit.value, data));
    const tenantContext = validated ?? canonicalContext(tenantId, context); // validates: INPUT_INVALID
    return encryptCache.withKey(
      cacheKey!, // defined: an input without a key fails validation above
      { tenantId, provider: current.provider, keyId: current.keyId, bytes: data.length },
      async () => {
        const owner = { tenantId, provider: current.provider, keyId: current.keyId };
        const loaded = await throughShared(
          // A shared entry must hold a key section of this key (it is authentic; this is depth).
          { side: "encrypt", cacheKey: cacheKey!, owner, check: (value) => keySectionOf(value.extra, current) },
          async () => {
            const { plaintextKey, keySection } = await generateDataKey(current, kmsContextFor(tenantId, context));
            return { dek: plaintextKey, extra: keySection };
          },
        );
        try {
          const material = deriveMaterial(loaded.dek);
          if (shared !== undefined && !loaded.fromStore) {
            // Instances decrypting what this one encrypts find the key in the tier too.
            const decryptKey = `${input!.length}:${input}${loaded.extra.toString("latin1")}`;
            shared.share({ side: "decrypt", cacheKey: decryptKey }, { dek: loaded.dek, extra: Buffer.alloc(0) }, loaded.createdAt, Math.floor(cache.decrypt.maxAgeMs * (1 - cache.jitter)));
          }
          return { value: createEncryptTemplate(material, loaded.extra, tenantContext), material, createdAt: loaded.createdAt };
        } finally {
          loaded.dek.fill(0);
        }
      },
      (entry) => seal(entry.value, data),
    );
  };

  /**
   * A hit reads only the envelope's length fields (`locateKeySection`): the cache key holds the exact
   * key-section bytes, which were fully parsed and checked when the entry was filled, and the entry's
   * template checks the commitment and key-section tag. A miss parses the envelope fully and checks
   * its checksum before any KMS call.
   */
  const decryptUnder = (keys: TenantKeys, tenantId: string, located: LocatedEnvelope, context?: EncryptionContext, validated?: Buffer): Promise<Buffer> => {
    const { buf, keySectionEnd } = located;
    // Keyed by tenant, context (as in encryptUnder) and the exact key section: a DEK is only ever
    // used under one context, so this costs no hits, and a load started by a caller with the wrong
    // context is never shared with the right one.
    const input = inputKeyOf(tenantId, context);
    const keySectionText = buf.toString("latin1", FIXED_HEADER_BYTES, keySectionEnd);
    const cacheKey = input === undefined ? undefined : `${input.length}:${input}${keySectionText}`;
    const hit = cacheKey === undefined ? undefined : decryptCache.take(cacheKey, 0);
    if (hit !== undefined) {
      // The tenant's keys may have changed since (a resolver dropped a previous key).
      if (!keys.decryptable.get(hit.value.providerId)?.has(hit.value.keyId)) throw authFailed();
      return Promise.resolve(openWith(hit.value.template, buf, keySectionEnd));
    }
    const parsed = parseEnvelope(buf, UNCHECKED);
    const tenantContext = validated ?? canonicalContext(tenantId, context); // validates: INPUT_INVALID
    const { providerId, keyId } = parsed.keySection;
    // An envelope under a key that is not this tenant's is not authentic for this tenant: vague on purpose.
    if (!keys.decryptable.get(providerId)?.has(keyId)) throw authFailed();
    return decryptCache.withKey(
      cacheKey!, // defined: an input without a key fails validation above
      { tenantId, provider: providerId, keyId, bytes: 0 },
      async () => {
        verifyKeySectionChecksum(parsed);
        // Set by the shared entry's check (when the tier had it) or by the KMS unwrap.
        let verified: { material: DataKeyMaterial; template: DecryptTemplate } | undefined;
        const loaded = await throughShared(
          {
            side: "decrypt",
            cacheKey: cacheKey!,
            owner: { tenantId, provider: providerId, keyId },
            check: (value) => (verified = verifiedTemplate(parsed, tenantContext, value.dek)) !== undefined,
          },
          async () => {
            const dek = Buffer.alloc(DATA_KEY_BYTES);
            verified = await unwrapVerified(parsed, tenantContext, kmsContextFor(tenantId, context), dek);
            return { dek, extra: Buffer.alloc(0) };
          },
        );
        loaded.dek.fill(0);
        const { material, template } = verified!;
        // The caller's buffer is read again after the await: the entry must describe the key section
        // its cache key names, so a buffer changed meanwhile installs nothing.
        if (buf.toString("latin1", FIXED_HEADER_BYTES, keySectionEnd) !== keySectionText) {
          zeroMaterial(material);
          throw authFailed();
        }
        return { value: { template, providerId, keyId }, material, createdAt: loaded.createdAt };
      },
      (entry) => openWith(entry.value.template, buf, keySectionEnd),
    );
  };


  // The hot paths are plain functions (not async): a cache hit costs no extra promise or closure,
  // and a synchronous throw becomes a rejection. The context is read once, into a snapshot: a getter
  // or proxy answering differently on each read could otherwise install, under the cache key of one
  // context, a template bound to another; and with an app resolver it is used after an await.
  const encrypt = (tenantId: string, plaintext: Uint8Array | string, context?: EncryptionContext): Promise<Buffer> => {
    try {
      ensureOpen();
      const data = toBytes(plaintext);
      const snapshot = snapshotOf(context);
      if (custom) {
        // The app resolver is never asked about input that can only be INPUT_INVALID.
        const tenantContext = canonicalContext(tenantId, snapshot);
        return resolve(tenantId).then((keys) => encryptUnder(keys, tenantId, data, snapshot, tenantContext));
      }
      return encryptUnder(configKeys(tenantId, snapshot), tenantId, data, snapshot);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const decrypt = (tenantId: string, envelope: Uint8Array, context?: EncryptionContext): Promise<Buffer> => {
    try {
      ensureOpen();
      if (!(envelope instanceof Uint8Array)) throw new KmsError("INPUT_INVALID", "the envelope must be bytes (Uint8Array)");
      const located = locateKeySection(envelope);
      const snapshot = snapshotOf(context); // as in encrypt
      if (custom) {
        const tenantContext = canonicalContext(tenantId, snapshot); // as in encrypt
        return resolve(tenantId).then((keys) => decryptUnder(keys, tenantId, located, snapshot, tenantContext));
      }
      return decryptUnder(configKeys(tenantId, snapshot), tenantId, located, snapshot);
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const rewrap = async (tenantId: string, envelope: Uint8Array, context?: EncryptionContext): Promise<Buffer> => {
    ensureOpen();
    if (!(envelope instanceof Uint8Array)) throw new KmsError("INPUT_INVALID", "the envelope must be bytes (Uint8Array)");
    const parsed = parseEnvelope(envelope);
    context = snapshotOf(context); // read once: bound into the check below and sent to the KMS
    const tenantContext = canonicalContext(tenantId, context);
    const kmsContext = kmsContextFor(tenantId, context);
    const keys = await resolve(tenantId);
    if (!keys.decryptable.get(parsed.keySection.providerId)?.has(parsed.keySection.keyId)) throw authFailed();
    const dek = Buffer.alloc(DATA_KEY_BYTES);
    try {
      const { material, template } = await unwrapVerified(parsed, tenantContext, kmsContext, dek);
      try {
        // Authenticate the whole envelope for this tenant and context before its data key goes to
        // any other key: a provider that does not bind context would otherwise let one tenant
        // re-wrap another's data key under a key it controls.
        const { buf, keySectionEnd } = locateKeySection(envelope);
        openWith(template, buf, keySectionEnd).fill(0);
        const { current } = keys;
        const wrapped = await call(current, "wrapDataKey", (p, signal) =>
          p.wrapDataKey({ keyId: current.keyId, plaintextKey: dek, context: kmsContext, signal }),
        );
        const keySection = encodeKeySection({ providerId: current.provider, keyId: current.keyId, keyVersion: wrapped.keyVersion, wrappedKey: wrapped.wrappedKey });
        return replaceKeySection(parsed, keySection, keySectionTag(material, keySection));
      } finally {
        zeroMaterial(material);
      }
    } finally {
      dek.fill(0);
    }
  };

  const cacheStats = (): CacheStats => ({
    encrypt: { entries: encryptCache.size, hits: encryptCache.hits, misses: encryptCache.misses },
    decrypt: { entries: decryptCache.size, hits: decryptCache.hits, misses: decryptCache.misses },
  });

  /** Runs `fn` over items with bounded concurrency; same-key items coalesce in the caches. */
  const batch = async <I>(items: readonly I[], fn: (item: I) => Promise<Buffer>): Promise<BatchResult<Buffer>[]> => {
    ensureOpen();
    if (!Array.isArray(items)) throw new KmsError("INPUT_INVALID", "a batch must be an array of items");
    const results = new Array<BatchResult<Buffer>>(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        const item = items[i];
        try {
          if (typeof item !== "object" || item === null) throw new KmsError("INPUT_INVALID", `batch item #${i + 1} is not an object`);
          results[i] = { ok: true, value: await fn(item) };
        } catch (error) {
          results[i] = { ok: false, error: toKmsError(error) };
        }
      }
    };
    const width = Math.min(items.length, config.resilience.bulkhead.maxConcurrent);
    await Promise.all(Array.from({ length: width }, worker));
    return results;
  };

  /** Every (provider, key id) the configuration names, for health and permission checks. */
  /** The keys tenants encrypt under now (the default key and each tenant's own, without `previous`). */
  const currentKeys = (): KeyRef[] => {
    const seen = new Map<string, KeyRef>();
    const { defaultKey, keys } = config.tenants;
    for (const ref of [...(defaultKey ? [defaultKey] : []), ...Object.values(keys)]) seen.set(`${ref.provider}\0${ref.keyId}`, { provider: ref.provider, keyId: ref.keyId });
    return [...seen.values()];
  };

  const configuredKeys = (): KeyRef[] => {
    const seen = new Map<string, KeyRef>();
    const { defaultKey, keys } = config.tenants;
    for (const spec of [...(defaultKey ? [defaultKey] : []), ...Object.values(keys)]) {
      for (const ref of [spec, ...spec.previous]) seen.set(`${ref.provider}\0${ref.keyId}`, { provider: ref.provider, keyId: ref.keyId });
    }
    return [...seen.values()];
  };

  const client: KmsClient = {
    encrypt,
    decrypt,
    rewrap,
    async encryptToBase64Url(tenantId, plaintext, context) {
      return toBase64Url(await encrypt(tenantId, plaintext, context));
    },
    async decryptFromBase64Url(tenantId, envelope, context) {
      if (typeof envelope !== "string") throw new KmsError("INPUT_INVALID", "the envelope must be a base64url string");
      return decrypt(tenantId, fromBase64Url(envelope), context);
    },
    encryptMany: (items: readonly EncryptItem[]) => batch(items, (i) => encrypt(i.tenantId, i.plaintext, i.context)),
    decryptMany: (items: readonly DecryptItem[]) => batch(items, (i) => decrypt(i.tenantId, i.envelope, i.context)),

    async checkHealth(): Promise<KmsHealth> {
      ensureOpen();
      const keys = configuredKeys();
      const reports: Record<string, ProviderHealthReport> = {};
      await Promise.all(
        [...providers.entries()].map(async ([id, provider]) => {
          const policy = policies.get(id)!;
          const keyIds = keys.filter((k) => k.provider === id).map((k) => k.keyId);
          const started = clock.now();
          let health: { healthy: boolean; insecure: boolean; detail?: string };
          try {
            health = await policy.execute("checkHealth", (signal) => provider.checkHealth(keyIds, { signal }));
          } catch (error) {
            health = { healthy: false, insecure: false, detail: toKmsError(error).code };
          }
          const circuit = policy.circuitState;
          const cachedKeys = encryptCache.countFrom(id) + decryptCache.countFrom(id);
          const serving = health.healthy && circuit !== "open";
          const lastError = policy.lastError;
          reports[id] = {
            healthy: health.healthy,
            status: serving ? "up" : cachedKeys > 0 ? "degraded" : "down",
            insecure: health.insecure || provider.capabilities.insecure,
            circuit,
            latencyMs: clock.now() - started,
            cachedKeys,
            ...(lastError === undefined ? {} : { lastError: { ...lastError } }),
            ...(health.detail === undefined ? {} : { detail: health.detail }),
          };
        }),
      );
      const ready = Object.values(reports).every((r) => r.status !== "down");
      return { ready, providers: reports, cache: cacheStats(), ...(shared === undefined ? {} : { sharedCache: shared.health() }) };
    },

    async describeKeys(): Promise<KeyReport[]> {
      ensureOpen();
      return Promise.all(
        currentKeys().map(async (ref): Promise<KeyReport> => {
          try {
            return { ...ref, description: await call(ref, "describeKey", (p, signal) => p.describeKey(ref.keyId, { signal })) };
          } catch (error) {
            return { ...ref, error: toKmsError(error) };
          }
        }),
      );
    },

    async validatePermissions(): Promise<PermissionReport> {
      ensureOpen();
      const results = await Promise.all(
        configuredKeys().map(async (ref) => {
          try {
            const checks = await call(ref, "validatePermissions", (p, signal) => p.validatePermissions(ref.keyId, { signal }));
            return { ...ref, checks };
          } catch (error) {
            const e = toKmsError(error);
            return { ...ref, checks: [{ permission: "*", ok: false, error: e, docsUrl: e.docsUrl }] };
          }
        }),
      );
      return { ok: results.every((r) => r.checks.every((c) => c.ok)), keys: results };
    },

    onEvent: (listener) => events.on(listener),

    cacheStats,

    providerStats(): Record<string, ProviderStats> {
      const stats: Record<string, ProviderStats> = {};
      for (const [id, policy] of policies) stats[id] = { circuit: policy.circuitState, ...policy.load };
      return stats;
    },

    invalidateTenant(tenantId) {
      encryptCache.invalidateTenant(tenantId);
      decryptCache.invalidateTenant(tenantId);
      shared?.revokeTenant(tenantId);
    },

    invalidateKey(provider, keyId) {
      encryptCache.invalidateKey(provider, keyId);
      decryptCache.invalidateKey(provider, keyId);
      shared?.revokeKey(provider, keyId);
    },

    async close() {
      if (closed) return;
      closed = true;
      encryptCache.clear();
      decryptCache.clear();
      await shared?.close(); // its writes under way finish first: they may still need a provider
      await Promise.allSettled([...providers.values()].map((p) => p.close()));
    },
  };
  return client;
}

/**
 * An injective string for (tenant id, context as given): every part length-prefixed, pairs in the
 * caller's order (so two orders of one context are two keys: a cache miss, never a wrong hit).
 * Undefined for input that cannot be valid (a non-string tenant id or value, an array context).
 */
function inputKeyOf(tenantId: string, context: EncryptionContext | undefined): string | undefined {
  if (typeof tenantId !== "string") return undefined;
  let key = `${tenantId.length}:${tenantId}`;
  if (context === undefined || context === null) return key;
  if (typeof context !== "object" || Array.isArray(context)) return undefined;
  for (const name of Object.keys(context)) {
    const value: unknown = context[name];
    if (typeof value !== "string") return undefined;
    key += `${name.length}:${name}${value.length}:${value}`;
  }
  return key;
}

/** A decrypt-cache value: how to open envelopes of one key section, and whose key it is. */
interface DecryptEntry {
  readonly template: DecryptTemplate;
  readonly providerId: string;
  readonly keyId: string;
}

type LocatedEnvelope = ReturnType<typeof locateKeySection>;

/** The canonical (tenant id, context) bytes bound into envelopes; throws INPUT_INVALID for bad input. */
function canonicalContext(tenantId: string, context: EncryptionContext | undefined): Buffer {
  const bytes = encodeTenantContext(tenantId, context);
  checkReservedKeys(context);
  return bytes;
}

/** A copy of a context object, each value read once (anything else is returned as is, for validation to refuse). */
function snapshotOf(context: EncryptionContext | undefined): EncryptionContext | undefined {
  return typeof context === "object" && context !== null && !Array.isArray(context) ? { ...context } : context;
}

function toBytes(plaintext: Uint8Array | string): Buffer {
  if (typeof plaintext === "string") return Buffer.from(plaintext, "utf8");
  if (plaintext instanceof Uint8Array) return Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
  throw new KmsError("INPUT_INVALID", "the plaintext must be bytes (Uint8Array) or a string");
}

function checkReservedKeys(context: EncryptionContext | undefined): void {
  if (context === undefined || context === null) return;
  // Own keys only, as everywhere else: inherited ones are neither bound nor sent to the KMS.
  for (const key of Object.keys(context)) {
    if (key.startsWith(RESERVED_CONTEXT_PREFIX)) {
      throw new KmsError("INPUT_INVALID", `encryption context keys starting with "${RESERVED_CONTEXT_PREFIX}" are reserved`);
    }
  }
}

/** What the KMS sees as encryption context: the caller's pairs plus the tenant id (built on a miss only). */
function kmsContextFor(tenantId: string, context: EncryptionContext | undefined): EncryptionContext {
  return { ...context, [TENANT_CONTEXT_KEY]: tenantId };
}

/** Whether `bytes` is a well-formed key section of `ref`'s key. */
function keySectionOf(bytes: Buffer, ref: KeyRef): boolean {
  const ks = parseKeySection(bytes);
  return ks !== undefined && ks.providerId === ref.provider && ks.keyId === ref.keyId;
}

function checkKey(provider: string, key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== DATA_KEY_BYTES) {
    throw new KmsError("KMS_PROVIDER_ERROR", `provider "${provider}" returned a data key that is not ${DATA_KEY_BYTES} bytes`, { provider });
  }
}

function toKmsError(error: unknown): KmsError {
  return isKmsError(error) ? error : new KmsError("KMS_PROVIDER_ERROR", "unexpected failure", { cause: error });
}
