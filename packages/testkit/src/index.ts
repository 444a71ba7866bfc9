/**
 * @kms/testkit: what provider authors need to prove a provider meets the `KmsProvider` contract.
 * (Wire emulators with fault injection for the cloud providers will join this package.)
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
