/**
 * Rotating one key, in one place: the step the scheduler runs under a key's lease once it finds the
 * key due (`rotateLeased`), and `rotateKeyNow`, which takes the same lease and runs the same step
 * whatever the key's age. Both write the same evidence records, so crash recovery, `verifyEvidence`
 * and an auditor treat a scheduled and an on-demand rotation alike. Crash recovery of one key
 * (`recoverLeased`) is here too: the scheduler runs it for every key its scan finds open, and
 * `rotateKeyNow` for its key before rotating it.
 */
import { type Clock, type KeyDescription, KmsError, type KmsErrorCode, type KmsProvider, isKmsError, systemClock } from "@kms/core";
import type { EvidenceEvent, EvidenceEventType, EvidenceLog, EvidenceRecord, LockLease, LockProvider } from "../types";
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

// --- crash recovery ---------------------------------------------------------------------------

export const ROTATION_TYPES: readonly EvidenceEventType[] = ["key.rotation-started", "key.rotated", "key.rotation-failed"];

/** A `key.rotation-started` record without an outcome. */
export interface OpenStart {
  readonly started: EvidenceRecord;
  /** The `previousVersion` of the key's next start, if any: its version once this one was over. */
  versionAfter?: string;
}

/**
 * The open starts among rotation records (in seq order), by key name, oldest first. Within a key an
 * outcome closes the latest open start: every rotation of a key runs under its lease, so its outcome
 * follows its own start, and a start left open (a crash, a lost record) is followed by the next
 * holder's start and outcome, which pair with each other. So every open start is found, not only
 * the key's latest one.
 */
export async function openStarts(records: AsyncIterable<EvidenceRecord>): Promise<Map<string, OpenStart[]>> {
  const open = new Map<string, OpenStart[]>();
  for await (const record of records) {
    if (record.provider === undefined || record.keyId === undefined) continue;
    const name = keyName(record.provider, record.keyId);
    const stack = open.get(name);
    if (record.type === "key.rotation-started") {
      const latest = stack?.at(-1);
      if (latest) latest.versionAfter ??= record.previousVersion;
      if (stack) stack.push({ started: record });
      else open.set(name, [{ started: record }]);
    } else {
      stack?.pop();
      if (stack?.length === 0) open.delete(name);
    }
  }
  return open;
}

export interface LeasedRecovery {
  /** The provider's id, as in the records. */
  readonly providerId: string;
  readonly provider: KmsProvider;
  readonly keyId: string;
  readonly evidence: EvidenceLog;
  readonly actor: string;
  /** `rotation.succeeded` with `recovered: true` for each start found done. */
  readonly emit: (event: RotationEvent) => void;
}

/**
 * Holding the key's lease: gives every open start of the key its outcome, the latest first (so
 * each outcome closes the latest open start, as `openStarts` pairs them). Whether a start's rotation
 * happened is read from the key's version after it: what the key's next start found, or for its
 * last start the provider's current version. Unchanged, it did not (`key.rotation-failed`,
 * `details.interrupted`); changed, it did (`key.rotated`). `unresolved`: starts without a
 * `previousVersion` (not this package's), left open. Throws what the log or the provider threw.
 */
export async function recoverLeased(step: LeasedRecovery): Promise<{ resolved: number; unresolved: number }> {
  const { providerId, provider, keyId, evidence, actor } = step;
  const open = (await openStarts(evidence.records({ provider: providerId, keyId, types: ROTATION_TYPES }))).get(keyName(providerId, keyId)) ?? [];
  let current: string | undefined;
  let resolved = 0;
  for (const { started, versionAfter } of open.reverse()) {
    const { tenantId, previousVersion } = started;
    if (previousVersion === undefined) continue;
    const after = versionAfter ?? (current ??= (await provider.describeKey(keyId)).currentVersion);
    const base = { tenantId, provider: providerId, keyId, actor, previousVersion };
    if (after === previousVersion) {
      // Not rotated: close the record so every start has one outcome.
      await evidence.append({ ...base, type: "key.rotation-failed", outcome: "failure", details: { recovered: true, interrupted: true } });
    } else {
      await evidence.append({ ...base, type: "key.rotated", outcome: "success", keyVersion: after, details: { recovered: true } });
      step.emit({ type: "rotation.succeeded", tenantId: tenantId ?? "", provider: providerId, keyId, previousVersion, currentVersion: after, recovered: true, durationMs: 0 });
    }
    resolved++;
  }
  return { resolved, unresolved: open.length - resolved };
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
 * scheduler's step under the key's lease, its records marked `details.onDemand`, after the
 * scheduler's crash recovery of that key (`recoverLeased`: any open start gets its outcome, a
 * recovered rotation is emitted as `rotation.succeeded` with `recovered: true`). Resolves `busy`
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
  const provider = providers.get(tenant.provider)!;
  try {
    // Decision: both. Here, under the lease and before its own start, any start of this key left
    // open (a process killed mid-rotation, a lost outcome record) gets its outcome from the
    // scheduler's own recovery (`recoverLeased`, not a copy), while the provider's current version
    // still answers for it; and the scheduler's scan resolves every open start, not only a key's
    // latest, for logs already in that state and for a scheduler instance that rotated over
    // another's crash (its passes do not read the log before each rotation: a read per key per pass
    // is a scan of the whole table on PostgreSQL). A start without `previousVersion` (not ours) is
    // left to the scheduler; a log or provider failure here fails the call before anything rotates.
    try {
      await recoverLeased({ providerId: tenant.provider, provider, keyId: tenant.keyId, evidence, actor, emit });
    } catch (error) {
      return fail(error);
    }
    const outcome = await rotateLeased({ tenant, provider, lease, evidence, actor, clock, details: { onDemand: true } });
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
