/**
 * Key rotation in the server: the @kms/rotation scheduler over the configured tenant keys, rotation
 * status per tenant, and on-demand rotation of one tenant's key, every step recorded in the evidence
 * log. On-demand rotation takes the same lease as the scheduler (`<provider>:<keyId>`, the shared
 * embedded lock), so the two never rotate one key at once.
 */
import { isKmsError, type KmsClient, type KmsEvent, type KmsProvider } from "@kms/core";
import {
  createRotationScheduler,
  embeddedLocks,
  kmsEventOf,
  type EvidenceLog,
  type LockProvider,
  type RotationScheduler,
  type TenantKey,
} from "@kms/rotation";
import { HttpError } from "./errors";

/** The lease on a key while it is rotated on demand (the scheduler's default). */
const LOCK_TTL_MS = 300_000;

/** What `GET /admin/tenants/:tenantId/rotation` answers: dates as ISO 8601 strings. */
export interface PublicRotationStatus {
  tenantId: string;
  provider: string;
  keyId: string;
  currentVersion: string;
  lastRotatedAt: string | null;
  nextDueAt: string | null;
  ageMs: number | null;
  cryptoperiodMs: number;
  overdue: boolean;
  lastError: { code: string; at: string } | null;
}

export interface RotationResultBody {
  tenantId: string;
  provider: string;
  keyId: string;
  previousVersion: string;
  currentVersion: string;
}

export interface RotationService {
  /** Fresh from the provider; `undefined` for a tenant with no configured key. */
  status(tenantId: string): Promise<PublicRotationStatus | undefined>;
  /** Rotates the tenant's key now; `undefined` for a tenant with no configured key. */
  rotate(tenantId: string, actor: string): Promise<RotationResultBody | undefined>;
  /** Starts the periodic scheduler (only when an interval is configured). */
  start(): void;
  stop(): Promise<void>;
}

export interface RotationServiceOptions {
  /** Provider instances for rotation (`describeKey`, `rotateKey`), by id. */
  providers: Readonly<Record<string, KmsProvider>>;
  tenants: readonly TenantKey[];
  evidence: EvidenceLog;
  /** The runtime client: its cached data keys of a rotated key are dropped. */
  kms: KmsClient;
  cryptoperiodMs: number;
  intervalMs: number | undefined;
  locks?: LockProvider;
  /**
   * Gets a `kms.operation` event (`rotateKey`) per rotation, scheduled or on demand: rotation runs
   * on its own providers, not the runtime client, so `@kms/metrics` hears of it only through this.
   */
  observe?: (event: KmsEvent) => void;
}

