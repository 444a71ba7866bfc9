/**
 * @kms/metrics: Prometheus metrics (and, with `setupTracing`, OpenTelemetry traces) for @kms/core.
 * See README.md for every metric and the alert rules in runbooks/ that read them.
 */
export {
  CACHE_LOOKUP_BUCKETS,
  CIRCUIT_STATE_VALUES,
  PROVIDER_DURATION_BUCKETS,
  registerKmsMetrics,
  type KeyAgeSummary,
  type KmsMetrics,
  type KmsMetricsOptions,
  type RotationStatusSource,
} from "./metrics";
export { setupTracing, type Tracing, type TracingOptions } from "./tracing";
export { keyAgesFrom, type KeyAgeOptions } from "./key-ages";
