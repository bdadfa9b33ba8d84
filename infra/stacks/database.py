"""The MLflow database: RDS PostgreSQL in the private subnets, encrypted, backed up, with its
master password managed by Secrets Manager."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.db_instance import DbInstance
from cdktf_cdktf_provider_aws.db_parameter_group import DbParameterGroup
from cdktf_cdktf_provider_aws.db_subnet_group import DbSubnetGroup
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import (
    VpcSecurityGroupIngressRule,
)
from constructs import Construct

from infra.config import Environment


class Database(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        env: Environment,
        *,
        vpc_id: str,
        vpc_cidr: str,
        subnet_ids: list[str],
        kms_key_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        cfg = env.database
        ident = f"{env.cluster.name}-mlflow"
        subnets = DbSubnetGroup(self, "subnets", name=ident, subnet_ids=subnet_ids)
        self.security_group = self._security_group(ident, vpc_id, vpc_cidr)
        params = self._parameter_group(ident, cfg.engine_version, moto=env.is_local)
        self.instance = DbInstance(
            self,
            "instance",
            identifier=ident,
            engine="postgres",
            engine_version=cfg.engine_version,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=kms_key_arn,
            db_name=cfg.db_name,
            username=cfg.username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=kms_key_arn,
            db_subnet_group_name=subnets.name,
            parameter_group_name=params.name,
            vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            deletion_protection=cfg.deletion_protection,
            backup_retention_period=cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            iam_database_authentication_enabled=True,
            auto_minor_version_upgrade=True,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            performance_insights_enabled=cfg.performance_insights,
            performance_insights_kms_key_id=kms_key_arn if cfg.performance_insights else None,
            skip_final_snapshot=not cfg.deletion_protection,
            final_snapshot_identifier=f"{ident}-final" if cfg.deletion_protection else None,
        )

    def _security_group(self, ident: str, vpc_id: str, vpc_cidr: str) -> SecurityGroup:
        """PostgreSQL reachable from inside the VPC only."""
        group = SecurityGroup(
            self,
            "sg",
            name=f"{ident}-db",
            description="PostgreSQL for MLflow: reachable from inside the VPC only",
            vpc_id=vpc_id,
        )
        VpcSecurityGroupIngressRule(
            self,
            "ingress-postgres",
            security_group_id=group.id,
            description="PostgreSQL from the VPC",
            ip_protocol="tcp",
            from_port=5432,
            to_port=5432,
            cidr_ipv4=vpc_cidr,
        )
        return group

    def _parameter_group(self, ident: str, engine_version: str, *, moto: bool) -> DbParameterGroup:
        """TLS forced, slow queries logged."""
        major = engine_version.split(".")[0]
        return DbParameterGroup(
            self,
            "params",
            name=f"{ident}-pg{major}",
            family=f"postgres{major}",
            description="MLflow PostgreSQL: TLS only, slow-query logging",
            parameter=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": "1000"},
            ],
            # moto does not report a parameter group's parameters back.
            lifecycle={"ignore_changes": ["parameter"]} if moto else None,
        )
