variable "alias_name" {
  description = "Alias of the key, without the alias/ prefix (the configuration names it as alias/<alias_name>)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_-]{1,250}$", var.alias_name)) && !startswith(var.alias_name, "aws/")
    error_message = "alias_name: 1 to 250 characters of A-Z a-z 0-9 / _ -, not starting with aws/ (reserved for AWS managed keys)."
  }
}

variable "description" {
  description = "Description of the KMS key."
  type        = string
  default     = "Tenant key-encryption key (@kms/aws envelope encryption)"
}

variable "service_principal_arns" {
  description = "ARNs of the IAM roles (or users) the service runs as. Each gets exactly the runtime permissions kms validate checks: kms:DescribeKey, kms:GenerateDataKey, kms:Encrypt, kms:Decrypt."
  type        = list(string)

  validation {
    condition     = length(var.service_principal_arns) > 0 && alltrue([for arn in var.service_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "service_principal_arns: at least one IAM role or user ARN (arn:aws:iam::<account>:role/<name>)."
  }
}

variable "rotation_principal_arns" {
  description = "ARNs of the IAM roles that rotate the key on demand (provider.rotateKey, the rotation scheduler): kms:DescribeKey, kms:ListKeyRotations (describeKey's rotatedAt, the key's age) and kms:RotateKeyOnDemand. Empty (the default): automatic rotation only."
  type        = list(string)
  default     = []
}

variable "key_admin_principal_arns" {
  description = "ARNs of the separate key-administration roles allowed to crypto-shred the key (provider.disableKey, shredTenantKey): kms:DescribeKey, kms:DisableKey, kms:ScheduleKeyDeletion. Never the service's role."
  type        = list(string)
  default     = []
}

variable "rotation_period_in_days" {
  description = "Days between automatic rotations of the key material (AWS allows 90 to 2560). Default 90, the toolkit's cryptoperiod."
  type        = number
  default     = 90

  validation {
    condition     = var.rotation_period_in_days >= 90 && var.rotation_period_in_days <= 2560 && floor(var.rotation_period_in_days) == var.rotation_period_in_days
    error_message = "rotation_period_in_days: a whole number of days, 90 to 2560."
  }
}

variable "deletion_window_in_days" {
  description = "Waiting period (7 to 30 days) before AWS deletes the key after terraform destroy or ScheduleKeyDeletion; it can be cancelled until then."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days: 7 to 30."
  }
}

variable "require_tenant_context" {
  description = "Allow kms:GenerateDataKey, kms:Encrypt and kms:Decrypt only with a kms:tenant encryption-context key (core always sends one). The context values allowed are tenant_context_values."
  type        = bool
  default     = true
}

variable "tenant_context_values" {
  description = "Values of the kms:tenant encryption-context key the service may use (StringLike patterns). [\"*\"]: any tenant. A list of tenants must include kms-validate-permissions, the context of kms validate's test calls."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.tenant_context_values) > 0 && (contains(var.tenant_context_values, "*") || contains(var.tenant_context_values, "kms-validate-permissions"))
    error_message = "tenant_context_values: include \"kms-validate-permissions\" (or \"*\"), or kms validate reports a denial the real traffic would not meet."
  }
}

variable "deny_shredding_to_service" {
  description = "Add an explicit Deny of kms:DisableKey and kms:ScheduleKeyDeletion for the service principals, so no broader IAM grant can give them these actions."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags of the key."
  type        = map(string)
  default     = {}
}
