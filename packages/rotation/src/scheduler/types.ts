import type { Clock, KmsProvider } from "@kms/core";
import type { EvidenceLog, LockProvider } from "../types";

/** One tenant's key, as the app lists it. Several tenants may share a key: it is rotated once. */
export interface TenantKey {
  readonly tenantId: string;
  /** The id of a provider in `providers`. */
  readonly provider: string;
  readonly keyId: string;
  /** Overrides the scheduler's cryptoperiod for this tenant. */
  readonly cryptoperiodMs?: number;
}

/** An array, an (async) iterable, or a function returning one: read afresh on every pass. */
export type TenantKeySource =
  | Iterable<TenantKey>
  | AsyncIterable<TenantKey>
  | (() => Iterable<TenantKey> | AsyncIterable<TenantKey>);

export interface RotationSchedulerOptions {
  /**
   * Provider instances by id, built with key-administration credentials: rotation rights are
   * deliberately not in the runtime role that encrypts.
   */
  readonly providers: Readonly<Record<string, KmsProvider>>;
  readonly tenants: TenantKeySource;
  /** Where rotations are recorded, and read back to recover after a crash. */
  readonly evidence: EvidenceLog;
  /** Default `embeddedLocks()`: enough for one instance; several need PostgreSQL or Redis. */
  readonly locks?: LockProvider;
  readonly clock?: Clock;
  /** Uniform in [0, 1): the backoff's jitter. Default `Math.random`. */
  readonly random?: () => number;
  /** Default 90 days (NIST SP 800-57's usual cryptoperiod for a key-wrapping key). */
  readonly cryptoperiodMs?: number;
  /** Keys checked or rotated at once. Default 8. */
  readonly concurrency?: number;
  /** Between passes under `start()`. Default 1 hour. */
  readonly intervalMs?: number;
  /** Lease on one key while it is checked, rotated and recorded. Default 5 minutes. */
  readonly lockTtlMs?: number;
  /** Retry delay after the n-th failure: uniform in [0, min(maxMs, baseMs·2^(n−1))). Default 1 min, 6 h. */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /** Written into evidence records. Default `scheduler@<hostname>`. */
  readonly actor?: string;
  /** Called synchronously for each event; a throwing listener is ignored. */
  readonly onEvent?: (event: RotationEvent) => void;
}

interface KeyEventBase {
  readonly tenantId: string;
  readonly provider: string;
  readonly keyId: string;
}

export type RotationEvent =
  | (KeyEventBase & {
      readonly type: "rotation.succeeded";
      readonly previousVersion: string;
      readonly currentVersion: string;
      /** Found done after a crash (the `rotateKey` call was made by an earlier process). */
      readonly recovered: boolean;
      readonly durationMs: number;
    })
  | (KeyEventBase & {
      readonly type: "rotation.failed";
      /** The KmsError code (`INPUT_INVALID` for a bad tenant entry). */
      readonly code: string;
      /** Consecutive failures of this key. */
      readonly attempt: number;
      /** Not tried again before this time. */
      readonly retryAt: Date;
      readonly durationMs: number;
    })
  | { readonly type: "pass.completed"; readonly summary: PassSummary }
  | { readonly type: "pass.failed"; readonly code: string };

/** What one pass did. `due` = `rotated` + `skipped` + the due keys among `failed`. */
export interface PassSummary {
  /** Tenant keys read from the source. */
  readonly examined: number;
  /** Found due (age ≥ cryptoperiod). */
  readonly due: number;
  readonly rotated: number;
  /** Due, but another holder had the lock or had rotated it by the time this one had the lock. */
  readonly skipped: number;
  /** Could not be checked or rotated: retried after a backoff. */
  readonly failed: number;
  /** Not checked: still backing off after a failure. */
  readonly deferred: number;
  /** Interrupted rotations resolved from the evidence log before the pass. */
  readonly recovered: number;
}

export interface RotationStatus {
  readonly tenantId: string;
  readonly provider: string;
  readonly keyId: string;
  readonly currentVersion: string;
  /** When the current version was created (or the key, if never rotated); undefined if the provider does not say. */
  readonly lastRotatedAt: Date | undefined;
  readonly nextDueAt: Date | undefined;
  readonly ageMs: number | undefined;
  readonly cryptoperiodMs: number;
  readonly lastError?: { readonly code: string; readonly at: Date };
  /** Older than its cryptoperiod and not rotated yet. */
  readonly overdue: boolean;
}

/** The shape `@kms/metrics` reads for its key-age gauges (`RotationStatusSource`). */
export interface KeyAgeSummary {
  readonly oldestKeyAgeSeconds: number;
  readonly overdue: number;
}

export interface RotationScheduler {
  /** One pass: recovers interrupted rotations (first pass, or after a lost record), then rotates the due keys. */
  runOnce(): Promise<PassSummary>;
  /** Runs a pass now and then every `intervalMs` (sooner when a retry is due). */
  start(): void;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
  /** As of this instance's last check of the tenant's key; undefined for an unknown tenant. */
  status(tenantId: string): Promise<RotationStatus | undefined>;
  /** For `registerKmsMetrics(kms, { rotation: scheduler })`. */
  keyAges(): KeyAgeSummary;
}
