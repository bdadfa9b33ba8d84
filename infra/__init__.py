"""The cdktf app: per-environment config, one module per concern, and the Terraform driver."""
