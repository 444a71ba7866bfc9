# Vault policy for the process that rotates keys on demand (provider.rotateKey, the rotation
# scheduler): VAULT_ROTATION_GRANTS in @kms/vault. Not needed when Vault rotates by itself
# (vault write transit/keys/<key>/config auto_rotate_period=2160h).
#
#   vault policy write kms-rotation deploy/vault/kms-rotation.hcl

path "transit/keys/+/rotate" {
  capabilities = ["update"]
}
