"""The data stack: storage, the MLflow database, the image registry and the workload IAM
roles, all encrypted with one customer-managed key of the environment."""

from __future__ import annotations

from constructs import Construct

from infra.components.kms import customer_key
from infra.config import Environment
from infra.stacks.base import EnvStack
from infra.stacks.database import Database
from infra.stacks.iam import WorkloadRoles
from infra.stacks.registry import Registry
from infra.stacks.storage import Storage


class DataStack(EnvStack):
    stack_kind = "data"

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env)
        network = self.upstream("network")
        cluster = self.upstream("cluster")
        key = customer_key(
            self,
            "data-key",
            env,
            description=f"{env.cluster.name} data: buckets, database, registry",
            services=[],
            alias=f"alias/{env.cluster.name}-data",
        )
        storage = Storage(self, "storage", env, kms_key_arn=key.arn)
        database = Database(
            self,
            "database",
            env,
            vpc_id=network.get_string("vpc_id"),
            vpc_cidr=network.get_string("vpc_cidr"),
            subnet_ids=network.get_list("private_subnet_ids"),
            kms_key_arn=key.arn,
        )
        registry = Registry(self, "registry", env, kms_key_arn=key.arn)
        roles = WorkloadRoles(
            self,
            "iam",
            env,
            oidc_provider_arn=cluster.get_string("oidc_provider_arn"),
            oidc_issuer=cluster.get_string("oidc_issuer"),
            buckets={kind: b.bucket.arn for kind, b in storage.buckets.items()},
            kms_key_arn=key.arn,
            database_arn=database.instance.arn,
        )
        self.storage, self.database, self.registry, self.roles = storage, database, registry, roles

        self.output("kms_key_arn", key.arn, "customer-managed key of the data stack")
        for kind, bucket in storage.buckets.items():
            self.output(f"{kind}_bucket", bucket.bucket.bucket, f"{kind} bucket name")
        self.output("logs_bucket", storage.logs.bucket.bucket, "access-log bucket name")
        self.output("database_address", database.instance.address, "MLflow PostgreSQL host")
        self.output("database_port", database.instance.port, "MLflow PostgreSQL port")
        self.output(
            "database_secret_arn",
            database.instance.master_user_secret.get(0).secret_arn,
            "Secrets Manager secret holding the master password",
        )
        for name, repo in registry.repositories.items():
            self.output(
                f"ecr_{name}_url", repo.repository_url, f"ECR repository of the {name} image"
            )
        for key_name, role in roles.roles.items():
            self.output(f"{key_name}_role_arn", role.role.arn, f"IRSA role of the {key_name}")
