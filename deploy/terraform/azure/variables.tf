variable "resource_group_name" {
  description = "Existing resource group for the vault; the custom roles are defined (and assignable) at its scope."
  type        = string
}

variable "location" {
  description = "Azure region of the vault (westeurope, eastus…)."
  type        = string
}

variable "key_vault_name" {
  description = "Name of the Key Vault to create (globally unique, 3 to 24 characters). Its URL is https://<name>.vault.azure.net."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.key_vault_name)) && !strcontains(var.key_vault_name, "--")
    error_message = "key_vault_name: 3 to 24 characters of letters, digits and single hyphens, starting with a letter."
  }
}

variable "key_name" {
  description = "Name of the key in the vault: the keyId to configure."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{1,127}$", var.key_name))
    error_message = "key_name: 1 to 127 characters of letters, digits and hyphens."
  }
}

variable "sku_name" {
  description = "standard or premium. premium is needed for key_type RSA-HSM."
  type        = string
  default     = "standard"

  validation {
    condition     = contains(["standard", "premium"], var.sku_name)
    error_message = "sku_name: standard or premium."
  }
}

variable "key_type" {
  description = "RSA (software-protected) or RSA-HSM (premium vaults). Data keys are wrapped with RSA-OAEP-256, the provider's default algorithm."
  type        = string
  default     = "RSA"

  validation {
    condition     = contains(["RSA", "RSA-HSM"], var.key_type)
    error_message = "key_type: RSA or RSA-HSM (oct-HSM keys live in a Managed HSM, which this module does not create)."
  }
}

variable "key_size" {
  description = "RSA key size in bits: 2048, 3072 or 4096."
  type        = number
  default     = 3072

  validation {
    condition     = contains([2048, 3072, 4096], var.key_size)
    error_message = "key_size: 2048, 3072 or 4096."
  }
}

variable "service_principal_object_ids" {
  description = "Entra object ids of the identities the service runs as (managed identities, workload identities, service principals). Each gets the runtime custom role on the key only: exactly the data actions kms validate checks (keys/read, keys/wrap/action, keys/unwrap/action)."
  type        = list(string)

  validation {
    condition     = length(var.service_principal_object_ids) > 0 && alltrue([for id in var.service_principal_object_ids : can(regex("^[0-9a-fA-F-]{36}$", id))])
    error_message = "service_principal_object_ids: at least one object id (a GUID)."
  }
}

variable "rotation_principal_object_id" {
  description = "Object id of the identity that rotates the key on demand (provider.rotateKey, the rotation scheduler): keys/read and keys/rotate/action. null (the default): the rotation policy rotates, no rotation role is created."
  type        = string
  default     = null
}

variable "key_admin_principal_object_id" {
  description = "Object id of a separate key-administration identity allowed to crypto-shred the key (provider.disableKey, shredTenantKey): keys/read, keys/update/action, keys/delete. Never the service's identity. null (the default): no shredding role is created."
  type        = string
  default     = null
}

variable "rotation_period_days" {
  description = "Days after a version's creation when Key Vault rotates the key (a new current version; earlier versions keep unwrapping). Default 90, the toolkit's cryptoperiod."
  type        = number
  default     = 90

  validation {
    condition     = var.rotation_period_days >= 7 && floor(var.rotation_period_days) == var.rotation_period_days
    error_message = "rotation_period_days: a whole number of days, 7 or more (Key Vault's minimum)."
  }
}

variable "expire_after_days" {
  description = "Expiry of each new key version, in days (null: versions never expire). An expired version refuses wrapKey but still unwraps; rotation must come at least 7 days before expiry."
  type        = number
  default     = 730

  validation {
    condition     = var.expire_after_days == null || try(var.expire_after_days >= 28, false)
    error_message = "expire_after_days: null, or 28 days or more (Key Vault's minimum)."
  }
}

variable "notify_before_expiry_days" {
  description = "Days before a version's expiry when Key Vault emits a near-expiry event (Event Grid). Used only when expire_after_days is set."
  type        = number
  default     = 30
}

variable "soft_delete_retention_days" {
  description = "Days a deleted key or vault stays recoverable (7 to 90): also crypto-shredding's waiting period (disableKey mode schedule-destruction). Fixed when the vault is created."
  type        = number
  default     = 90

  validation {
    condition     = var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90
    error_message = "soft_delete_retention_days: 7 to 90."
  }
}

variable "public_network_access_enabled" {
  description = "Whether the vault accepts traffic from public networks. Set false with a private endpoint (not created here)."
  type        = bool
  default     = true
}

variable "assign_deployer_crypto_officer" {
  description = "Give the identity running Terraform the built-in Key Vault Crypto Officer role on the vault, which it needs to create the key and its rotation policy on an RBAC vault. Set false when it already has it."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags of the vault and the key."
  type        = map(string)
  default     = {}
}
