/**
 * @kms/testkit: what provider authors need to prove a provider meets the `KmsProvider` contract.
 * Local wire emulators (also at `@kms/testkit/emulators`, without the jest dependency) let adapters be
 * tested through their official SDKs.
 */
export {
  describeProviderConformance,
  type ConformanceFactory,
  type ConformanceOptions,
  type ConformanceSubject,
  type ConformanceSummary,
  type FaultHook,
  type RestoreFault,
} from "./conformance";
export { kmsErrorOf } from "./kms-error-of";
export * from "./emulators";
