/**
 * Typed events for cache and KMS activity. Subscribers (e.g. @kms/metrics) get them synchronously;
 * a throwing subscriber is isolated. No event carries key material, plaintext or context values.
 */

export type KmsOperation =
  | "generateDataKey"
  | "wrapDataKey"
  | "unwrapDataKey"
  | "describeKey"
  | "rotateKey"
  | "checkHealth"
  | "validatePermissions";

export type CacheSide = "encrypt" | "decrypt";

export type EvictionReason = "max-age" | "max-messages" | "max-bytes" | "capacity" | "invalidated" | "hard-max-age";

export type CircuitState = "closed" | "open" | "half-open";

export type KmsEvent =
  | {
      type: "cache.hit";
      side: CacheSide;
      tenantId: string;
      provider: string;
      /** Served past its max age because the KMS is unavailable (stale-if-error). */
      stale: boolean;
      /** How long the in-process lookup took, in milliseconds (wall clock); absent for stale hits. */
      lookupMs?: number;
    }
  | { type: "cache.miss"; side: CacheSide; tenantId: string; provider: string; coalesced: boolean }
  | { type: "cache.evict"; side: CacheSide; provider: string; reason: EvictionReason }
  /**
   * A data key that failed authentication, never used: an unwrapped key not matching its envelope
   * (tier `local`), or a shared-tier entry that did not open or check (tier `shared`; deleted).
   */
  | { type: "cache.integrity-failure"; side: CacheSide; provider: string; tier?: "local" | "shared" }
  /** One lookup in the shared tier (`cache.shared`): found and authentic, absent, or failed authentication. */
  | { type: "cache.shared.lookup"; side: CacheSide; outcome: "hit" | "miss" | "integrity-failure" }
  /** The shared tier became degraded (a store operation failed or was late) or up again. */
  | { type: "cache.shared.state"; from: "up" | "degraded"; to: "up" | "degraded" }
  /** One attempt at a provider call (a retried operation emits one per attempt). */
  | {
      type: "kms.call";
      provider: string;
      operation: KmsOperation;
      outcome: "success" | "error";
      /** The error code on failure. */
      code?: string;
      attempt: number;
      durationMs: number;
    }
  /** One provider operation as its caller saw it: after retries, with the final outcome. */
  | {
      type: "kms.operation";
      provider: string;
      operation: KmsOperation;
      outcome: "success" | "error";
      /** The error code on failure. */
      code?: string;
      /** Attempts made (0 when the bulkhead refused it before any). */
      attempts: number;
      /** From the call until its outcome, retries and backoff included. */
      durationMs: number;
    }
  | { type: "circuit.state"; provider: string; from: CircuitState; to: CircuitState }
  | { type: "key.rotated"; provider: string; keyId: string; previousVersion: string; currentVersion: string };

export type KmsEventListener = (event: KmsEvent) => void;

/** A minimal, allocation-free-when-idle event hub. */
export class KmsEvents {
  #listeners: KmsEventListener[] = [];
  /** Called when a listener throws; defaults to ignoring (listeners must not break crypto). */
  #onListenerError: (error: unknown) => void;

  constructor(onListenerError: (error: unknown) => void = () => {}) {
    this.#onListenerError = onListenerError;
  }

  get active(): boolean {
    return this.#listeners.length > 0;
  }

  on(listener: KmsEventListener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  emit(event: KmsEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
  }
}
