"""Reusable constructs every stack and environment shares, one module per concern:
``tags`` (the tagging aspect), ``iam`` (policy documents, IRSA roles), ``kms`` (customer keys),
``bucket`` (the encrypted S3 bucket) and ``node_pool`` (EKS managed node groups)."""
