data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The zones named in var.availability_zones, checked to exist and be available in the region.
data "aws_availability_zones" "selected" {
  state = "available"
  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = sort(data.aws_availability_zones.selected.names)
  az_count   = length(var.availability_zones)
  # /20 per subnet: private subnets first (pods take VPC addresses with the VPC CNI), then public.
  private_subnets = [for i in range(local.az_count) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i in range(local.az_count) : cidrsubnet(var.vpc_cidr, 4, i + 8)]
}
