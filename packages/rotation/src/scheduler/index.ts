export { DEFAULT_CRYPTOPERIOD_MS, createRotationScheduler, kmsEventOf } from "./scheduler";
export type {
  KeyAgeSummary,
  PassSummary,
  RotationEvent,
  RotationScheduler,
  RotationSchedulerOptions,
  RotationStatus,
  TenantKey,
  TenantKeySource,
} from "./types";
