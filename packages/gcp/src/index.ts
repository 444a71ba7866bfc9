/**
 * @kms/gcp: the Google Cloud KMS provider for @kms/core. Register `gcpKms` for configuration-driven
 * set-up, or build one with `gcpKmsProvider({ ... })`. See README.md for the IAM roles it needs.
 */
export { GCP_PERMISSIONS, GCP_ROTATION_PERMISSIONS, GCP_RUNTIME_PERMISSIONS, GCP_SHREDDING_PERMISSIONS } from "./errors";
export { GCP_PERMISSIONS_DOCS_URL, encodeContext, gcpKms, gcpKmsProvider, type GcpClientOptions, type GcpKmsProvider, type GcpKmsProviderOptions } from "./provider";
export { DEFAULT_TIMEOUT_MS, GCP_KEY_ID_RULE, gcpKeyIdProblem, parseGcpKmsSettings, type GcpEmulatorSettings, type GcpKmsSettings, type GcpServiceAccountCredentials } from "./settings";
