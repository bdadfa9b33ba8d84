"""Platform releases: every Helm release of the ``platform/`` catalog, in install order, wired
to the network, cluster and data stacks through their outputs (``set_from``), with the values
rendered from the environment config (``values_from``: Karpenter's NodePools).

No cdktf bindings are generated for the helm provider (it is not mirrored here), so releases are
declared as plain ``helm_release`` resources with the provider pinned in required_providers.
"""

from __future__ import annotations

from typing import Any

import yaml
from cdktf import DataTerraformRemoteStateS3, Fn, TerraformProvider, TerraformResource
from constructs import Construct

from infra.catalog import Release, load_catalog, release_values
from infra.config import Environment
from infra.stacks.base import EnvStack

HELM_PROVIDER_VERSION = "2.17.0"


class PlatformStack(EnvStack):
    stack_kind = "platform"

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env)
        cluster = self.upstream("cluster")
        self.outputs_of: dict[str, DataTerraformRemoteStateS3] = {"cluster": cluster}
        self.add_override(
            "terraform.required_providers.helm",
            {"source": "hashicorp/helm", "version": HELM_PROVIDER_VERSION},
        )
        self.helm = self._helm_provider(cluster)
        self.releases: dict[str, TerraformResource] = {}
        previous: list[TerraformResource] = []
        current_order = None
        current: list[TerraformResource] = []
        for release in load_catalog().ordered():
            if release.order != current_order:
                previous = previous + current
                current, current_order = [], release.order
            resource = TerraformResource(
                self,
                f"release-{release.name}",
                terraform_resource_type="helm_release",
                depends_on=list(previous) or None,
            )
            for key, value in self._release_attrs(release).items():
                resource.add_override(key, value)
            self.releases[release.name] = resource
            current.append(resource)

    def _helm_provider(self, cluster: DataTerraformRemoteStateS3) -> TerraformProvider:
        """The helm provider, talking to the cluster of the cluster stack with an EKS token."""
        helm = TerraformProvider(self, "helm", terraform_resource_type="helm")
        helm.add_override(
            "kubernetes",
            {
                "host": cluster.get_string("cluster_endpoint"),
                "cluster_ca_certificate": Fn.base64decode(cluster.get_string("cluster_ca")),
                "exec": {
                    "api_version": "client.authentication.k8s.io/v1beta1",
                    "command": "aws",
                    "args": [
                        "eks",
                        "get-token",
                        "--region",
                        self.env.region,
                        "--cluster-name",
                        cluster.get_string("cluster_name"),
                    ],
                },
            },
        )
        return helm

    def _output(self, ref: str) -> str:
        """The value of ``<stack>.<output>`` (each upstream stack is read once)."""
        stack, output = ref.split(".", 1)
        if stack not in self.outputs_of:
            self.outputs_of[stack] = self.upstream(stack)
        return self.outputs_of[stack].get_string(output)

    def _release_attrs(self, release: Release) -> dict[str, Any]:
        """The ``helm_release`` arguments: the pinned chart, the environment's values, and the
        values taken from the other stacks' outputs."""
        values = release_values(release, self.env)
        attrs: dict[str, Any] = {
            "name": release.name,
            "repository": release.repository,
            "chart": release.chart,
            "version": release.version,
            "namespace": release.namespace,
            "create_namespace": True,
            "atomic": True,
            "wait": True,
            "timeout": 900,
            "values": [yaml.safe_dump(values, sort_keys=True)],
        }
        if release.set_from:
            attrs["set"] = [
                {"name": path, "value": self._output(ref)}
                for path, ref in sorted(release.set_from.items())
            ]
        return attrs
