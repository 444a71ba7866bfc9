/**
 * Key rotation in the server: the @kms/rotation scheduler over the configured tenant keys, rotation
 * status per tenant, and on-demand rotation of one tenant's key (`rotateKeyNow`), every step recorded
 * in the evidence log. On-demand rotation takes the same lease as the scheduler (`<provider>:<keyId>`,
 * from `locks`: the in-process lock by default, Redis or PostgreSQL when every instance shares one,
 * see KMS_ROTATION_LOCKS_URL), so the two never rotate one key at once, in one process or across several.
 */
import type { KmsClient, KmsEvent, KmsProvider } from "@kms/core";
import {
  createRotationScheduler,
  embeddedLocks,
  kmsEventOf,
  rotateKeyNow,
  type EvidenceLog,
  type LockProvider,
  type RotationEvent,
  type RotationScheduler,
  type TenantKey,
} from "@kms/rotation";
import { HttpError } from "./errors";

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
  /** Every tenant key it looks after (the admin API's tenant listing reads them). */
  readonly tenants: readonly TenantKey[];
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
  const locks = options.locks ?? embeddedLocks();
  /** The last failure per key (`provider:keyId`), from the scheduler's events and on-demand runs. */
  const lastErrors = new Map<string, { code: string; at: Date }>();
  const name = (provider: string, keyId: string) => `${provider}:${keyId}`;
  const schedulerOptions = { providers, tenants, evidence, locks, cryptoperiodMs };
  /** Scheduled and on-demand rotations alike: metrics, last errors, and no cached data key of a rotated key. */
  const onEvent = (event: RotationEvent) => {
    const operation = kmsEventOf(event);
    if (operation !== undefined) options.observe?.(operation);
    if (event.type === "rotation.failed") lastErrors.set(name(event.provider, event.keyId), { code: event.code, at: new Date() });
    if (event.type === "rotation.succeeded") {
      lastErrors.delete(name(event.provider, event.keyId));
      // New encrypts must not keep using a data key wrapped under the previous version.
      kms.invalidateKey(event.provider, event.keyId);
    }
  };
  const scheduler: RotationScheduler | undefined =
    options.intervalMs === undefined ? undefined : createRotationScheduler({ ...schedulerOptions, intervalMs: options.intervalMs, onEvent });
  /** Tenant id → its key, built once: the console asks for many tenants' statuses per page. */
  const byTenant = new Map(tenants.map((t) => [t.tenantId, t]));
  const find = (tenantId: string) => byTenant.get(tenantId);

  return {
    tenants,

    async status(tenantId) {
      const tenant = find(tenantId);
      if (tenant === undefined) return undefined;
      // A scheduler's status is as of its own last look; a throw-away one describes the key now
      // (an on-demand rotation is seen at once). It is given only this tenant: its status() would
      // otherwise walk the whole tenant list again to find the one already found here.
      const status = await createRotationScheduler({ ...schedulerOptions, tenants: [tenant] }).status(tenantId);
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
      const result = await rotateKeyNow({ providers, tenant, evidence, locks, actor, onEvent });
      if (result.status === "busy") throw new HttpError(409, "ROTATION_IN_PROGRESS", "The tenant's key is being rotated; retry later");
      const { previousVersion, currentVersion } = result;
      return { tenantId, provider: tenant.provider, keyId: tenant.keyId, previousVersion, currentVersion };
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
  const keys = tenants.keys ?? {};
  const result: TenantKey[] = Object.entries(keys).map(([tenantId, key]) => ({ tenantId, provider: key.provider, keyId: key.keyId }));
  const defaultKey = tenants.defaultKey;
  if (defaultKey !== undefined) {
    for (const tenantId of credentialTenants) {
      if (!Object.hasOwn(keys, tenantId)) result.push({ tenantId, provider: defaultKey.provider, keyId: defaultKey.keyId });
    }
  }
  return result;
}
