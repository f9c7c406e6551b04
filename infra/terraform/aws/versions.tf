# Exact provider versions: a plan on another machine uses the same provider code. Run
# `terraform init` once with registry access to write .terraform.lock.hcl (the checksums),
# then commit it.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.94.1"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "4.0.6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { Project = "ml-levels", Component = "level4-fraud", ManagedBy = "terraform" })
  }
}
