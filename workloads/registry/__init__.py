"""MLflow model registry: register candidates, gate promotions, roll back."""
