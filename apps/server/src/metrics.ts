/**
 * The server's Prometheus metrics: a prom-client `Registry` of its own (not prom-client's global
 * one, so two servers in one process, or a host application's own metrics, never collide) with
 * `@kms/metrics`' series for this client, including the key-age gauges read from the client's own
 * key descriptions (`keyAgesFrom`: at most one `describeKeys()` per 5 minutes, however often
 * Prometheus scrapes). Served by `GET /metrics` (admin credential; see app.ts).
 */
import type { KmsClient } from "@kms/core";
import { keyAgesFrom, registerKmsMetrics, type KmsMetrics } from "@kms/metrics";
import { Registry } from "prom-client";

export interface ServerMetrics {
  readonly registry: Registry;
  readonly metrics: KmsMetrics;
}

/** `sharedCache`: the configuration has a shared cache tier (`cache.shared`), so `kms_shared_cache_up` starts at 1. */
export function createMetrics(kms: KmsClient, options: { sharedCache?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  const metrics = registerKmsMetrics(kms, { registry, rotation: keyAgesFrom(kms), sharedCache: options.sharedCache === true });
  return { registry, metrics };
}
