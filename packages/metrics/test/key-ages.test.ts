import { describe, expect, it } from "@jest/globals";
import { type KeyReport, KmsError } from "@kms/core";
import { Registry } from "prom-client";
import { keyAgesFrom, registerKmsMetrics } from "../src";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 29);

/** A client whose keys are described from a list the test changes, counting calls. */
function keysSource(reports: KeyReport[]) {
  const source = {
    reports,
    calls: 0,
    async describeKeys(): Promise<KeyReport[]> {
      source.calls++;
      return source.reports;
    },
  };
  return source;
}

const key = (keyId: string, ageDays: number | undefined, field: "rotatedAt" | "createdAt" = "rotatedAt"): KeyReport => ({
  provider: "aws-kms",
  keyId,
  description: { keyId, enabled: true, currentVersion: "1", ...(ageDays === undefined ? {} : { [field]: new Date(NOW - ageDays * DAY) }) },
});

describe("keyAgesFrom", () => {
  it("reports the oldest current version's age and the keys past the cryptoperiod; undated or failing keys count in neither", async () => {
    const source = keysSource([
      key("a", 10),
      key("b", 91),
      key("c", 120, "createdAt"), // never rotated: its creation date is its version's
      key("d", undefined),
      { provider: "aws-kms", keyId: "e", error: new KmsError("KMS_ACCESS_DENIED", "denied") },
    ]);
    const ages = keyAgesFrom(source, { now: () => NOW });
    expect(await ages.keyAges()).toEqual({ oldestKeyAgeSeconds: 120 * 86_400, overdue: 2 });
  });

  it("describes the keys at most once per refreshMs, and concurrent reads share one refresh", async () => {
    let now = NOW;
    const source = keysSource([key("a", 100)]);
    const ages = keyAgesFrom(source, { now: () => now, refreshMs: 60_000, cryptoperiodMs: 30 * DAY });
    const [first, second] = await Promise.all([ages.keyAges(), ages.keyAges()]);
    expect(first).toEqual({ oldestKeyAgeSeconds: 100 * 86_400, overdue: 1 });
    expect(second).toEqual(first);
    expect(source.calls).toBe(1);
    now += 59_999;
    source.reports = [key("a", 1)];
    expect(await ages.keyAges()).toEqual(first);
    expect(source.calls).toBe(1);
    now += 1;
    expect(await ages.keyAges()).toEqual({ oldestKeyAgeSeconds: 86_400 + 60, overdue: 0 });
    expect(source.calls).toBe(2);
  });

  it("refuses a bad cryptoperiod or refresh interval", () => {
    expect(() => keyAgesFrom(keysSource([]), { cryptoperiodMs: -1 })).toThrow(RangeError);
    expect(() => keyAgesFrom(keysSource([]), { refreshMs: Number.NaN })).toThrow(RangeError);
  });

  it("feeds the key-age gauges", async () => {
    const source = keysSource([key("a", 95)]);
    const registry = new Registry();
    const kms = {
      ...source,
      onEvent: () => () => {},
      cacheStats: () => ({ encrypt: { entries: 0, hits: 0, misses: 0 }, decrypt: { entries: 0, hits: 0, misses: 0 } }),
      providerStats: () => ({}),
    };
    registerKmsMetrics(kms, { registry, rotation: keyAgesFrom(source, { now: () => NOW }) });
    const text = await registry.metrics();
    expect(text).toContain("\nkms_keys_rotation_overdue 1\n");
    expect(text).toContain(`\nkms_key_oldest_age_seconds ${95 * 86_400}\n`);
    expect(source.calls).toBe(1); // both gauges, one description
  });
});
