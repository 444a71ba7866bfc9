/**
 * Rotating one key, in one place: the step the scheduler runs under a key's lease once it finds the
 * key due (`rotateLeased`), and `rotateKeyNow`, which takes the same lease and runs the same step
 * whatever the key's age. Both write the same evidence records, so crash recovery, `verifyEvidence`
 * and an auditor treat a scheduled and an on-demand rotation alike.
 */
import { type Clock, type KeyDescription, KmsError, type KmsErrorCode, type KmsProvider, isKmsError, systemClock } from "@kms/core";
import type { EvidenceEvent, EvidenceLog, LockLease, LockProvider } from "../types";
import type { RotationEvent, TenantKey } from "./types";

/** The lease on a key while it is rotated (and, by the scheduler, checked). */
export const DEFAULT_LOCK_TTL_MS = 300_000;

/** The key's lock (and backoff) name: provider ids have no `:`, so this is unambiguous. */
export function keyName(provider: string, keyId: string): string {
  return `${provider}:${keyId}`;
}

export function codeOf(error: unknown): string {
  return isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR";
}

export function keyOf(tenant: TenantKey): { tenantId: string; provider: string; keyId: string } {
  return { tenantId: String(tenant.tenantId), provider: String(tenant.provider), keyId: String(tenant.keyId) };
}

/** The app's tenant list is input: an entry that cannot be rotated is reported, not thrown. */
export function tenantProblem(tenant: TenantKey, providers: ReadonlyMap<string, KmsProvider>): KmsErrorCode | undefined {
  if (typeof tenant !== "object" || tenant === null) return "INPUT_INVALID";
  const { tenantId, provider, keyId, cryptoperiodMs } = tenant;
  if (typeof tenantId !== "string" || tenantId.length === 0 || typeof keyId !== "string" || keyId.length === 0) return "INPUT_INVALID";
  if (cryptoperiodMs !== undefined && !(Number.isInteger(cryptoperiodMs) && cryptoperiodMs > 0)) return "INPUT_INVALID";
  if (typeof provider !== "string" || !providers.has(provider)) return "KMS_PROVIDER_UNKNOWN";
  return undefined;
}

export interface LeasedRotation {
  readonly tenant: TenantKey;
  readonly provider: KmsProvider;
  /** Held by the caller, who releases it. */
  readonly lease: LockLease;
  readonly evidence: EvidenceLog;
  readonly actor: string;
  readonly clock: Clock;
  /** Added to every record's `details` (after the fencing token). */
  readonly details?: Readonly<Record<string, boolean>>;
  /** Given the key as described under the lease; false leaves it alone (`skipped`). Default: rotate. */
  readonly proceed?: (before: KeyDescription) => boolean;
}

/** What one rotation under a lease came to. */
export type LeasedOutcome = (
  | { readonly status: "skipped" }
  | { readonly status: "failed"; readonly error: unknown }
  | {
      readonly status: "rotated";
      readonly previousVersion: string;
      readonly currentVersion: string;
      /** The key as described after the rotation. */
      readonly key: KeyDescription;
    }
) & {
  /** An outcome record could not be appended: its `key.rotation-started` waits for crash recovery. */
  readonly unrecorded?: { readonly error: unknown };
};

/**
 * Holding the key's lease: describe, check the lease, record the intent, rotate, describe again (a
 * stale holder may have rotated too), record the outcome. No start record, no rotation.
 */
export async function rotateLeased(step: LeasedRotation): Promise<LeasedOutcome> {
  const { tenant, provider, lease, evidence, clock } = step;
  const { keyId } = tenant;
  let before: KeyDescription;
  try {
    before = await provider.describeKey(keyId);
  } catch (error) {
    return { status: "failed", error };
  }
  if (step.proceed?.(before) === false || !lease.isValid()) return { status: "skipped" };
  const fencing = { fencingToken: lease.token, ...step.details };
  const base = { tenantId: tenant.tenantId, provider: tenant.provider, keyId, actor: step.actor };
  try {
    await evidence.append({ ...base, type: "key.rotation-started", outcome: "success", keyVersion: before.currentVersion, previousVersion: before.currentVersion, details: fencing });
  } catch (error) {
    return { status: "failed", error };
  }
  let result: { previousVersion: string; currentVersion: string; requestId?: unknown };
  try {
    result = await provider.rotateKey(keyId);
  } catch (error) {
    const requestId = isKmsError(error) ? error.requestId : undefined;
    const unrecorded = await record(evidence, { ...base, type: "key.rotation-failed", outcome: "failure", previousVersion: before.currentVersion, errorCode: codeOf(error), ...(requestId ? { requestId } : {}), details: fencing });
    return { status: "failed", error, ...unrecorded };
  }
  // A stale holder (an expired lease) may have rotated too: the provider's answer now is the truth.
  const after = await provider.describeKey(keyId).catch(() => ({ ...before, currentVersion: result.currentVersion, rotatedAt: new Date(clock.now()) }));
  const concurrent = after.currentVersion !== result.currentVersion;
  const requestId = typeof result.requestId === "string" ? result.requestId : undefined;
  const unrecorded = await record(evidence, {
    ...base,
    type: "key.rotated",
    outcome: "success",
    previousVersion: result.previousVersion,
    keyVersion: result.currentVersion,
    ...(requestId ? { requestId } : {}),
    details: concurrent ? { ...fencing, concurrentRotation: true } : fencing,
  });
  return { status: "rotated", previousVersion: result.previousVersion, currentVersion: result.currentVersion, key: after, ...unrecorded };
}

