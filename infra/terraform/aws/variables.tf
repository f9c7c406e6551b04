variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name (the EKS cluster is called this)."
  type        = string
  default     = "ml-levels-fraud"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3 to 31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "cluster_version" {
  description = "Kubernetes version of the EKS control plane and nodes (the manifests under infra/k8s are validated against this version)."
  type        = string
  default     = "1.33"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones used, by name (one private and one public subnet and one NAT gateway each); a fixed list, so a zone AWS adds later never changes the plan."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "availability_zones must name 2 to 4 zones (EKS needs subnets in two zones at least)."
  }
}

variable "api_public_cidrs" {
  description = "CIDR blocks allowed to reach the Kubernetes API from the internet; empty keeps the endpoint private (reachable from the VPC, a VPN or a bastion only)."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group (compute-optimised: scoring is CPU bound)."
  type        = list(string)
  default     = ["c7i.xlarge"]
}

variable "node_min_size" {
  description = "Fewest nodes (the prod overlay's three replicas spread over three zones)."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Most nodes the cluster autoscaler may start (the HPA's 20 replicas and the Ray workers)."
  type        = number
  default     = 12
}

variable "node_desired_size" {
  description = "Nodes at creation (the autoscaler owns the count afterwards)."
  type        = number
  default     = 3
}

variable "node_disk_gib" {
  description = "Root volume size of each node in GiB (images and the pods' emptyDir volumes)."
  type        = number
  default     = 80
}

variable "log_retention_days" {
  description = "Retention of the control plane and VPC flow logs in days (a year: audit evidence)."
  type        = number
  default     = 365
}

variable "k8s_namespace" {
  description = "Namespace of the scoring service (infra/k8s/overlays/prod)."
  type        = string
  default     = "fraud-prod"
}

variable "k8s_service_account" {
  description = "Service account of the scoring pods, bound to the IAM role of scoring_role_arn (IRSA)."
  type        = string
  default     = "fraud-scoring"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
