output "key_ring_id" {
  description = "The key ring (projects/<project>/locations/<location>/keyRings/<name>)."
  value       = google_kms_key_ring.this.id
}

output "crypto_key_id" {
  description = "The key's resource name (projects/…/keyRings/<ring>/cryptoKeys/<key>): the keyId to configure."
  value       = google_kms_crypto_key.this.id
}

output "runtime_role_name" {
  description = "The runtime custom role (projects/<project>/roles/<id>) bound to the service accounts on the key."
  value       = google_project_iam_custom_role.runtime.name
}

output "kms_config" {
  description = "A @kms configuration (JSON) that uses this key as the default tenant key: write it to the file kms init / createKms reads, then run kms validate."
  value = jsonencode({
    providers = { "gcp-kms" = {} }
    tenants   = { defaultKey = { provider = "gcp-kms", keyId = google_kms_crypto_key.this.id } }
  })
}
