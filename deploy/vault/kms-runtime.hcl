# Vault policy for the application's token (@kms/vault): exactly the grants `kms validate` checks
# (VAULT_RUNTIME_GRANTS in @kms/vault), for the transit mount "transit" and any one key name ("+" is
# one path segment). deploy/test/terraform.test.ts compares this file with that list.
#
#   vault policy write kms-runtime deploy/vault/kms-runtime.hcl
#
# Another mount: replace "transit/". Fewer keys: replace "+" with a name, or write one stanza per key.
# Never add "create" (encrypting under a missing key name would create it) or "update"/"delete" on
# keys/ (the application never changes key settings).

# New data keys (the encrypt path, on a cache miss).
path "transit/datakey/plaintext/+" {
  capabilities = ["update"]
}

# rewrap: wraps a data key under the key's latest version.
path "transit/encrypt/+" {
  capabilities = ["update"]
}

# Data keys the decrypt cache does not hold yet; rewrap.
path "transit/decrypt/+" {
  capabilities = ["update"]
}

# The derived=true check, describeKey, health checks.
path "transit/keys/+" {
  capabilities = ["read"]
}
