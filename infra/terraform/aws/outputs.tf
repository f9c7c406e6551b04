output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "IAM OIDC provider of the cluster (IRSA)."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "ecr_repository_url" {
  description = "Repository of the scoring image (the prod overlay's image name)."
  value       = aws_ecr_repository.fraud.repository_url
}

output "ecr_ray_repository_url" {
  description = "Repository of the Ray Serve image (the RayService's image name)."
  value       = aws_ecr_repository.fraud_ray.repository_url
}

output "artifacts_bucket" {
  description = "S3 bucket of the trained run folders and the MLflow registry."
  value       = aws_s3_bucket.artifacts.bucket
}

output "scoring_role_arn" {
  description = "IAM role of the scoring pods' service account (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.scoring.arn
}

output "scoring_secret_arn" {
  description = "Secrets Manager secret holding api-key, audit-url and audit-hash-key (synced to fraud-scoring-secrets)."
  value       = aws_secretsmanager_secret.scoring.arn
}

output "kms_key_arn" {
  description = "Customer-managed KMS key encrypting secrets, logs, volumes, images and the bucket."
  value       = aws_kms_key.main.arn
}
