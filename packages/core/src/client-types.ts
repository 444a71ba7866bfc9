import type { KmsError } from "./errors";
import type { CircuitState, KmsEventListener } from "./events";
import type { EncryptionContext, PermissionCheck } from "./provider";

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
  healthy: boolean;
  insecure: boolean;
  circuit: CircuitState;
  detail?: string;
}

export interface KmsHealth {
  /** Every provider healthy and no circuit open. */
  ready: boolean;
  providers: Record<string, ProviderHealthReport>;
}

export interface PermissionReport {
  ok: boolean;
  keys: { provider: string; keyId: string; checks: PermissionCheck[] }[];
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
  /** Checks every configured key's permissions, one permission at a time. */
  validatePermissions(): Promise<PermissionReport>;
  /** Subscribes to cache and KMS events; returns the unsubscribe function. */
  onEvent(listener: KmsEventListener): () => void;
  cacheStats(): CacheStats;
  /** Drops (and zeroes) every cached data key of a tenant. */
  invalidateTenant(tenantId: string): void;
  /** Zeroes cached keys and closes providers; later calls fail with `KMS_CLOSED`. */
  close(): Promise<void>;
}
