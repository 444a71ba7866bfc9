import { hostname } from "node:os";
import {
  type Clock,
  type ConfigIssue,
  type KeyDescription,
  KmsConfigError,
  type KmsEvent,
  type KmsProvider,
  configIssue,
  systemClock,
} from "@kms/core";
import { embeddedLocks } from "../locks/embedded";
import type { EvidenceLog, LockLease, LockProvider } from "../types";
import { DEFAULT_LOCK_TTL_MS, ROTATION_TYPES, codeOf, keyName, keyOf, openStarts, recoverLeased, rotateLeased, tenantProblem } from "./rotate-key";
import type {
  KeyAgeSummary,
  PassSummary,
  RotationEvent,
  RotationScheduler,
  RotationSchedulerOptions,
  RotationStatus,
  TenantKey,
  TenantKeySource,
} from "./types";

const DAY_MS = 86_400_000;
export const DEFAULT_CRYPTOPERIOD_MS = 90 * DAY_MS;
const DEFAULTS = { concurrency: 8, intervalMs: 3_600_000, lockTtlMs: DEFAULT_LOCK_TTL_MS, backoffBaseMs: 60_000, backoffMaxMs: 6 * 3_600_000 };

/** What this instance last learned about a tenant's key. */
interface Known {
  readonly tenant: TenantKey;
  readonly cryptoperiodMs: number;
  readonly key: KeyDescription;
}

/** Consecutive failures of one key, and when it may be tried again. */
interface Backoff {
  readonly failures: number;
  readonly retryAt: number;
  readonly code: string;
  readonly at: number;
}

type Outcome = "current" | "rotated" | "skipped" | "failed" | "deferred";

export function createRotationScheduler(options: RotationSchedulerOptions): RotationScheduler {
  return new Scheduler(options);
}

/** When the key's current version began; undefined when the provider reports neither date. */
function versionStart(key: KeyDescription): number | undefined {
  return (key.rotatedAt ?? key.createdAt)?.getTime();
}

class Scheduler implements RotationScheduler {
  readonly #providers: ReadonlyMap<string, KmsProvider>;
  readonly #tenants: TenantKeySource;
  readonly #evidence: EvidenceLog;
  readonly #locks: LockProvider;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #cryptoperiodMs: number;
  readonly #concurrency: number;
  readonly #intervalMs: number;
  readonly #lockTtlMs: number;
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;
  readonly #actor: string;
  readonly #onEvent: ((event: RotationEvent) => void) | undefined;
  readonly #known = new Map<string, Known>();
  readonly #backoff = new Map<string, Backoff>();
  /** Set when the evidence may hold a rotation without its outcome (start-up, a failed append). */
  #needsRecovery = true;
  #pass: Promise<PassSummary> | undefined;
  #running = false;
  #cancelTimer: (() => void) | undefined;

  constructor(options: RotationSchedulerOptions) {
    const issues = checkOptions(options);
    if (issues.length > 0) throw new KmsConfigError(issues);
    this.#providers = new Map(Object.entries(options.providers));
    this.#tenants = options.tenants;
    this.#evidence = options.evidence;
    this.#locks = options.locks ?? embeddedLocks({ clock: options.clock });
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#cryptoperiodMs = options.cryptoperiodMs ?? DEFAULT_CRYPTOPERIOD_MS;
    this.#concurrency = options.concurrency ?? DEFAULTS.concurrency;
    this.#intervalMs = options.intervalMs ?? DEFAULTS.intervalMs;
    this.#lockTtlMs = options.lockTtlMs ?? DEFAULTS.lockTtlMs;
    this.#backoffBaseMs = options.backoff?.baseMs ?? DEFAULTS.backoffBaseMs;
    this.#backoffMaxMs = options.backoff?.maxMs ?? DEFAULTS.backoffMaxMs;
    this.#actor = options.actor ?? `scheduler@${hostname()}`;
    this.#onEvent = options.onEvent;
  }

  // --- passes ---------------------------------------------------------------------------------

