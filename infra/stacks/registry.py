"""Registry: one ECR repository per image (train, eval, serve): immutable tags, scan on push,
KMS encryption and a lifecycle policy."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktf_cdktf_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
)
from constructs import Construct

from infra.config import Environment


class Registry(Construct):
    def __init__(self, scope: Construct, id_: str, env: Environment, *, kms_key_arn: str) -> None:
        super().__init__(scope, id_)
        keep = env.registry.keep_images
        self.repositories: dict[str, EcrRepository] = {}
        for name in env.registry.repositories:
            repo = EcrRepository(
                self,
                name,
                name=f"tuneops/{name}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configuration=[
                    EcrRepositoryEncryptionConfiguration(encryption_type="KMS", kms_key=kms_key_arn)
                ],
                force_delete=env.is_local,
            )
            EcrLifecyclePolicy(
                self,
                f"{name}-lifecycle",
                repository=repo.name,
                policy=json.dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": f"keep the newest {keep} images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": keep,
                                },
                                "action": {"type": "expire"},
                            }
                        ]
                    }
                ),
            )
            self.repositories[name] = repo
