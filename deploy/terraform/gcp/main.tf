# A Cloud KMS key ring and symmetric key for @kms/gcp envelope encryption, rotated automatically, and
# a custom role with exactly the permissions `kms validate` checks (GCP_RUNTIME_PERMISSIONS in
# @kms/gcp), bound on the key only. deploy/test/terraform.test.ts compares the permissions below with
# that list: change both together.

locals {
  service_members = toset([for email in var.service_account_emails : "serviceAccount:${email}"])
}

resource "google_kms_key_ring" "this" {
  project  = var.project_id
  name     = var.key_ring_name
  location = var.location
}

resource "google_kms_crypto_key" "this" {
  name                       = var.key_name
  key_ring                   = google_kms_key_ring.this.id
  purpose                    = "ENCRYPT_DECRYPT"
  rotation_period            = "${var.rotation_period_days * 86400}s"
  destroy_scheduled_duration = "${var.destroy_scheduled_duration_days * 86400}s"
  labels                     = var.labels

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.protection_level
  }

  # Destroying the key would make every envelope wrapped under it unreadable. Remove this guard by
  # hand, on purpose, if the key really must go (crypto-shredding is disableKey, not terraform destroy).
  lifecycle {
    prevent_destroy = true
  }
}

# The service's runtime identity: encrypt (new data keys, rewrap), decrypt (data keys not yet
# cached), get (describeKey, health checks). Nothing else: roles/cloudkms.viewer would add listing.
resource "google_project_iam_custom_role" "runtime" {
  project     = var.project_id
  role_id     = var.runtime_role_id
  title       = "Envelope encryption (@kms/gcp)"
  description = "Exactly the permissions @kms/gcp validatePermissions checks for the runtime identity."
  permissions = ["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", "cloudkms.cryptoKeys.get"]
}

resource "google_kms_crypto_key_iam_member" "runtime" {
  for_each      = local.service_members
  crypto_key_id = google_kms_crypto_key.this.id
  role          = google_project_iam_custom_role.runtime.name
  member        = each.value
}

# On-demand rotation (provider.rotateKey): GetCryptoKey, CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion.
resource "google_project_iam_custom_role" "rotation" {
  count       = var.rotation_member == null ? 0 : 1
  project     = var.project_id
  role_id     = var.rotation_role_id
  title       = "Key rotation (@kms/gcp rotateKey)"
  description = "The permissions of @kms/gcp rotateKey, for the identity that rotates keys on demand."
  permissions = ["cloudkms.cryptoKeys.get", "cloudkms.cryptoKeyVersions.create", "cloudkms.cryptoKeys.update"]
}

resource "google_kms_crypto_key_iam_member" "rotation" {
  count         = var.rotation_member == null ? 0 : 1
  crypto_key_id = google_kms_crypto_key.this.id
  role          = google_project_iam_custom_role.rotation[0].name
  member        = var.rotation_member
}

# Crypto-shredding (provider.disableKey): a key-administration identity only, never the service's.
resource "google_project_iam_custom_role" "key_admin" {
  count       = var.key_admin_member == null ? 0 : 1
  project     = var.project_id
  role_id     = var.key_admin_role_id
  title       = "Crypto-shredding (@kms/gcp disableKey)"
  description = "The permissions of @kms/gcp disableKey (both modes), for a key-administration identity only."
  permissions = ["cloudkms.cryptoKeyVersions.list", "cloudkms.cryptoKeyVersions.update", "cloudkms.cryptoKeyVersions.destroy"]
}

resource "google_kms_crypto_key_iam_member" "key_admin" {
  count         = var.key_admin_member == null ? 0 : 1
  crypto_key_id = google_kms_crypto_key.this.id
  role          = google_project_iam_custom_role.key_admin[0].name
  member        = var.key_admin_member

  lifecycle {
    precondition {
      condition     = !contains(local.service_members, coalesce(var.key_admin_member, "-"))
      error_message = "key_admin_member must not be a service account the service runs as: the runtime identity must never disable or destroy key versions."
    }
  }
}