  runOnce(): Promise<PassSummary> {
    // One pass at a time per instance: a second caller shares the running one.
    this.#pass ??= this.#runPass().finally(() => (this.#pass = undefined));
    return this.#pass;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#tick();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    await this.#pass?.catch(() => undefined);
  }

  async #tick(): Promise<void> {
    try {
      await this.runOnce();
    } catch (error) {
      this.#emit({ type: "pass.failed", code: codeOf(error) });
    }
    if (!this.#running) return;
    // Sooner than the interval when a key's backoff ends first.
    const now = this.#clock.now();
    const retries = [...this.#backoff.values()].map((b) => b.retryAt - now);
    const delay = Math.max(0, Math.min(this.#intervalMs, ...retries));
    this.#cancelTimer = this.#clock.setTimer(delay, () => void this.#tick());
  }

  async #runPass(): Promise<PassSummary> {
    const recovered = this.#needsRecovery ? await this.#recover() : 0;
    const counts = { examined: 0, due: 0, rotated: 0, skipped: 0, failed: 0, deferred: 0 };
    const source = this.#tenantIterator();
    const worker = async () => {
      for (;;) {
        const next = await source.next();
        if (next.done) return;
        counts.examined++;
        const { outcome, wasDue } = await this.#visit(next.value);
        if (wasDue) counts.due++;
        if (outcome !== "current") counts[outcome]++;
      }
    };
    await Promise.all(Array.from({ length: this.#concurrency }, worker));
    const summary: PassSummary = { ...counts, recovered };
    this.#emit({ type: "pass.completed", summary });
    return summary;
  }

  /** One iterator over any source; async generators queue concurrent `next()` calls, so workers share it. */
  #tenantIterator(): AsyncIterator<TenantKey> {
    const tenants = this.#tenants;
    return (async function* () {
      yield* typeof tenants === "function" ? tenants() : tenants;
    })();
  }

  // --- one key --------------------------------------------------------------------------------

  async #visit(tenant: TenantKey): Promise<{ outcome: Outcome; wasDue: boolean }> {
    const startedAt = this.#clock.now();
    const bad = tenantProblem(tenant, this.#providers);
    if (bad) return { outcome: this.#failed(tenant, bad, startedAt), wasDue: false };
    const name = keyName(tenant.provider, tenant.keyId);
    const backoff = this.#backoff.get(name);
    if (backoff && startedAt < backoff.retryAt) return { outcome: "deferred", wasDue: false };
    const provider = this.#providers.get(tenant.provider)!;
    let key: KeyDescription;
    try {
      key = await provider.describeKey(tenant.keyId);
    } catch (error) {
      return { outcome: this.#failed(tenant, codeOf(error), startedAt), wasDue: false };
    }
    if (!this.#remember(tenant, key).due) return { outcome: "current", wasDue: false };
    let lease: LockLease | undefined;
    try {
      lease = await this.#locks.tryAcquire(name, this.#lockTtlMs);
    } catch (error) {
      return { outcome: this.#failed(tenant, codeOf(error), startedAt), wasDue: true }; // the lock store is down
    }
    if (!lease) return { outcome: "skipped", wasDue: true };
    try {
      return { outcome: await this.#rotateUnderLease(tenant, provider, lease, startedAt), wasDue: true };
    } finally {
      await lease.release().catch(() => undefined);
    }
  }

  /** Holding the key's lease: the shared step, re-checking that the key is still due. */
  async #rotateUnderLease(tenant: TenantKey, provider: KmsProvider, lease: LockLease, startedAt: number): Promise<Outcome> {
    const outcome = await rotateLeased({
      tenant,
      provider,
      lease,
      evidence: this.#evidence,
      actor: this.#actor,
      clock: this.#clock,
      // Another instance may have rotated it between our first look and our lease.
      proceed: (before) => this.#remember(tenant, before).due,
    });
    // A missing outcome record: the next pass recovers it from the `rotation-started` record.
    if (outcome.unrecorded) this.#needsRecovery = true;
    if (outcome.status === "skipped") return "skipped";
    if (outcome.status === "failed") return this.#failed(tenant, codeOf(outcome.error), startedAt);
    this.#remember(tenant, outcome.key);
    this.#backoff.delete(keyName(tenant.provider, tenant.keyId));
    if (outcome.unrecorded) return this.#failed(tenant, "KMS_PROVIDER_ERROR", startedAt);
    this.#emit({ type: "rotation.succeeded", ...keyOf(tenant), previousVersion: outcome.previousVersion, currentVersion: outcome.currentVersion, recovered: false, durationMs: this.#clock.now() - startedAt });
    return "rotated";
  }

  #failed(tenant: TenantKey, code: string, startedAt: number): "failed" {
    const name = keyName(String(tenant.provider), String(tenant.keyId));
    const failures = (this.#backoff.get(name)?.failures ?? 0) + 1;
    const now = this.#clock.now();
    const ceiling = Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** Math.min(failures - 1, 52));
    const retryAt = now + Math.floor(this.#random() * ceiling); // full jitter
    this.#backoff.set(name, { failures, retryAt, code, at: now });
    this.#emit({ type: "rotation.failed", ...keyOf(tenant), code, attempt: failures, retryAt: new Date(retryAt), durationMs: now - startedAt });
    return "failed";
  }

  #remember(tenant: TenantKey, key: KeyDescription): { due: boolean } {
    const cryptoperiodMs = tenant.cryptoperiodMs ?? this.#cryptoperiodMs;
    this.#known.set(tenant.tenantId, { tenant, cryptoperiodMs, key });
    const start = versionStart(key);
    return { due: start !== undefined && this.#clock.now() - start >= cryptoperiodMs };
  }

  // --- recovery -------------------------------------------------------------------------------

  /**
   * Resolves every `rotation-started` record without an outcome, not only each key's latest: a
   * start left open may be followed by another holder's rotation of the key (an on-demand one
   * before `rotateKeyNow` recovered first, or another instance's), and `openStarts` pairs each
   * outcome with its own start. Returns how many were resolved; any it could not resolve now (lease
   * held elsewhere, provider failing) are tried again at the next pass. The pass's own rotations do
   * not read the log first (`rotateKeyNow` does): this scan, at start-up and after a lost record,
   * finds whatever another instance left open, and resolves it correctly however late.
   */
  async #recover(): Promise<number> {
    const open = await openStarts(this.#evidence.records({ types: ROTATION_TYPES }));
    let resolved = 0;
    let unresolved = 0;
    for (const starts of open.values()) {
      const { provider, keyId } = starts[0]!.started; // both set: openStarts skips records without them
      const result = await this.#recoverKey(provider!, keyId!).catch(() => undefined);
      resolved += result?.resolved ?? 0;
      unresolved += result?.unresolved ?? 1;
    }
    this.#needsRecovery = unresolved > 0;
    return resolved;
  }

  /** Undefined: not now (no such provider, or its holder is still at it and will record the outcome). */
  async #recoverKey(providerId: string, keyId: string): Promise<{ resolved: number; unresolved: number } | undefined> {
    const provider = this.#providers.get(providerId);
    if (!provider) return undefined;
    const lease = await this.#locks.tryAcquire(keyName(providerId, keyId), this.#lockTtlMs);
    if (!lease) return undefined;
    try {
      // Read again under the lease: the holder may have recorded the outcome since the scan.
      return await recoverLeased({ providerId, provider, keyId, evidence: this.#evidence, actor: this.#actor, emit: (event) => this.#emit(event) });
    } finally {
      await lease.release().catch(() => undefined);
    }
  }

  // --- status ---------------------------------------------------------------------------------

  async status(tenantId: string): Promise<RotationStatus | undefined> {
    let known = this.#known.get(tenantId);
    if (!known) {
      const tenant = await this.#findTenant(tenantId);
      const provider = tenant && !tenantProblem(tenant, this.#providers) ? this.#providers.get(tenant.provider) : undefined;
      if (!tenant || !provider) return undefined;
      this.#remember(tenant, await provider.describeKey(tenant.keyId));
      known = this.#known.get(tenantId)!;
    }
    return this.#statusOf(known);
  }

  async #findTenant(tenantId: string): Promise<TenantKey | undefined> {
    const source = this.#tenantIterator();
    for (let next = await source.next(); !next.done; next = await source.next()) {
      if (next.value?.tenantId === tenantId) {
        await source.return?.();
        return next.value;
      }
    }
    return undefined;
  }

  #statusOf({ tenant, cryptoperiodMs, key }: Known): RotationStatus {
    const now = this.#clock.now();
    const start = versionStart(key);
    const failure = this.#backoff.get(keyName(tenant.provider, tenant.keyId));
    return {
      tenantId: tenant.tenantId,
      provider: tenant.provider,
      keyId: tenant.keyId,
      currentVersion: key.currentVersion,
      lastRotatedAt: start === undefined ? undefined : new Date(start),
      nextDueAt: start === undefined ? undefined : new Date(start + cryptoperiodMs),
      ageMs: start === undefined ? undefined : now - start,
      cryptoperiodMs,
      ...(failure ? { lastError: { code: failure.code, at: new Date(failure.at) } } : {}),
      overdue: start !== undefined && now - start >= cryptoperiodMs,
    };
  }

  keyAges(): KeyAgeSummary {
    let oldestMs = 0;
    let overdue = 0;
    for (const known of this.#known.values()) {
      const status = this.#statusOf(known);
      oldestMs = Math.max(oldestMs, status.ageMs ?? 0);
      if (status.overdue) overdue++;
    }
    return { oldestKeyAgeSeconds: Math.floor(oldestMs / 1000), overdue };
  }

  #emit(event: RotationEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener must not break rotation.
    }
  }
}

function checkOptions(options: RotationSchedulerOptions): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const positive = (path: string, value: unknown, max = Number.MAX_SAFE_INTEGER) => {
    if (value !== undefined && !(Number.isInteger(value) && (value as number) >= 1 && (value as number) <= max)) {
      issues.push(configIssue(path, "KMS_CONFIG_INVALID", `must be an integer from 1 to ${max}`));
    }
  };
  const providers = options?.providers;
  if (typeof providers !== "object" || providers === null || Object.keys(providers).length === 0) {
    issues.push(configIssue("providers", "KMS_CONFIG_INVALID", "must map at least one provider id to a provider instance"));
  } else {
    for (const [id, provider] of Object.entries(providers)) {
      if (typeof provider?.describeKey !== "function" || typeof provider.rotateKey !== "function") {
        issues.push(configIssue(`providers.${id}`, "KMS_CONFIG_INVALID", "must be a provider instance (describeKey and rotateKey)"));
      }
    }
  }
  if (options?.tenants === undefined || options.tenants === null) issues.push(configIssue("tenants", "KMS_CONFIG_INVALID", "is required"));
  if (typeof options?.evidence?.append !== "function" || typeof options.evidence.records !== "function") {
    issues.push(configIssue("evidence", "KMS_CONFIG_INVALID", "must be an EvidenceLog"));
  }
  positive("cryptoperiodMs", options?.cryptoperiodMs);
  positive("concurrency", options?.concurrency, 1000);
  positive("intervalMs", options?.intervalMs);
  positive("lockTtlMs", options?.lockTtlMs);
  positive("backoff.baseMs", options?.backoff?.baseMs);
  positive("backoff.maxMs", options?.backoff?.maxMs);
  return issues;
}

/**
 * The `kms.operation` event `@kms/metrics` counts as a rotation run (`rotation_runs_total`), for an
 * app that forwards scheduler events to its metrics: undefined for events that are not a rotation.
 */
export function kmsEventOf(event: RotationEvent): KmsEvent | undefined {
  if (event.type === "rotation.succeeded") {
    return { type: "kms.operation", provider: event.provider, operation: "rotateKey", outcome: "success", attempts: 1, durationMs: event.durationMs };
  }
  if (event.type === "rotation.failed") {
    return { type: "kms.operation", provider: event.provider, operation: "rotateKey", outcome: "error", code: event.code, attempts: 1, durationMs: event.durationMs };
  }
  return undefined;
}
