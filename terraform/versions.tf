# Terraform 1.0 or newer: the offline toolchain (scripts/install-terraform.sh) is 1.0.3 with
# hashicorp/null 2.1.2 from a local mirror; online, any current Terraform and null provider work.
terraform {
  required_version = ">= 1.0"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}
