# Vault policy for a separate key-administration token, NEVER the application's: crypto-shredding
# (provider.disableKey mode schedule-destruction, shredTenantKey), VAULT_SHREDDING_GRANTS in
# @kms/vault. On Vault this destroys the key AT ONCE, every version, with no undo.
#
#   vault policy write kms-shred deploy/vault/kms-shred.hcl

# deletion_allowed=true
path "transit/keys/+/config" {
  capabilities = ["update"]
}

# DELETE: the key is gone.
path "transit/keys/+" {
  capabilities = ["delete"]
}
