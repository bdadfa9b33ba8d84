"""Policy as code: checkov's custom checks of the project (``policies/terraform``,
``policies/kubernetes``), the one skip list (``policies/skips.yaml``) and the gate that runs them
(``policies.gate``), which ``infra`` calls over synthesized stacks and ``workloads.deploy`` over
rendered manifests."""
