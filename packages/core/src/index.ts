export { createKms, TENANT_CONTEXT_KEY, type CreateKmsOptions } from "./client";
export type {
  BatchResult,
  CacheStats,
  DecryptItem,
  EncryptItem,
  KeyReport,
  KmsClient,
  KmsHealth,
  PermissionReport,
  PublicPermissionCheck,
  PublicPermissionReport,
  ProviderHealthReport,
  ProviderStats,
} from "./client-types";
export { ManualClock, systemClock, type Clock } from "./clock";
export { contextBytes } from "./context-bytes";
export { crc32c } from "./crc32c";
export {
  CRYPTOPERIOD_DAYS,
  MAX_CACHE_CAPACITY,
  isProductionEnv,
  kmsConfigSchema,
  validateConfig,
  type CacheConfig,
  type KeyRefConfig,
  type KmsConfig,
  type KmsConfigInput,
  type ResilienceConfig,
  type RotationConfig,
  type SharedCacheConfig,
  type TenantKeyConfig,
} from "./config";
export {
  type SharedCacheSettings,
  type SharedCacheStore,
  type SharedTierHealth,
  type SharedTierStatus,
} from "./shared-cache";
export { keyvSharedCacheStore, redisClientOptions, redisSharedCacheStore, type KeyvSharedCacheOptions, type RedisSharedCacheOptions } from "./shared-cache-store";
export { MAX_CONFIG_FILE_BYTES, readConfigFile, type ConfigFileResult } from "./config-file";
export {
  ENVELOPE_VERSION,
  fromBase64Url,
  keyIdProblem,
  parseEnvelope,
  tenantIdProblem,
  toBase64Url,
  type KeySection,
  type ParsedEnvelope,
} from "./envelope";
export {
  DOCS_BASE_URL,
  ERROR_CODES,
  KmsConfigError,
  configIssue,
  KmsError,
  TROUBLESHOOTING_URL,
  docsUrlFor,
  isKmsError,
  networkFailureOf,
  PUBLIC_MESSAGES,
  publicMessageOf,
  publicPermissionReport,
  type ConfigIssue,
  type KmsErrorCode,
  type KmsErrorOptions,
  type NetworkFailure,
} from "./errors";
export type { CacheSide, CircuitState, EvictionReason, KmsEvent, KmsEventListener, KmsOperation } from "./events";
export { LOCAL_DEFAULT_PATH, localKms, localKmsProvider, type LocalKmsOptions, type LocalKmsProvider, type LocalKmsSettings } from "./local-provider";
export {
  DATA_KEY_BYTES,
  definitionOf,
  KNOWN_PROVIDERS,
  PROVIDER_ID_PATTERN,
  shortKeyId,
  takeDataKey,
  type Cancellable,
  type DataKey,
  type DisableKeyOptions,
  type DisableKeyResult,
  type EncryptionContext,
  type GenerateDataKeyRequest,
  type KeyDescription,
  type KeyDisableMode,
  type KmsProvider,
  type PermissionCheck,
  type ProviderCapabilities,
  type ProviderDefinition,
  type ProviderHealth,
  type RotationResult,
  type SettingsResult,
  type UnwrapDataKeyRequest,
  type WrapDataKeyRequest,
  type WrappedDataKey,
} from "./provider";
export { DEFAULT_RESILIENCE, type ResilienceOptions } from "./resilience";
export {
  buildSetupConfig,
  SETUP_PROVIDERS,
  SETUP_QUESTIONS,
  setupConfigText,
  setupConfigYaml,
  setupQuestionApplies,
  VAULT_TOKEN_ENV,
  type SetupAnswers,
  type SetupContext,
  type SetupProviderId,
  type SetupQuestion,
} from "./setup";
export { parseTenantIdAsUuid, type KeyRef, type TenantKeyResolver, type TenantKeySpec } from "./tenant";
