/**
 * Prometheus metrics for a `@kms/core` client, fed by its events (`onEvent`) and, for gauges, read
 * from the client at scrape time. Names follow Prometheus conventions (`_total` counters, base units);
 * the runbooks' alert rules read them (every metric is listed in README.md).
 *
 * Cardinality is bounded: labels are the cache side and tier, the provider id, the operation, the
 * outcome and the error code, all from closed sets; the tenant id is a label only when asked for, for
 * at most `tenantLabel.maxTenants` tenants (the rest share `tenant="other"`). Events carry no key
 * material, plaintext or context values, so no metric can.
 *
 * The hot path (a cache hit) costs a few plain additions: cache requests and lookup times are counted
 * in memory and handed to the registry when it is scraped (prom-client's own `inc`/`observe` cost
 * ~0.5 µs each, as much as the rest of a hit). Everything else is counted as it happens.
 */
import type { CacheSide, CircuitState, KmsClient, KmsEvent, ProviderStats } from "@kms/core";
import { Counter, Gauge, Histogram, type Metric, type Registry, register as defaultRegistry } from "prom-client";

/** Seconds; from 10 µs (an in-process hit) to 50 ms (a hit that should page). */
export const CACHE_LOOKUP_BUCKETS: readonly number[] = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];

/** Seconds; sub-millisecond (an in-region KMS over a warm connection) through 10 s (timeouts). */
export const PROVIDER_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** `kms_circuit_breaker_state`: 0 closed, 1 half-open, 2 open (alerts test `== 2`). */
export const CIRCUIT_STATE_VALUES: Readonly<Record<CircuitState, number>> = { closed: 0, "half-open": 1, open: 2 };

/** What a rotation component reports for the key-age gauges (`@kms/rotation` provides one). */
export interface RotationStatusSource {
  /** Read at scrape time. */
  keyAges(): KeyAgeSummary | Promise<KeyAgeSummary>;
}

export interface KeyAgeSummary {
  /** Age of the oldest key version in use, in seconds. */
  oldestKeyAgeSeconds: number;
  /** Tenant keys older than their cryptoperiod. */
  overdue: number;
}

export interface KmsMetricsOptions {
  /** Where to register; default prom-client's global `register`. */
  registry?: Registry;
  /** Prefix of every metric name; default `kms_`. */
  prefix?: string;
  /**
   * Opt-in: label cache requests with the tenant id, for the first `maxTenants` tenants seen (the
   * rest are `other`). Tenant ids then appear in your metrics backend: only for ids that are not
   * sensitive.
   */
  tenantLabel?: { maxTenants: number };
  /** Registers the key-age gauges, read from this source at each scrape. */
  rotation?: RotationStatusSource;
  /**
   * The client has a shared cache tier (`cache.shared`): `kms_shared_cache_up` is 1 from now on,
   * until the tier reports itself degraded. Without it the gauge has no sample until the tier's first
   * event (a lookup or a state change), so a client without a shared tier never shows one.
   */
  sharedCache?: boolean;
}

export interface KmsMetrics {
  readonly registry: Registry;
  /**
   * Counts an event from another source than the client: e.g. `@kms/rotation`'s scheduler, which
   * rotates through its own (key-administration) providers — `onEvent: (e) => { const op =
   * kmsEventOf(e); if (op) metrics.observe(op); }`.
   */
  observe(event: KmsEvent): void;
  /** Stops listening and removes every metric this registered. */
  unregister(): void;
}

type MetricsSource = Pick<KmsClient, "onEvent" | "cacheStats" | "providerStats">;

const SIDES: readonly CacheSide[] = ["encrypt", "decrypt"];
const OTHER_TENANT = "other";

