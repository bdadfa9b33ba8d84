"""Fine-tuning on the cluster: a Kubeflow Trainer ``TrainJob`` running ``tuneops train``.

The job runs the same entrypoint as a laptop run, under ``torchrun`` with N nodes x M GPUs
(``configs/deploy/<env>.yaml`` → ``training``). Kubeflow Trainer's torch runtime sets the
``PET_*`` variables (node rank, master address, processes per node) that torchrun reads, so the
command carries no rendezvous flags. The pods run as the trainer's service account (IRSA gives
them S3 access), tolerate the GPU taint, select the GPU nodes, read the dataset snapshot from S3
and copy checkpoints and outputs back to S3.

``run_on_cluster`` is what ``tuneops train --on-cluster --env ENV`` calls, with the config it
validated (overlay and ``--set`` overrides applied). The job carries that config, serialised
from the object, in the variable ``TUNEOPS_TRAIN_CONFIG``; every process reads it back with
``tuneops train --config-from-env``. Each pod first stages the dataset snapshot from S3
(``workloads.deploy.stage``), then execs torchrun.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

import yaml

from tuneops.core.config import validate
from tuneops.core.errors import MissingToolError, UserError
from workloads.deploy.config import DeployConfig, load_deploy_config
from workloads.deploy.validate import validate_trainjob
from workloads.train.config import TrainConfig, to_yaml

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
PATCH_MANAGER = "tuneops.io/deploy"
WORKDIR_OUTPUT = "/workspace/output"
# The job's whole training config (YAML), which `tuneops train --config-from-env` reads.
TRAIN_CONFIG_VAR = "TUNEOPS_TRAIN_CONFIG"


def job_name(cfg: DeployConfig, train: TrainConfig, unique: bool) -> str:
    """``tuneops-train-<hash>``; the hash covers the inputs, plus a random part when submitting."""
    digest = hashlib.sha256(
        json.dumps([cfg.env, train.model_dump(mode="json")], sort_keys=True).encode()
    ).hexdigest()[:8]
    suffix = f"-{uuid.uuid4().hex[:5]}" if unique else ""
    return f"tuneops-train-{digest}{suffix}"


def output_uri(cfg: DeployConfig, name: str) -> str:
    """Where the job copies its checkpoints and outputs: ``<training.output_uri>/<name>``."""
    return f"{cfg.training.output_uri.rstrip('/')}/{name}"


def job_config(cfg: DeployConfig, train: TrainConfig, name: str) -> TrainConfig:
    """The config the job trains with: ``train`` with the job's run name, the pod's output
    folder, and the checkpoints copied under the job's S3 outputs."""
    data = train.model_dump(mode="json")
    data["run_name"] = name
    data["output_dir"] = WORKDIR_OUTPUT
    data["checkpoint"]["uri"] = f"{output_uri(cfg, name)}/checkpoints"
    return validate(TrainConfig, data, f"the config of TrainJob {name}")


def train_command(cfg: DeployConfig, dataset: str) -> list[str]:
    """Stage the snapshot from S3, then `tuneops train` under torchrun with the job's config.

    The stage step adds ``--set dataset=<name>/<id>`` (the staged copy) to the train command.
    """
    return [
        "python",
        "-m",
        "workloads.deploy.stage",
        "--from",
        cfg.training.data_uri,
        "--dataset",
        dataset,
        "--",
        "torchrun",
        "--no-python",
        "tuneops",
        "train",
        "--config-from-env",
        TRAIN_CONFIG_VAR,
    ]


def _resources(cfg: DeployConfig) -> dict[str, Any]:
    training = cfg.training
    gpus = training.gpus_per_node
    limits = dict(training.resources_per_node.limits)
    requests = dict(training.resources_per_node.requests)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        requests["nvidia.com/gpu"] = str(gpus)
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return resources


def _pod_spec(cfg: DeployConfig) -> dict[str, Any]:
    """Service account; on GPU nodes the GPU taint's toleration and the node selector."""
    training = cfg.training
    pod_spec: dict[str, Any] = {"serviceAccountName": training.service_account}
    if training.gpus_per_node:
        tol = cfg.gpu.toleration
        toleration = {"key": tol.key, "operator": tol.operator, "effect": tol.effect}
        if tol.value is not None and tol.operator == "Equal":
            toleration["value"] = tol.value
        pod_spec["tolerations"] = [toleration]
        selector = training.node_selector
        if selector is None:
            selector = cfg.gpu.node_selector
        if selector:
            pod_spec["nodeSelector"] = dict(selector)
    elif training.node_selector:
        pod_spec["nodeSelector"] = dict(training.node_selector)
    return pod_spec


