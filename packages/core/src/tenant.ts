/**
 * Tenant → key resolution. Tenant ids are opaque strings; a tenant encrypts under its current key
 * and may decrypt envelopes written under its previous keys (after a bring-your-own-key change).
 */
import type { KmsConfig, TenantKeyConfig } from "./config";
import { keyIdProblem } from "./envelope";
import { KmsError } from "./errors";

export interface KeyRef {
  readonly provider: string;
  readonly keyId: string;
}

export interface TenantKeySpec extends KeyRef {
  readonly previous?: readonly KeyRef[];
}

/** The app's own tenant → key lookup (e.g. from a database), used instead of `config.tenants`. */
export type TenantKeyResolver = (tenantId: string) => TenantKeySpec | Promise<TenantKeySpec>;

export interface TenantKeys {
  readonly current: KeyRef;
  /** provider id → key ids whose envelopes this tenant may decrypt (the current key included). */
  readonly decryptable: ReadonlyMap<string, ReadonlySet<string>>;
}

/**
 * The keys of one tenant from its spec (configuration, already schema-checked, or an app resolver's
 * answer, checked here): a malformed key id is `KMS_CONFIG_INVALID`, never a key to look up.
 */
export function tenantKeys(spec: TenantKeySpec): TenantKeys {
  if (typeof spec !== "object" || spec === null || (spec.previous !== undefined && !Array.isArray(spec.previous))) {
    throw new KmsError("KMS_CONFIG_INVALID", "the tenant key resolver must return { provider, keyId, previous?: [...] }");
  }
  const refs = [spec, ...(spec.previous ?? [])];
  const decryptable = new Map<string, Set<string>>();
  for (const ref of refs) {
    const problem = keyIdProblem(ref?.keyId);
    if (problem !== undefined) throw new KmsError("KMS_CONFIG_INVALID", `the tenant key resolver returned a bad key: ${problem}`);
    const ids = decryptable.get(ref.provider) ?? new Set<string>();
    ids.add(ref.keyId);
    decryptable.set(ref.provider, ids);
  }
  return { current: { provider: spec.provider, keyId: spec.keyId }, decryptable };
}

/** Resolves from configuration: `tenants.keys[tenantId]`, else `tenants.defaultKey`. */
export function configResolver(tenants: KmsConfig["tenants"]): (tenantId: string) => TenantKeys {
  const byTenant = new Map<string, TenantKeys>();
  for (const [tenantId, key] of Object.entries(tenants.keys)) byTenant.set(tenantId, tenantKeys(key as TenantKeyConfig));
  const fallback = tenants.defaultKey ? tenantKeys(tenants.defaultKey) : undefined;
  return (tenantId) => {
    const keys = byTenant.get(tenantId) ?? fallback;
    if (keys === undefined) {
      throw new KmsError("KMS_KEY_NOT_FOUND", "no key is configured for this tenant and there is no default key");
    }
    return keys;
  };
}

const UUID_DASHED = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;
const UUID_PLAIN = /^([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/i;

/**
 * Normalises a tenant id that may be a UUID (any case, in braces, with a `urn:uuid:` prefix, or as
 * 32 hex digits) to its canonical lowercase form; anything else is returned unchanged but trimmed,
 * with `isUuid: false`. UUID tenant ids are a convenience, never a requirement.
 */
export function parseTenantIdAsUuid(input: string): { tenantId: string; isUuid: boolean } {
  const trimmed = input.trim();
  let body = trimmed.toLowerCase().startsWith("urn:uuid:") ? trimmed.slice(9) : trimmed;
  if (body.startsWith("{") && body.endsWith("}")) body = body.slice(1, -1);
  const m = UUID_DASHED.exec(body) ?? UUID_PLAIN.exec(body);
  if (!m) return { tenantId: trimmed, isUuid: false };
  return { tenantId: m.slice(1, 6).join("-").toLowerCase(), isUuid: true };
}
