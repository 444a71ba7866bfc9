/**
 * A key-age source for `registerKmsMetrics({ rotation })` read from the client itself: each
 * configured tenant key's current version and when it was created (`kms.describeKeys()`), against a
 * cryptoperiod. Describing keys calls the KMS (AWS bills `DescribeKey`), so results are kept for
 * `refreshMs` and concurrent scrapes share one refresh. A key whose description fails, or has no
 * date, counts in neither gauge (its failure shows in `kms_provider_requests_total`).
 */
import type { KmsClient } from "@kms/core";
import type { KeyAgeSummary, RotationStatusSource } from "./metrics";

const DAY_MS = 86_400_000;

export interface KeyAgeOptions {
  /** How old a key version may get before it is overdue; default 90 days (NIST SP 800-57 practice, SOC2). */
  cryptoperiodMs?: number;
  /** How long one description of the keys is reused; default 5 minutes. */
  refreshMs?: number;
  /** Milliseconds since the epoch; default `Date.now`. */
  now?: () => number;
}

export function keyAgesFrom(kms: Pick<KmsClient, "describeKeys">, options: KeyAgeOptions = {}): RotationStatusSource {
  const cryptoperiodMs = options.cryptoperiodMs ?? 90 * DAY_MS;
  const refreshMs = options.refreshMs ?? 5 * 60_000;
  const now = options.now ?? Date.now;
  for (const [name, value] of [["cryptoperiodMs", cryptoperiodMs], ["refreshMs", refreshMs]] as const) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`${name} must be a finite number >= 0`);
  }
  let last: { at: number; summary: KeyAgeSummary } | undefined;
  let refreshing: Promise<KeyAgeSummary> | undefined;

  const refresh = async (): Promise<KeyAgeSummary> => {
    const at = now();
    const ages = (await kms.describeKeys()).flatMap((report) => {
      const since = report.description?.rotatedAt ?? report.description?.createdAt;
      return since instanceof Date && !Number.isNaN(since.getTime()) ? [Math.max(0, at - since.getTime())] : [];
    });
    const summary = { oldestKeyAgeSeconds: ages.length === 0 ? 0 : Math.max(...ages) / 1000, overdue: ages.filter((age) => age > cryptoperiodMs).length };
    last = { at, summary };
    return summary;
  };

  return {
    keyAges() {
      if (last !== undefined && now() - last.at < refreshMs) return last.summary;
      refreshing ??= refresh().finally(() => (refreshing = undefined));
      return refreshing;
    },
  };
}
