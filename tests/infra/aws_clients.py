"""boto3 clients of a moto server that a test started."""

from __future__ import annotations

import boto3


def moto_client(endpoint: str, service: str):
    """A client of ``service`` at moto's ``endpoint`` (moto takes any credentials)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