export function createRotationService(options: RotationServiceOptions): RotationService {
  const { providers, tenants, evidence, kms, cryptoperiodMs } = options;
  const observe = (event: Parameters<typeof kmsEventOf>[0]) => {
    const operation = kmsEventOf(event);
    if (operation !== undefined) options.observe?.(operation);
  };
  const locks = options.locks ?? embeddedLocks();
  /** The last failure per key (`provider:keyId`), from the scheduler's events and on-demand runs. */
  const lastErrors = new Map<string, { code: string; at: Date }>();
  const name = (provider: string, keyId: string) => `${provider}:${keyId}`;
  const schedulerOptions = { providers, tenants, evidence, locks, cryptoperiodMs };
  const scheduler: RotationScheduler | undefined =
    options.intervalMs === undefined
      ? undefined
      : createRotationScheduler({
          ...schedulerOptions,
          intervalMs: options.intervalMs,
          onEvent: (event) => {
            observe(event);
            if (event.type === "rotation.failed") lastErrors.set(name(event.provider, event.keyId), { code: event.code, at: new Date() });
            if (event.type === "rotation.succeeded") {
              lastErrors.delete(name(event.provider, event.keyId));
              kms.invalidateKey(event.provider, event.keyId);
            }
          },
        });
  const find = (tenantId: string) => tenants.find((t) => t.tenantId === tenantId);

  return {
    async status(tenantId) {
      if (find(tenantId) === undefined) return undefined;
      // A scheduler's status is as of its own last look; a throw-away one describes the key now
      // (an on-demand rotation is seen at once).
      const status = await createRotationScheduler(schedulerOptions).status(tenantId);
      if (status === undefined) return undefined;
      const failure = lastErrors.get(name(status.provider, status.keyId));
      return {
        tenantId: status.tenantId,
        provider: status.provider,
        keyId: status.keyId,
        currentVersion: status.currentVersion,
        lastRotatedAt: status.lastRotatedAt?.toISOString() ?? null,
        nextDueAt: status.nextDueAt?.toISOString() ?? null,
        ageMs: status.ageMs ?? null,
        cryptoperiodMs: status.cryptoperiodMs,
        overdue: status.overdue,
        lastError: failure === undefined ? null : { code: failure.code, at: failure.at.toISOString() },
      };
    },

    async rotate(tenantId, actor) {
      const tenant = find(tenantId);
      if (tenant === undefined) return undefined;
      const { provider: providerId, keyId } = tenant;
      const provider = providers[providerId]!;
      const lease = await locks.tryAcquire(name(providerId, keyId), LOCK_TTL_MS);
      if (lease === undefined) {
        throw new HttpError(409, "ROTATION_IN_PROGRESS", "The tenant's key is being rotated; retry later");
      }
      const base = { tenantId, provider: providerId, keyId, actor };
      const details = { fencingToken: lease.token, onDemand: true };
      try {
        const before = await provider.describeKey(keyId);
        // No start record, no rotation (the scheduler's crash recovery reads these).
        await evidence.append({ ...base, type: "key.rotation-started", outcome: "success", keyVersion: before.currentVersion, previousVersion: before.currentVersion, details });
        let result: { previousVersion: string; currentVersion: string; requestId?: unknown };
        const started = performance.now();
        try {
          result = await provider.rotateKey(keyId);
        } catch (error) {
          const code = isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR";
          const requestId = isKmsError(error) ? error.requestId : undefined;
          lastErrors.set(name(providerId, keyId), { code, at: new Date() });
          observe({ type: "rotation.failed", tenantId, provider: providerId, keyId, code, attempt: 1, retryAt: new Date(), durationMs: performance.now() - started });
          await evidence
            .append({ ...base, type: "key.rotation-failed", outcome: "failure", previousVersion: before.currentVersion, errorCode: code, ...(requestId ? { requestId } : {}), details })
            .catch(() => undefined);
          throw error;
        }
        observe({
          type: "rotation.succeeded",
          tenantId,
          provider: providerId,
          keyId,
          previousVersion: result.previousVersion,
          currentVersion: result.currentVersion,
          recovered: false,
          durationMs: performance.now() - started,
        });
        // New encrypts must not keep using a data key wrapped under the previous version.
        kms.invalidateKey(providerId, keyId);
        lastErrors.delete(name(providerId, keyId));
        const requestId = typeof result.requestId === "string" ? result.requestId : undefined;
        await evidence.append({
          ...base,
          type: "key.rotated",
          outcome: "success",
          previousVersion: result.previousVersion,
          keyVersion: result.currentVersion,
          ...(requestId ? { requestId } : {}),
          details,
        });
        return { tenantId, provider: providerId, keyId, previousVersion: result.previousVersion, currentVersion: result.currentVersion };
      } finally {
        await lease.release().catch(() => undefined);
      }
    },

    start() {
      scheduler?.start();
    },

    async stop() {
      await scheduler?.stop();
    },
  };
}

/**
 * The tenant keys the scheduler looks after: every `tenants.keys` entry, and every other tenant the
 * server has a static credential for (generated or configured) under `tenants.defaultKey`. With JWTs
 * the server does not know its tenants in advance: only `tenants.keys`.
 */
export function tenantKeysOf(kmsConfig: Record<string, unknown> | undefined, credentialTenants: readonly string[]): TenantKey[] {
  const tenants = (kmsConfig?.tenants ?? {}) as { defaultKey?: { provider: string; keyId: string }; keys?: Record<string, { provider: string; keyId: string }> };
  const result: TenantKey[] = [];
  for (const [tenantId, key] of Object.entries(tenants.keys ?? {})) result.push({ tenantId, provider: key.provider, keyId: key.keyId });
  const defaultKey = tenants.defaultKey;
  if (defaultKey !== undefined) {
    for (const tenantId of credentialTenants) {
      if (!result.some((t) => t.tenantId === tenantId)) result.push({ tenantId, provider: defaultKey.provider, keyId: defaultKey.keyId });
    }
  }
  return result;
}