async function record(evidence: EvidenceLog, event: EvidenceEvent): Promise<{ unrecorded?: { error: unknown } }> {
  try {
    await evidence.append(event);
    return {};
  } catch (error) {
    return { unrecorded: { error } };
  }
}

// --- on demand --------------------------------------------------------------------------------

export interface RotateKeyNowOptions {
  /** Provider instances by id, built with key-administration credentials (as the scheduler's). */
  readonly providers: Readonly<Record<string, KmsProvider>>;
  /** The key to rotate; `cryptoperiodMs` is ignored. */
  readonly tenant: TenantKey;
  readonly evidence: EvidenceLog;
  /** The scheduler's locks, so the two never rotate one key at once. */
  readonly locks: LockProvider;
  /** Written into the evidence records: `admin:<name>`, `kms-cli`… */
  readonly actor: string;
  /** Lease on the key while it is rotated and recorded. Default 5 minutes. */
  readonly lockTtlMs?: number;
  readonly clock?: Clock;
  /** `rotation.succeeded` or `rotation.failed`, synchronously; a throwing listener is ignored. */
  readonly onEvent?: (event: RotationEvent) => void;
}

/** `busy`: another holder has the key's lease (the scheduler, or another on-demand rotation). */
export type RotateKeyNowResult =
  | { readonly status: "rotated"; readonly previousVersion: string; readonly currentVersion: string }
  | { readonly status: "busy" };

/**
 * Rotates one key now, whatever its age and whether or not its provider reports dates: the
 * scheduler's step under the key's lease, its records marked `details.onDemand`. Resolves `busy`
 * without describing, rotating or recording anything when the lease is held. A failure is emitted as
 * `rotation.failed` and rethrown (a provider error after its `key.rotation-failed` record). A
 * rotation whose `key.rotated` record could not be appended is emitted as `rotation.succeeded` (the
 * key did rotate), then the evidence log's error is thrown; the scheduler's crash recovery writes the
 * missing record.
 */
export async function rotateKeyNow(options: RotateKeyNowOptions): Promise<RotateKeyNowResult> {
  const { tenant, evidence, locks, actor, onEvent } = options;
  const clock = options.clock ?? systemClock;
  const providers = new Map(Object.entries(options.providers ?? {}));
  const problem = tenantProblem(tenant, providers);
  if (problem !== undefined) throw new KmsError(problem, problem === "INPUT_INVALID" ? "rotateKeyNow: tenant must be { tenantId, provider, keyId }" : "rotateKeyNow: tenant.provider names no provider in providers");
  const startedAt = clock.now();
  const emit = (event: RotationEvent) => {
    try {
      onEvent?.(event);
    } catch {
      // A listener must not break rotation.
    }
  };
  const fail = (error: unknown): never => {
    const now = clock.now();
    emit({ type: "rotation.failed", ...keyOf(tenant), code: codeOf(error), attempt: 1, retryAt: new Date(now), durationMs: now - startedAt });
    throw error;
  };
  let lease: LockLease | undefined;
  try {
    lease = await locks.tryAcquire(keyName(tenant.provider, tenant.keyId), options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS);
  } catch (error) {
    return fail(error); // the lock store is down: no lease, no rotation
  }
  if (lease === undefined) return { status: "busy" };
  try {
    const outcome = await rotateLeased({ tenant, provider: providers.get(tenant.provider)!, lease, evidence, actor, clock, details: { onDemand: true } });
    if (outcome.status === "skipped") return { status: "busy" }; // the lease expired before anything was recorded
    if (outcome.status === "failed") return fail(outcome.error);
    const { previousVersion, currentVersion } = outcome;
    emit({ type: "rotation.succeeded", ...keyOf(tenant), previousVersion, currentVersion, recovered: false, durationMs: clock.now() - startedAt });
    if (outcome.unrecorded) throw outcome.unrecorded.error;
    return { status: "rotated", previousVersion, currentVersion };
  } finally {
    await lease.release().catch(() => undefined);
  }
}
