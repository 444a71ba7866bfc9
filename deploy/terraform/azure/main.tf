# An RBAC Key Vault and an RSA key for @kms/azure envelope encryption, rotated by a rotation policy,
# and a custom role with exactly the data actions `kms validate` checks (AZURE_RUNTIME_DATA_ACTIONS
# in @kms/azure), assigned on the key only. deploy/test/terraform.test.ts compares the data actions
# below with that list: change both together.

data "azurerm_client_config" "current" {}

data "azurerm_resource_group" "this" {
  name = var.resource_group_name
}

resource "azurerm_key_vault" "this" {
  name                          = var.key_vault_name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.sku_name
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.soft_delete_retention_days
  public_network_access_enabled = var.public_network_access_enabled
  tags                          = var.tags

  lifecycle {
    prevent_destroy = true
  }
}

# Creating the key and its rotation policy on an RBAC vault needs a data-plane role for whoever runs
# Terraform. Role assignments take a few minutes to propagate: a first apply can fail with 403 on the
# key; apply again.
resource "azurerm_role_assignment" "deployer" {
  count                = var.assign_deployer_crypto_officer ? 1 : 0
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Crypto Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_key_vault_key" "this" {
  name         = var.key_name
  key_vault_id = azurerm_key_vault.this.id
  key_type     = var.key_type
  key_size     = var.key_size
  # RSA-OAEP-256 wrapKey / unwrapKey only: the provider never encrypts, signs or verifies with it.
  key_opts = ["wrapKey", "unwrapKey"]
  tags     = var.tags

  rotation_policy {
    automatic {
      time_after_creation = "P${var.rotation_period_days}D"
    }
    expire_after         = var.expire_after_days == null ? null : "P${var.expire_after_days}D"
    notify_before_expiry = var.expire_after_days == null ? null : "P${var.notify_before_expiry_days}D"
  }

  depends_on = [azurerm_role_assignment.deployer]

  lifecycle {
    # Deleting the key would make every envelope wrapped under it unreadable once purged.
    prevent_destroy = true

    precondition {
      condition     = var.expire_after_days == null || try(var.expire_after_days >= var.rotation_period_days + 7, false)
      error_message = "expire_after_days must be at least rotation_period_days + 7: Key Vault rotates at least 7 days before a version expires."
    }
  }
}

# The service's runtime identity: read (describeKey, health checks), wrap (new data keys, rewrap),
# unwrap (data keys not yet cached). The same data actions as the built-in "Key Vault Crypto Service
# Encryption User", made explicit so the list is reviewable and cannot grow with the built-in role.
resource "azurerm_role_definition" "runtime" {
  name        = "kms-envelope-encryption-${var.key_vault_name}"
  scope       = data.azurerm_resource_group.this.id
  description = "Exactly the data actions @kms/azure validatePermissions checks for the runtime identity."

  permissions {
    actions      = []
    data_actions = ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/wrap/action", "Microsoft.KeyVault/vaults/keys/unwrap/action"]
  }

  assignable_scopes = [data.azurerm_resource_group.this.id]
}

resource "azurerm_role_assignment" "runtime" {
  for_each           = toset(var.service_principal_object_ids)
  scope              = azurerm_key_vault_key.this.resource_versionless_id
  role_definition_id = azurerm_role_definition.runtime.role_definition_resource_id
  principal_id       = each.value
}

# On-demand rotation (provider.rotateKey: GetKey, then RotateKey).
resource "azurerm_role_definition" "rotation" {
  count       = var.rotation_principal_object_id == null ? 0 : 1
  name        = "kms-key-rotation-${var.key_vault_name}"
  scope       = data.azurerm_resource_group.this.id
  description = "The data actions of @kms/azure rotateKey, for the identity that rotates keys on demand."

  permissions {
    actions      = []
    data_actions = ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/rotate/action"]
  }

  assignable_scopes = [data.azurerm_resource_group.this.id]
}

resource "azurerm_role_assignment" "rotation" {
  count              = var.rotation_principal_object_id == null ? 0 : 1
  scope              = azurerm_key_vault_key.this.resource_versionless_id
  role_definition_id = azurerm_role_definition.rotation[0].role_definition_resource_id
  principal_id       = var.rotation_principal_object_id
}

# Crypto-shredding (provider.disableKey): list the versions, disable each (update) or soft-delete
# the key (delete). A key-administration identity only, never the service's.
resource "azurerm_role_definition" "key_admin" {
  count       = var.key_admin_principal_object_id == null ? 0 : 1
  name        = "kms-crypto-shredding-${var.key_vault_name}"
  scope       = data.azurerm_resource_group.this.id
  description = "The data actions of @kms/azure disableKey (both modes), for a key-administration identity only."

  permissions {
    actions      = []
    data_actions = ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/update/action", "Microsoft.KeyVault/vaults/keys/delete"]
  }

  assignable_scopes = [data.azurerm_resource_group.this.id]
}

resource "azurerm_role_assignment" "key_admin" {
  count              = var.key_admin_principal_object_id == null ? 0 : 1
  scope              = azurerm_key_vault_key.this.resource_versionless_id
  role_definition_id = azurerm_role_definition.key_admin[0].role_definition_resource_id
  principal_id       = var.key_admin_principal_object_id

  lifecycle {
    precondition {
      condition     = !contains(var.service_principal_object_ids, coalesce(var.key_admin_principal_object_id, "-"))
      error_message = "key_admin_principal_object_id must not be an identity the service runs as: the runtime identity must never disable or delete the key."
    }
  }
}
