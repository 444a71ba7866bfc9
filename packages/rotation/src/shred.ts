/**
 * Crypto-shredding: a tenant's data is destroyed by taking its key out of use, not by finding and
 * erasing every copy of every envelope. One call disables the key (or schedules its destruction)
 * through the provider, purges every cached data key of that key from the client at once (so no
 * cached copy keeps decrypting), and records the fact in the evidence log.
 *
 * Order: provider first, then cache, then evidence. A provider refusal changes nothing and records
 * a `failure` (when an evidence log is given) before the error is rethrown. The cache is purged only
 * once the key is disabled: purged earlier, a request in between would load and cache a key again.
 */
import { type KeyDisableMode, type KmsClient, type KmsProvider, KmsError, isKmsError } from "@kms/core";
import type { EvidenceLog, EvidenceRecord } from "./types";

export interface ShredOptions {
  /** The provider that holds the key (the same instance or configuration the client uses). */
  readonly provider: KmsProvider;
  /** The client whose cached data keys of this key are purged; pass every client of the process. */
  readonly kms?: Pick<KmsClient, "invalidateKey"> | readonly Pick<KmsClient, "invalidateKey">[];
  /** Receives `key.disabled` or `key.destruction-scheduled` (or the failure). */
  readonly evidence?: EvidenceLog;
  /** The tenant whose key this is (recorded; the key is not checked against it). */
  readonly tenantId: string;
  readonly keyId: string;
  /** `disable` (reversible) or `schedule-destruction` (the provider's waiting period, then gone). */
  readonly mode: KeyDisableMode;
  /** Who asked: `admin:<name>`, `ticket:<id>`… */
  readonly actor: string;
  readonly signal?: AbortSignal;
}

export interface ShredResult {
  readonly mode: KeyDisableMode;
  /** The provider's request id, when it gives one. */
  readonly requestId?: string;
  /** The evidence record, when an evidence log was given. */
  readonly record?: EvidenceRecord;
}

const MODES: readonly KeyDisableMode[] = ["disable", "schedule-destruction"];

export async function shredTenantKey(options: ShredOptions): Promise<ShredResult> {
  const { provider, tenantId, keyId, mode, actor, evidence } = options;
  if (typeof provider !== "object" || provider === null || typeof provider.id !== "string") {
    throw new KmsError("INPUT_INVALID", "shredTenantKey needs the provider that holds the key");
  }
  for (const [name, value] of [["tenantId", tenantId], ["keyId", keyId], ["actor", actor]] as const) {
    if (typeof value !== "string" || value.length === 0) throw new KmsError("INPUT_INVALID", `shredTenantKey: ${name} must be a non-empty string`);
  }
  if (!MODES.includes(mode)) throw new KmsError("INPUT_INVALID", `shredTenantKey: mode must be "disable" or "schedule-destruction"`);
  const supported = provider.capabilities.keyDisabling ?? [];
  if (typeof provider.disableKey !== "function" || !supported.includes(mode)) {
    const can = supported.length === 0 ? "cannot disable keys" : `can only ${supported.join(" or ")}`;
    throw new KmsError("KMS_PROVIDER_ERROR", `provider "${provider.id}" ${can}: ${mode} the key with the provider's own tools`, {
      provider: provider.id,
      retryable: false,
    });
  }

  const type = mode === "disable" ? "key.disabled" : "key.destruction-scheduled";
  const event = { type, tenantId, provider: provider.id, keyId, actor } as const;
  let requestId: string | undefined;
  try {
    ({ requestId } = await provider.disableKey(keyId, { mode, signal: options.signal }));
  } catch (error) {
    const code = isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR";
    const failedRequest = isKmsError(error) ? error.requestId : undefined;
    await evidence?.append({ ...event, outcome: "failure", errorCode: code, ...(failedRequest === undefined ? {} : { requestId: failedRequest }) });
    throw error;
  }
  const clients = options.kms === undefined ? [] : Array.isArray(options.kms) ? options.kms : [options.kms];
  for (const kms of clients as Pick<KmsClient, "invalidateKey">[]) kms.invalidateKey(provider.id, keyId);
  const record = await evidence?.append({ ...event, outcome: "success", ...(requestId === undefined ? {} : { requestId }) });
  return { mode, ...(requestId === undefined ? {} : { requestId }), ...(record === undefined ? {} : { record }) };
}
