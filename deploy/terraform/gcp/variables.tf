variable "project_id" {
  description = "The Google Cloud project that holds the key ring, the key and the custom roles."
  type        = string
}

variable "location" {
  description = "Cloud KMS location of the key ring (a region such as europe-west1, a multi-region, or global)."
  type        = string
}

variable "key_ring_name" {
  description = "Name of the key ring to create. Key rings cannot be deleted: choose a name you will keep."
  type        = string
}

variable "key_name" {
  description = "Name of the crypto key to create in the key ring."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,63}$", var.key_name))
    error_message = "key_name: 1 to 63 characters of a-z A-Z 0-9 _ -."
  }
}

variable "service_account_emails" {
  description = "Emails of the service accounts the service runs as. Each gets the runtime custom role on this key only: exactly the permissions kms validate checks (useToEncrypt, useToDecrypt, cryptoKeys.get)."
  type        = list(string)

  validation {
    condition     = length(var.service_account_emails) > 0 && alltrue([for email in var.service_account_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.iam\\.gserviceaccount\\.com$", email))])
    error_message = "service_account_emails: at least one service account email (<name>@<project>.iam.gserviceaccount.com)."
  }
}

variable "rotation_period_days" {
  description = "Days between automatic rotations (a new primary version; earlier versions keep decrypting). Default 90, the toolkit's cryptoperiod."
  type        = number
  default     = 90

  validation {
    condition     = var.rotation_period_days >= 1 && var.rotation_period_days <= 36500 && floor(var.rotation_period_days) == var.rotation_period_days
    error_message = "rotation_period_days: a whole number of days, 1 or more (Cloud KMS needs at least one day)."
  }
}

variable "protection_level" {
  description = "SOFTWARE or HSM: where the key material lives."
  type        = string
  default     = "SOFTWARE"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.protection_level)
    error_message = "protection_level: SOFTWARE or HSM."
  }
}

variable "destroy_scheduled_duration_days" {
  description = "Days a version stays DESTROY_SCHEDULED (restorable) before its material is destroyed: crypto-shredding's waiting period. Fixed when the key is created."
  type        = number
  default     = 30

  validation {
    condition     = var.destroy_scheduled_duration_days >= 1 && var.destroy_scheduled_duration_days <= 120
    error_message = "destroy_scheduled_duration_days: 1 to 120."
  }
}

variable "runtime_role_id" {
  description = "Id of the project custom role for the service (letters, digits, _ and .). A deleted custom role's id cannot be reused for 37 days."
  type        = string
  default     = "kmsEnvelopeEncryption"
}

variable "rotation_member" {
  description = "IAM member (serviceAccount:<email>) that rotates the key on demand (provider.rotateKey, the rotation scheduler). null (the default): automatic rotation only, no rotation role is created."
  type        = string
  default     = null
}

variable "rotation_role_id" {
  description = "Id of the project custom role for on-demand rotation, created only when rotation_member is set."
  type        = string
  default     = "kmsKeyRotation"
}

variable "key_admin_member" {
  description = "IAM member (a user, group or serviceAccount) allowed to crypto-shred the key (provider.disableKey, shredTenantKey). Never the service's account. null (the default): no shredding role is created."
  type        = string
  default     = null
}

variable "key_admin_role_id" {
  description = "Id of the project custom role for crypto-shredding, created only when key_admin_member is set."
  type        = string
  default     = "kmsCryptoShredding"
}

variable "labels" {
  description = "Labels of the crypto key."
  type        = map(string)
  default     = {}
}
