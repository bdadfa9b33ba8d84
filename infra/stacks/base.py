"""What every stack of an environment shares: the AWS provider, the S3 state backend with a
lock file, the environment's tags, and reading the outputs of the stacks it builds on."""

from __future__ import annotations

from typing import Any

from cdktf import Aspects, DataTerraformRemoteStateS3, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from constructs import Construct

from infra.components.tags import TagsAspect
from infra.config import Environment

# AWS APIs the stacks call; in the local environment each one points at moto's server.
LOCAL_SERVICES = (
    "autoscaling",
    "ec2",
    "ecr",
    "eks",
    "events",
    "iam",
    "kms",
    "logs",
    "rds",
    "s3",
    "secretsmanager",
    "sqs",
    "sts",
)


def backend_settings(env: Environment, stack: str) -> dict[str, Any]:
    """The S3 backend arguments of one stack (also used to read its outputs elsewhere)."""
    settings: dict[str, Any] = {
        "bucket": env.state.bucket,
        "key": env.state_key(stack),
        "region": env.region,
        "encrypt": True,
    }
    if env.is_local:
        endpoint = env.local_endpoint
        settings.update(
            endpoints={"s3": endpoint, "sts": endpoint, "iam": endpoint},
            use_path_style=True,
            skip_credentials_validation=True,
            skip_requesting_account_id=True,
            skip_metadata_api_check=True,
            skip_region_validation=True,
            max_retries=5,
        )
    return settings


class EnvStack(TerraformStack):
    """A stack of one environment, named ``<env>-<stack>``, with its state in S3."""

    stack_kind = ""

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env.stack_name(self.stack_kind))
        self.env = env
        provider: dict[str, Any] = {"region": env.region}
        if env.is_local:
            provider.update(
                endpoints=[{name: env.local_endpoint for name in LOCAL_SERVICES}],
                skip_credentials_validation=True,
                skip_requesting_account_id=True,
                skip_metadata_api_check="true",
                skip_region_validation=True,
                s3_use_path_style=True,
                # moto on loopback either answers or is gone: 5 tries (about half a minute of
                # backoff) rather than the provider's 25 (about three minutes) before an apply
                # whose server died gives up and releases what it can.
                max_retries=5,
            )
        else:
            provider["allowed_account_ids"] = [env.account_id]
        self.aws = AwsProvider(self, "aws", **provider)
        S3Backend(self, **backend_settings(env, self.stack_kind))
        # cdktf 0.21's S3Backend has no use_lockfile: Terraform's native S3 lock file (no
        # DynamoDB table) is switched on with an override.
        self.add_override("terraform.backend.s3.use_lockfile", True)
        Aspects.of(self).add(TagsAspect(env.tags))

    def upstream(self, stack: str) -> DataTerraformRemoteStateS3:
        """The outputs of another stack of the same environment, read from its state."""
        return DataTerraformRemoteStateS3(
            self, f"remote-{stack}", **backend_settings(self.env, stack)
        )

    def output(self, name: str, value: Any, description: str, sensitive: bool = False) -> None:
        TerraformOutput(self, name, value=value, description=description, sensitive=sensitive)
