/**
 * `@kms/testkit/emulators`: local wire emulators of the KMS services, for testing adapters through
 * their official SDKs and for testing a service offline. No jest dependency: usable from any runner.
 */
export {
  EmulatedKey,
  Emulator,
  EmulatorReply,
  type AuthResult,
  type EmulatorOptions,
  type EmulatorRequest,
  type EmulatorResponse,
  type EmulatorTransport,
  type Fault,
  type FaultKind,
  type InjectOptions,
  type InjectedFault,
  type KeyVersion,
  type LoggedRequest,
  type RoutedRequest,
  type TlsMaterial,
  type TransportExchange,
} from "./framework";
export * from "./aws";
export * from "./vault";
export * from "./gcp";
export * from "./azure";
export * from "./azure-identity";
