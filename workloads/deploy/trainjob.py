"""Fine-tuning on the cluster: a Kubeflow Trainer ``TrainJob`` running ``tuneops train``.

The job runs the same entrypoint as a laptop run, under ``torchrun`` with N nodes x M GPUs
(``configs/deploy/<env>.yaml`` → ``training``). Kubeflow Trainer's torch runtime sets the
``PET_*`` variables (node rank, master address, processes per node) that torchrun reads, so the
command carries no rendezvous flags. The pods run as the trainer's service account (IRSA gives
them S3 access), tolerate the GPU taint, select the GPU nodes, read the dataset snapshot from S3
and copy checkpoints and outputs back to S3.

``run_on_cluster`` is what ``tuneops train --on-cluster ENV`` calls. Each pod first stages the
dataset snapshot from S3 (``workloads.deploy.stage``), then execs torchrun.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.paths import REPO_ROOT
from workloads.deploy.config import DeployConfig, load_deploy_config
from workloads.deploy.validate import validate_trainjob

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
PATCH_MANAGER = "tuneops.io/deploy"
WORKDIR_OUTPUT = "/workspace/output"


def _config_arg(config_path: Path) -> str:
    """The train config as a path inside the image (the repository layout is kept there)."""
    path = Path(config_path)
    if path.is_absolute():
        try:
            return str(path.resolve().relative_to(REPO_ROOT))
        except ValueError as exc:
            raise UserError(
                f"{path} is outside the repository, so the training image does not have it; "
                "put the config under configs/train/"
            ) from exc
    return str(path)


def job_name(cfg: DeployConfig, config_path: Path, overrides: list[str], unique: bool) -> str:
    """``tuneops-train-<hash>``; the hash covers the inputs, plus a random part when submitting."""
    digest = hashlib.sha256(
        json.dumps([cfg.env, str(config_path), overrides], sort_keys=True).encode()
    ).hexdigest()[:8]
    suffix = f"-{uuid.uuid4().hex[:5]}" if unique else ""
    return f"tuneops-train-{digest}{suffix}"


def dataset_ref(config_path: Path, env: str, overrides: list[str]) -> str:
    """The dataset the run trains on: the last ``dataset=`` override, else the config's."""
    for item in reversed(overrides):
        key, _, value = item.partition("=")
        if key.strip() == "dataset" and value.strip():
            return value.strip()
    from tuneops.core.config import deep_merge, overlay_path, read_yaml

    path = Path(config_path) if Path(config_path).is_absolute() else REPO_ROOT / config_path
    data = read_yaml(path)
    extra = overlay_path(path, env)
    if extra is not None:
        data = deep_merge(data, read_yaml(extra))
    value = data.get("dataset")
    if not isinstance(value, str) or not value:
        raise UserError(f"{path}: no dataset set; pass --dataset <name>[/<id>]")
    return value


def train_command(
    cfg: DeployConfig, config_path: Path, overrides: list[str], name: str
) -> list[str]:
    """Stage the snapshot from S3, then `tuneops train` under torchrun with the same config."""
    training = cfg.training
    config_arg = _config_arg(config_path)
    output = f"{training.output_uri.rstrip('/')}/{name}"
    sets = [item for item in overrides if item.partition("=")[0].strip() != "dataset"]
    command = [
        "python",
        "-m",
        "workloads.deploy.stage",
        "--from",
        training.data_uri,
        "--dataset",
        dataset_ref(config_path, cfg.env, overrides),
        "--",
        "torchrun",
        "--no-python",
        "tuneops",
        "train",
        "--env",
        cfg.env,
        "--config",
        config_arg,
        "--set",
        f"output_dir={WORKDIR_OUTPUT}",
        "--set",
        f"checkpoint.uri={output}/checkpoints",
        "--set",
        f"run_name={name}",
    ]
    for item in sets:
        command += ["--set", item]
    return command


def build_trainjob(
    cfg: DeployConfig,
    config_path: Path,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """The TrainJob manifest (validated against Kubeflow Trainer's API models)."""
    overrides = list(overrides or [])
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key.sub=value")
    training = cfg.training
    name = name or job_name(cfg, config_path, overrides, unique=False)
    output = f"{training.output_uri.rstrip('/')}/{name}"
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
    env = {
        "TUNEOPS_OUTPUT_URI": output,
        "TUNEOPS_ENV": cfg.env,
        **training.env,
    }
    pod_spec: dict[str, Any] = {"serviceAccountName": training.service_account}
    if gpus:
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

    trainer: dict[str, Any] = {
        "image": cfg.training_image(),
        "command": train_command(cfg, config_path, overrides, name),
        "numNodes": training.num_nodes,
        "numProcPerNode": max(gpus, 1),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    if resources:
        trainer["resourcesPerNode"] = resources
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": training.runtime_kind, "name": training.runtime},
        "trainer": trainer,
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": training.trainer_job,
                                    "template": {"spec": {"template": {"spec": pod_spec}}},
                                }
                            ]
                        }
                    }
                },
            }
        ],
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


def run_on_cluster(env: str, config_path: Path, overrides: list[str], dry_run: bool) -> None:
    """Build the TrainJob for ``env``; print it (dry run) or submit it and follow its status."""
    cfg = load_deploy_config(env)
    manifest = build_trainjob(cfg, Path(config_path), overrides)
    if dry_run:
        print(yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False, width=100), end="")
        return
    name = job_name(cfg, Path(config_path), list(overrides), unique=True)
    manifest = build_trainjob(cfg, Path(config_path), overrides, name=name)
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
    outputs = f"{cfg.training.output_uri.rstrip('/')}/{name}"
    print(f"TrainJob {name} complete; outputs under {outputs}")
