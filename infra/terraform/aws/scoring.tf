# What the scoring pods may do in AWS: read the artifacts bucket (IRSA role of their service
# account). Their secrets live in Secrets Manager, synced into the cluster by External Secrets.
data "aws_iam_policy_document" "scoring_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(aws_iam_openid_connect_provider.eks.url, "https://", "")}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(aws_iam_openid_connect_provider.eks.url, "https://", "")}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "scoring" {
  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
  }
  statement {
    sid       = "DecryptArtifacts"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role" "scoring" {
  name               = "${var.name}-scoring"
  assume_role_policy = data.aws_iam_policy_document.scoring_assume.json
}

resource "aws_iam_role_policy" "scoring" {
  name   = "read-artifacts"
  role   = aws_iam_role.scoring.id
  policy = data.aws_iam_policy_document.scoring.json
}

# Holds api-key, audit-url and audit-hash-key (values set out of band, never in Terraform state).
resource "aws_secretsmanager_secret" "scoring" {
  #checkov:skip=CKV2_AWS_57:the API key and audit hash key are rotated by a release (new key, both accepted during the rollout), not by a Lambda
  name                    = "${var.name}/fraud-scoring"
  description             = "api-key, audit-url and audit-hash-key of the scoring service (synced to the fraud-scoring-secrets Secret)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 30
}
