import type { KmsError } from "./errors";
import type { SharedTierHealth } from "./shared-cache";
import type { CircuitState, KmsEventListener } from "./events";
import type { EncryptionContext, KeyDescription, PermissionCheck } from "./provider";

/** One item's outcome in a batch: batches never throw for a single item. */
export type BatchResult<T> = { ok: true; value: T } | { ok: false; error: KmsError };

export interface EncryptItem {
  tenantId: string;
  plaintext: Uint8Array | string;
  context?: EncryptionContext;
}

export interface DecryptItem {
  tenantId: string;
  envelope: Uint8Array;
  context?: EncryptionContext;
}

export interface ProviderHealthReport {
  /** The provider answered its health check and the configured keys are usable. */
  healthy: boolean;
  /**
   * `up`: healthy, circuit not open. `degraded`: not, but cached data keys from it still serve.
   * `down`: not, and nothing from it is cached: its tenants cannot be served.
   */
  status: "up" | "degraded" | "down";
  /** A provider not fit for production (`local`). */
  insecure: boolean;
  circuit: CircuitState;
  /** How long the health check took, in milliseconds. */
  latencyMs: number;
  /** Data keys from this provider held by the caches (both sides). */
  cachedKeys: number;
  /** The code of the most recent failed operation on this provider, and when (ms since epoch). */
  lastError?: { code: string; at: number };
  /** The provider's short, secret-free explanation (may name key ids: keep it off public answers). */
  detail?: string;
}

export interface KmsHealth {
  /** No provider is `down`: every tenant can be served, from the KMS or from the cache. */
  ready: boolean;
  providers: Record<string, ProviderHealthReport>;
  cache: CacheStats;
  /**
   * The shared tier, when configured: `degraded` while it is skipped after a failed or late store
   * operation (the in-process tier and the KMS serve; `ready` does not depend on it).
   */
  sharedCache?: SharedTierHealth;
}

export interface PermissionReport {
  ok: boolean;
  keys: { provider: string; keyId: string; checks: PermissionCheck[] }[];
}

/** A permission check as a caller (an HTTP answer, a CLI's output) may see it. */
export interface PublicPermissionCheck {
  permission: string;
  ok: boolean;
  remediation?: string;
  docsUrl?: string;
  /** The failure's code and its fixed public text (`PUBLIC_MESSAGES`); never the provider's message. */
  error?: { code: string; message: string };
}

export interface PublicPermissionReport {
  ok: boolean;
  keys: { provider: string; keyId: string; checks: PublicPermissionCheck[] }[];
}

/** A provider's resilience state right now (for gauges and health). */
export interface ProviderStats {
  circuit: CircuitState;
  /** Calls holding a bulkhead slot. */
  inFlight: number;
  /** Calls waiting for a bulkhead slot. */
  queued: number;
}

/** A configured key as its provider describes it, or why it could not. */
export interface KeyReport {
  provider: string;
  keyId: string;
  description?: KeyDescription;
  error?: KmsError;
}

export interface CacheStats {
  encrypt: { entries: number; hits: number; misses: number };
  decrypt: { entries: number; hits: number; misses: number };
}

export interface KmsClient {
  /** Encrypts under the tenant's current key; returns envelope bytes (docs/ENVELOPE.md). */
  encrypt(tenantId: string, plaintext: Uint8Array | string, context?: EncryptionContext): Promise<Buffer>;
  /** Decrypts an envelope written for this tenant and context. */
  decrypt(tenantId: string, envelope: Uint8Array, context?: EncryptionContext): Promise<Buffer>;
  /** `encrypt`, with the envelope as unpadded base64url text. */
  encryptToBase64Url(tenantId: string, plaintext: Uint8Array | string, context?: EncryptionContext): Promise<string>;
  /** `decrypt` of a base64url envelope. */
  decryptFromBase64Url(tenantId: string, envelope: string, context?: EncryptionContext): Promise<Buffer>;
  /** Per-item results, in order; items that share a data key share one KMS call. */
  encryptMany(items: readonly EncryptItem[]): Promise<BatchResult<Buffer>[]>;
  /** Per-item results, in order; one unwrap per distinct wrapped data key. */
  decryptMany(items: readonly DecryptItem[]): Promise<BatchResult<Buffer>[]>;
  /** Re-wraps the envelope's data key under the tenant's current key; the payload is unchanged. */
  rewrap(tenantId: string, envelope: Uint8Array, context?: EncryptionContext): Promise<Buffer>;
  checkHealth(): Promise<KmsHealth>;
  /**
   * Describes every key configured as a tenant's current key (`tenants.defaultKey` and
   * `tenants.keys`; not `previous` keys, nor keys only an app resolver knows): one `describeKey` call
   * each, through the resilience policy. For key-age checks (`@kms/metrics`' rotation gauges).
   */
  describeKeys(): Promise<KeyReport[]>;
  /** Checks every configured key's permissions, one permission at a time. */
  validatePermissions(): Promise<PermissionReport>;
  /** Subscribes to cache and KMS events; returns the unsubscribe function. */
  onEvent(listener: KmsEventListener): () => void;
  cacheStats(): CacheStats;
  /** Each configured provider's circuit state and bulkhead load, by provider id. */
  providerStats(): Record<string, ProviderStats>;
  /** Drops (and zeroes) every cached data key of a tenant. */
  invalidateTenant(tenantId: string): void;
  /**
   * Drops (and zeroes) every cached data key wrapped under a key, whichever tenants use it, and
   * keeps loads in flight from installing theirs: for a key just disabled (crypto-shredding), so that
   * no cached copy outlives it.
   */
  invalidateKey(provider: string, keyId: string): void;
  /** Zeroes cached keys and closes providers; later calls fail with `KMS_CLOSED`. */
  close(): Promise<void>;
}
