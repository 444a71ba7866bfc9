output "key_vault_id" {
  description = "The vault's Azure resource id."
  value       = azurerm_key_vault.this.id
}

output "vault_uri" {
  description = "The vault's URL (https://<name>.vault.azure.net): the provider's vaultUrl."
  value       = trimsuffix(azurerm_key_vault.this.vault_uri, "/")
}

output "key_name" {
  description = "The key's name: the keyId to configure."
  value       = azurerm_key_vault_key.this.name
}

output "key_versionless_id" {
  description = "The key's URL without a version (https://<vault>/keys/<name>)."
  value       = azurerm_key_vault_key.this.versionless_id
}

output "key_resource_id" {
  description = "The key's Azure resource id (versionless): the scope of the role assignments."
  value       = azurerm_key_vault_key.this.resource_versionless_id
}

output "runtime_role_definition_id" {
  description = "Resource id of the runtime custom role assigned to the service's identities on the key."
  value       = azurerm_role_definition.runtime.role_definition_resource_id
}

output "kms_config" {
  description = "A @kms configuration (JSON) that uses this key as the default tenant key: write it to the file kms init / createKms reads (the credential is passed in code), then run kms validate."
  value = jsonencode({
    providers = { "azure-key-vault" = { vaultUrl = trimsuffix(azurerm_key_vault.this.vault_uri, "/") } }
    tenants   = { defaultKey = { provider = "azure-key-vault", keyId = azurerm_key_vault_key.this.name } }
  })
}
