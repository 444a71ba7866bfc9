output "key_id" {
  description = "The key's id (a UUID)."
  value       = aws_kms_key.this.key_id
}

output "key_arn" {
  description = "The key's ARN: what IAM policies and cross-account grants name."
  value       = aws_kms_key.this.arn
}

output "alias_name" {
  description = "The alias (alias/<name>): the keyId to configure, so the configuration never names the key itself."
  value       = aws_kms_alias.this.name
}

output "alias_arn" {
  description = "The alias ARN: the keyId to configure when the service runs in another account."
  value       = aws_kms_alias.this.arn
}

output "kms_config" {
  description = "A @kms configuration (JSON) that uses this key as the default tenant key: write it to the file kms init / createKms reads, then run kms validate."
  value = jsonencode({
    providers = { "aws-kms" = { region = split(":", aws_kms_key.this.arn)[3] } }
    tenants   = { defaultKey = { provider = "aws-kms", keyId = aws_kms_alias.this.name } }
  })
}
