/**
 * @kms/vault: the HashiCorp Vault transit provider for @kms/core, on node-vault. Data keys come from
 * `transit/datakey/plaintext`, are wrapped with `transit/encrypt` and unwrapped with `transit/decrypt`
 * under a derived key, with the encryption context as Vault's key-derivation `context`.
 */
export {
  VAULT_ROTATION_GRANTS,
  VAULT_RUNTIME_GRANTS,
  VAULT_SHREDDING_GRANTS,
  vaultGrantPath,
  type VaultPolicyGrant,
} from "./provider";
export { VAULT_POLICY_DOCS_URL, vaultKms, vaultKmsProvider, type VaultKmsOptions, type VaultKmsProvider } from "./provider";
export {
  DEFAULT_APPROLE_MOUNT_PATH,
  DEFAULT_MOUNT_PATH,
  DEFAULT_REQUEST_TIMEOUT_MS,
  VAULT_KEY_NAME_RULE,
  vaultKeyIdProblem,
  type VaultAppRoleAuth,
  type VaultAuth,
  type VaultKmsSettings,
} from "./settings";
export { encodeVaultContext } from "./context";
export { VaultTransportError } from "./errors";
