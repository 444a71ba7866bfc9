/**
 * @kms/azure: the Azure Key Vault provider for @kms/core. Register `azureKeyVault({ credential })` for
 * configuration-driven set-up, or build one with `azureKeyVaultProvider({ vaultUrl, credential })`.
 * See README.md for the roles it needs.
 */
export { AZURE_PERMISSIONS_DOCS_URL, MAX_CRYPTOGRAPHY_CLIENTS, azureKeyVault, azureKeyVaultProvider, type AzureKeyVaultProviderOptions } from "./provider";
export { AZURE_ALGORITHMS, AZURE_KEY_ID_RULE, azureKeyIdProblem, parseAzureKeyVaultSettings, type AzureKeyVaultSettings, type AzureWrapAlgorithm } from "./settings";
export {
  AZURE_ROTATION_DATA_ACTIONS,
  AZURE_RUNTIME_DATA_ACTIONS,
  AZURE_RUNTIME_KEY_PERMISSIONS,
  AZURE_RUNTIME_OPERATIONS,
  AZURE_SHREDDING_DATA_ACTIONS,
  PROVIDER_ID as AZURE_PROVIDER_ID,
  type AzureRuntimeOperation,
  type ThrottledError,
} from "./errors";