def _trainer(cfg: DeployConfig, job_cfg: TrainConfig, name: str) -> dict[str, Any]:
    """The TrainJob's ``trainer``: image, command, N nodes x M processes, env, resources."""
    training = cfg.training
    env = {
        "TUNEOPS_OUTPUT_URI": output_uri(cfg, name),
        "TUNEOPS_ENV": cfg.env,
        **training.env,
        TRAIN_CONFIG_VAR: to_yaml(job_cfg),
    }
    trainer: dict[str, Any] = {
        "image": cfg.training_image(),
        "command": train_command(cfg, job_cfg.dataset),
        "numNodes": training.num_nodes,
        "numProcPerNode": max(training.gpus_per_node, 1),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    resources = _resources(cfg)
    if resources:
        trainer["resourcesPerNode"] = resources
    return trainer


def _runtime_patch(cfg: DeployConfig) -> dict[str, Any]:
    """The pod spec, patched into the runtime's trainer job."""
    job = {
        "name": cfg.training.trainer_job,
        "template": {"spec": {"template": {"spec": _pod_spec(cfg)}}},
    }
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}},
    }


def build_trainjob(
    cfg: DeployConfig, train: TrainConfig, *, name: str | None = None
) -> dict[str, Any]:
    """The TrainJob manifest for the validated ``train`` config (validated against Kubeflow
    Trainer's API models). The job carries the whole config; the pods read it back."""
    training = cfg.training
    name = name or job_name(cfg, train, unique=False)
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": training.runtime_kind, "name": training.runtime},
        "trainer": _trainer(cfg, job_config(cfg, train, name), name),
        "runtimePatches": [_runtime_patch(cfg)],
    }
    if training.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = training.active_deadline_seconds
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": training.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "tuneops",
                "app.kubernetes.io/component": "train",
                "tuneops.io/env": cfg.env,
            },
        },
        "spec": spec,
    }
    validate_trainjob(manifest, f"TrainJob {name}")
    return manifest


def _load_kube_config() -> None:
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            kube_config.load_incluster_config()
            return
        except ConfigException:
            pass
    try:
        kube_config.load_kube_config()
    except (ConfigException, FileNotFoundError, OSError) as exc:
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        raise MissingToolError(
            f"no usable kubeconfig ({where}): run `aws eks update-kubeconfig --name <cluster>` "
            "or set KUBECONFIG, or add --dry-run to print the TrainJob instead"
        ) from exc


def submit(manifest: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    _load_kube_config()
    api = client.CustomObjectsApi()
    namespace = manifest["metadata"]["namespace"]
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    except ApiException as exc:
        raise UserError(
            f"the cluster refused TrainJob {manifest['metadata']['name']}: "
            f"{exc.status} {exc.reason}"
        ) from exc
    except Exception as exc:  # urllib3 raises many connection errors; all mean unreachable
        raise MissingToolError(
            f"cannot reach the cluster API ({type(exc).__name__}): check the kubeconfig context"
        ) from exc


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def follow(manifest: dict[str, Any], *, timeout_s: int, poll_s: float) -> str:
    """Poll the TrainJob until it completes or fails; return the final condition type."""
    from kubernetes import client
    from rich.console import Console

    console = Console(stderr=True)
    api = client.CustomObjectsApi()
    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    deadline = time.monotonic() + timeout_s
    seen: set[tuple[str, str]] = set()
    with console.status(f"TrainJob {name}: waiting") as status:
        while time.monotonic() < deadline:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            conditions = _conditions(obj)
            for ctype, cond in sorted(conditions.items()):
                key = (ctype, cond.get("status", ""))
                if key not in seen:
                    seen.add(key)
                    console.print(f"  {ctype}={cond.get('status')} {cond.get('message', '')}")
            for final in ("Complete", "Failed"):
                if conditions.get(final, {}).get("status") == "True":
                    return final
            status.update(f"TrainJob {name}: {', '.join(sorted(conditions)) or 'pending'}")
            time.sleep(poll_s)
    return "Running"


def run_on_cluster(train: TrainConfig, env: str, *, dry_run: bool) -> None:
    """Build the TrainJob of the validated ``train`` config for ``env``; print it (dry run) or
    submit it and follow its status."""
    cfg = load_deploy_config(env)
    if dry_run:
        manifest = build_trainjob(cfg, train)
        print(yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False, width=100), end="")
        return
    name = job_name(cfg, train, unique=True)
    manifest = build_trainjob(cfg, train, name=name)
    submit(manifest)
    ns = manifest["metadata"]["namespace"]
    print(f"submitted TrainJob {name} to namespace {ns} ({env})")
    if cfg.training.follow_timeout_s <= 0:
        return
    final = follow(
        manifest, timeout_s=cfg.training.follow_timeout_s, poll_s=cfg.training.poll_interval_s
    )
    if final == "Failed":
        raise UserError(f"TrainJob {name} failed: `kubectl describe trainjob -n {ns} {name}`")
    if final == "Running":
        print(f"TrainJob {name} still running; follow it with `kubectl get trainjob -n {ns} -w`")
        return
    print(f"TrainJob {name} complete; outputs under {output_uri(cfg, name)}")
