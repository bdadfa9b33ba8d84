"""Kubernetes forms of the workloads: InferenceServices, training jobs, GitOps rendering."""
