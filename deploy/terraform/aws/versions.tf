terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # rotation_period_in_days on aws_kms_key needs 5.49 or later.
      version = ">= 5.49, < 7.0"
    }
  }
}
