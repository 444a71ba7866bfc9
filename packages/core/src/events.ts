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
  | { type: "cache.hit"; side: CacheSide; tenantId: string; provider: string; stale: boolean }
  | { type: "cache.miss"; side: CacheSide; tenantId: string; provider: string; coalesced: boolean }
  | { type: "cache.evict"; side: CacheSide; provider: string; reason: EvictionReason }
  | { type: "cache.integrity-failure"; side: CacheSide; provider: string }
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
