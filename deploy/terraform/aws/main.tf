# A symmetric KMS key for @kms/aws envelope encryption, rotated automatically, with a key policy that
# grants the service's role exactly what `kms validate` checks (AWS_RUNTIME_PERMISSIONS in @kms/aws).
# deploy/test/terraform.test.ts compares the actions below with that list: change both together.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "key" {
  # Keeps the key manageable: the account (through its IAM policies) administers it, as in AWS's
  # default key policy. Without it the key could become unmanageable (AWS refuses such a policy
  # unless the lockout safety check is bypassed, which this module never does).
  statement {
    sid       = "EnableRootAccountAdministration"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # The service's data path: new data keys, rewrap, and data keys the decrypt cache does not hold.
  statement {
    sid       = "ServiceEnvelopeEncryption"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = var.service_principal_arns
    }

    dynamic "condition" {
      for_each = var.require_tenant_context ? [1] : []
      content {
        test     = "StringLike"
        variable = "kms:EncryptionContext:kms:tenant"
        values   = var.tenant_context_values
      }
    }
  }

  # describeKey (DescribeKey, then ListKeyRotations for when the current key material became
  # current: key-age metrics, rewrap's current-version check), health checks. Conditions on the
  # encryption context never match these, so they have their own statement.
  statement {
    sid       = "ServiceDescribeKey"
    effect    = "Allow"
    actions   = ["kms:DescribeKey", "kms:ListKeyRotations"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = var.service_principal_arns
    }
  }

  # On-demand rotation (the rotation scheduler: provider.describeKey, whose rotatedAt comes from
  # ListKeyRotations, and provider.rotateKey): only for the roles that rotate (AWS_ROTATION_PERMISSIONS).
  dynamic "statement" {
    for_each = length(var.rotation_principal_arns) > 0 ? [1] : []
    content {
      sid       = "KeyRotation"
      effect    = "Allow"
      actions   = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:RotateKeyOnDemand"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = var.rotation_principal_arns
      }
    }
  }

  # Crypto-shredding (provider.disableKey): a separate key-administration role only.
  dynamic "statement" {
    for_each = length(var.key_admin_principal_arns) > 0 ? [1] : []
    content {
      sid       = "CryptoShredding"
      effect    = "Allow"
      actions   = ["kms:DescribeKey", "kms:DisableKey", "kms:ScheduleKeyDeletion"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = var.key_admin_principal_arns
      }
    }
  }

  # An explicit deny beats every allow, including IAM policies the account grants through the
  # root statement above.
  dynamic "statement" {
    for_each = var.deny_shredding_to_service ? [1] : []
    content {
      sid       = "ServiceNoShredding"
      effect    = "Deny"
      actions   = ["kms:DisableKey", "kms:ScheduleKeyDeletion"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = var.service_principal_arns
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description              = var.description
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  rotation_period_in_days  = var.rotation_period_in_days
  deletion_window_in_days  = var.deletion_window_in_days
  policy                   = data.aws_iam_policy_document.key.json
  tags                     = var.tags

  lifecycle {
    precondition {
      condition     = length(setintersection(toset(var.key_admin_principal_arns), toset(var.service_principal_arns))) == 0
      error_message = "key_admin_principal_arns must not include a service principal: the runtime role must never be able to disable or delete the key."
    }
  }
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.alias_name}"
  target_key_id = aws_kms_key.this.key_id
}
