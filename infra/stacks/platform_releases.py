"""Platform releases: every Helm release of the ``platform/`` catalog, in install order, wired
to the cluster and the data stack through their outputs.

No cdktf bindings are generated for the helm provider (it is not mirrored here), so releases are
declared as plain ``helm_release`` resources with the provider pinned in required_providers.
"""

from __future__ import annotations

import yaml
from cdktf import Fn, TerraformProvider, TerraformResource
from constructs import Construct

from infra.catalog import load_catalog, values_for
from infra.config import Environment
from infra.stacks.base import EnvStack

HELM_PROVIDER_VERSION = "2.17.0"


class PlatformStack(EnvStack):
    stack_kind = "platform"

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env)
        cluster = self.upstream("cluster")
        data = self.upstream("data")
        self.add_override(
            "terraform.required_providers.helm",
            {"source": "hashicorp/helm", "version": HELM_PROVIDER_VERSION},
        )
        self.helm = TerraformProvider(self, "helm", terraform_resource_type="helm")
        self.helm.add_override(
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
                        env.region,
                        "--cluster-name",
                        cluster.get_string("cluster_name"),
                    ],
                },
            },
        )
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
            values = values_for(release, env.platform.values_overlay)
            attrs = {
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
                    {"name": path, "value": data.get_string(output)}
                    for path, output in sorted(release.set_from.items())
                ]
            for key, value in attrs.items():
                resource.add_override(key, value)
            self.releases[release.name] = resource
            current.append(resource)