/** Subscribes to `kms` and registers its metrics; call `unregister()` before closing it for good. */
export function registerKmsMetrics(kms: MetricsSource, options: KmsMetricsOptions = {}): KmsMetrics {
  const registry = options.registry ?? defaultRegistry;
  const prefix = options.prefix ?? "kms_";
  const maxTenants = options.tenantLabel?.maxTenants;
  if (maxTenants !== undefined && !(Number.isInteger(maxTenants) && maxTenants >= 1)) {
    throw new RangeError("tenantLabel.maxTenants must be an integer >= 1");
  }
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new RangeError("prefix must be a valid Prometheus metric name prefix");
  const registers = [registry];
  const name = (suffix: string) => `${prefix}${suffix}`;
  /** The registry's metrics before this call: the others are this call's, for `unregister()`. */
  const before = new Set(registry.getMetricsAsArray().map((m) => m.name));

  /** Cache requests by label set (`cache`, `result`[, `tenant`]), counted in memory. */
  const requestCounts = new Map<string, { labels: Record<string, string>; n: number }>();
  new Counter({
    name: name("cache_requests_total"),
    help: "Data-key cache lookups, by cache (encrypt/decrypt) and result (hit, stale: served past max age while the KMS is down, miss).",
    labelNames: maxTenants === undefined ? ["cache", "result"] : ["cache", "result", "tenant"],
    registers,
    collect() {
      this.reset();
      for (const { labels, n } of requestCounts.values()) this.inc(labels, n);
    },
  });
  const lookupTimes = new BucketHistogram(name("cache_lookup_duration_seconds"), "Time to answer a fresh data-key cache hit.", "cache", CACHE_LOOKUP_BUCKETS);
  registry.registerMetric(lookupTimes as unknown as Metric);
  new Gauge({
    name: name("cache_entries"),
    help: "Data keys held by the cache.",
    labelNames: ["cache"],
    registers,
    collect() {
      const stats = kms.cacheStats();
      for (const side of SIDES) this.set({ cache: side }, stats[side].entries);
    },
  });
  const cacheEvictions = new Counter({
    name: name("cache_evictions_total"),
    help: "Data keys dropped from the cache, by reason.",
    labelNames: ["cache", "reason"],
    registers,
  });
  const cacheIntegrityFailures = new Counter({
    name: name("cache_integrity_failures_total"),
    help: "Cache entries or unwrapped keys that failed authentication (discarded, never used), by tier (local: in-process; shared: Redis).",
    labelNames: ["cache", "tier"],
    registers,
  });
  const sharedRequests = new Counter({
    name: name("shared_cache_requests_total"),
    help: "Lookups in the shared (Redis) cache tier after an in-process miss, by outcome (hit, miss, integrity-failure: a tampered entry, deleted and never used).",
    labelNames: ["cache", "outcome"],
    registers,
  });
  /**
   * The shared tier's state as its last event said: 1 up, 0 degraded (skipped: the in-process tier
   * and the KMS serve); undefined while there is no sign of a tier, and then no sample. Event-driven
   * rather than read from `checkHealth()` at scrape time: that call checks every provider.
   */
  let sharedUp: number | undefined = options.sharedCache === true ? 1 : undefined;
  new Gauge({
    name: name("shared_cache_up"),
    help: "Shared (Redis) cache tier: 1 up, 0 degraded (skipped after a failed or late Redis operation; requests are still served).",
    registers,
    collect() {
      if (sharedUp === undefined) this.remove();
      else this.set(sharedUp);
    },
  });
  const providerRequests = new Counter({
    name: name("provider_requests_total"),
    help: "KMS provider operations as callers saw them (after retries), by outcome and error code.",
    labelNames: ["provider", "operation", "outcome", "error_code"],
    registers,
  });
  const providerDuration = new Histogram({
    name: name("provider_request_duration_seconds"),
    help: "KMS provider operation time, retries and backoff included.",
    labelNames: ["provider", "operation"],
    buckets: [...PROVIDER_DURATION_BUCKETS],
    registers,
  });
  const retries = new Counter({
    name: name("provider_retries_total"),
    help: "Retried attempts of KMS provider operations.",
    labelNames: ["provider", "operation"],
    registers,
  });
  const apiCalls = new Counter({
    name: name("api_calls_total"),
    help: "Attempts that reached the KMS provider (billable API calls; see docs/COST.md).",
    labelNames: ["provider", "operation"],
    registers,
  });
  /** A per-provider gauge read from `providerStats()` at scrape time. */
  const providerGauge = (suffix: string, help: string, value: (stats: ProviderStats) => number) =>
    new Gauge({
      name: name(suffix),
      help,
      labelNames: ["provider"],
      registers,
      collect() {
        for (const [provider, stats] of Object.entries(kms.providerStats())) this.set({ provider }, value(stats));
      },
    });
  providerGauge("circuit_breaker_state", "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.", (s) => CIRCUIT_STATE_VALUES[s.circuit]);
  providerGauge("bulkhead_in_flight", "KMS calls holding a bulkhead slot.", (s) => s.inFlight);
  providerGauge("bulkhead_queue_depth", "KMS calls waiting for a bulkhead slot.", (s) => s.queued);
  const bulkheadRejections = new Counter({
    name: name("bulkhead_rejections_total"),
    help: "KMS calls refused at once because the bulkhead and its queue were full (KMS_OVERLOADED).",
    labelNames: ["provider"],
    registers,
  });
  const rotationRuns = new Counter({
    name: name("rotation_runs_total"),
    help: "Key rotations attempted, by outcome.",
    labelNames: ["provider", "outcome"],
    registers,
  });
  const rotation = options.rotation;
  if (rotation !== undefined) {
    // Each gauge reads the source at scrape time (two reads per scrape: the source should be cheap).
    const summary = async () => rotation.keyAges();
    new Gauge({
      name: name("key_oldest_age_seconds"),
      help: "Age of the oldest tenant key version in use.",
      registers,
      async collect() {
        this.set((await summary()).oldestKeyAgeSeconds);
      },
    });
    new Gauge({
      name: name("keys_rotation_overdue"),
      help: "Tenant keys older than their cryptoperiod.",
      registers,
      async collect() {
        this.set((await summary()).overdue);
      },
    });
  }

  const tenants = new Set<string>();
  const tenantOf = (tenantId: string): string => {
    if (tenants.has(tenantId)) return tenantId;
    if (tenants.size < maxTenants!) {
      tenants.add(tenantId);
      return tenantId;
    }
    return OTHER_TENANT;
  };
  const countCache = (cache: CacheSide, result: "hit" | "stale" | "miss", tenantId: string) => {
    const tenant = maxTenants === undefined ? undefined : tenantOf(tenantId);
    const key = tenant === undefined ? `${cache}/${result}` : `${cache}/${result}/${tenant}`;
    const count = requestCounts.get(key);
    if (count !== undefined) count.n++;
    else requestCounts.set(key, { labels: tenant === undefined ? { cache, result } : { cache, result, tenant }, n: 1 });
  };

  const onEvent = (event: KmsEvent): void => {
    switch (event.type) {
      case "cache.hit":
        countCache(event.side, event.stale ? "stale" : "hit", event.tenantId);
        if (event.lookupMs !== undefined) lookupTimes.observe(event.side, event.lookupMs / 1000);
        return;
      case "cache.miss":
        countCache(event.side, "miss", event.tenantId);
        return;
      case "cache.evict":
        cacheEvictions.inc({ cache: event.side, reason: event.reason });
        return;
      case "cache.integrity-failure":
        cacheIntegrityFailures.inc({ cache: event.side, tier: event.tier ?? "local" });
        return;
      case "cache.shared.lookup":
        sharedRequests.inc({ cache: event.side, outcome: event.outcome });
        // A lookup follows a Redis answer: the tier is up, unless a state event has said otherwise.
        sharedUp ??= 1;
        return;
      case "cache.shared.state":
        sharedUp = event.to === "up" ? 1 : 0;
        return;
      case "kms.call":
        // Attempt 0 is a bulkhead refusal and KMS_CIRCUIT_OPEN a fail-fast: neither reached the KMS.
        if (event.attempt === 0 || event.code === "KMS_CIRCUIT_OPEN") return;
        apiCalls.inc({ provider: event.provider, operation: event.operation });
        if (event.attempt > 1) retries.inc({ provider: event.provider, operation: event.operation });
        return;
      case "kms.operation": {
        const { provider, operation } = event;
        if (event.code === undefined) providerRequests.inc({ provider, operation, outcome: event.outcome });
        else providerRequests.inc({ provider, operation, outcome: event.outcome, error_code: event.code });
        providerDuration.observe({ provider, operation }, event.durationMs / 1000);
        if (event.code === "KMS_OVERLOADED") bulkheadRejections.inc({ provider });
        if (operation === "rotateKey") rotationRuns.inc({ provider, outcome: event.outcome === "success" ? "success" : "failure" });
        return;
      }
      default:
        return; // circuit.state and key.rotated: the gauges read the client's state at scrape time
    }
  };

  const created = registry.getMetricsAsArray().filter((m) => !before.has(m.name)).map((m) => m.name);
  const unsubscribe = kms.onEvent(onEvent);
  return {
    registry,
    observe: onEvent,
    unregister() {
      unsubscribe();
      for (const metric of created) registry.removeSingleMetric(metric);
    },
  };
}

/**
 * A histogram with one label, kept in plain arrays (an observation is a bucket search and two
 * additions) and exposed to a prom-client registry in its metric shape (`get`, `reset`). Series
 * appear once observed, as with prom-client's own.
 */
class BucketHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #series = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName: string,
    readonly bounds: readonly number[],
  ) {}

  observe(labelValue: string, value: number): void {
    let series = this.#series.get(labelValue);
    if (series === undefined) {
      series = { buckets: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
      this.#series.set(labelValue, series);
    }
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    series.buckets[i]!++;
    series.sum += value;
    series.count++;
  }

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [labelValue, series] of this.#series) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += series.buckets[i]!;
        values.push({ labels: { le: i < this.bounds.length ? this.bounds[i]! : "+Inf", [this.labelName]: labelValue }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { [this.labelName]: labelValue }, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.labelName]: labelValue }, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#series.clear();
  }
}
