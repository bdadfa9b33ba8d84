"""Storage: the datasets, MLflow artifacts and models buckets, and the bucket their access logs
go to."""

from __future__ import annotations

from constructs import Construct

from infra.components.bucket import EncryptedBucket
from infra.config import Environment

DATA_BUCKETS = ("datasets", "artifacts", "models")


class Storage(Construct):
    def __init__(self, scope: Construct, id_: str, env: Environment, *, kms_key_arn: str) -> None:
        super().__init__(scope, id_)
        cfg = env.storage
        names = env.bucket_names()
        # Only the local environment's buckets may be emptied by `destroy`.
        force_destroy = env.is_local
        self.logs = EncryptedBucket(
            self,
            "logs",
            bucket_name=names["logs"],
            kms_key_arn=None,
            log_bucket=None,
            account_id=env.account_id,
            receives_logs=True,
            noncurrent_days=cfg.noncurrent_version_expiration_days,
            transition_days=cfg.transition_to_ia_days,
            expire_days=cfg.log_retention_days,
            force_destroy=force_destroy,
            require_tls=cfg.require_tls,
        )
        self.buckets = {
            kind: EncryptedBucket(
                self,
                kind,
                bucket_name=names[kind],
                kms_key_arn=kms_key_arn,
                log_bucket=self.logs,
                account_id=env.account_id,
                noncurrent_days=cfg.noncurrent_version_expiration_days,
                transition_days=cfg.transition_to_ia_days,
                force_destroy=force_destroy,
                require_tls=cfg.require_tls,
            )
            for kind in DATA_BUCKETS
        }
