export { DEFAULT_CRYPTOPERIOD_MS, createRotationScheduler, kmsEventOf } from "./scheduler";
export { rotateKeyNow, type RotateKeyNowOptions, type RotateKeyNowResult } from "./rotate-key";
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
