"""Where a run lives and what it knows: its directory and name, its resume point, the ranks, and
the ``TrainRun`` that the phases of one training hand to each other."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.paths import cache_dir
from workloads.models.precision import Precision
from workloads.train.config import TrainConfig

log = logging.getLogger(__name__)

RUN_STATE = "run_state.json"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainRun:
    """One training, decided before the trainer is built and handed from phase to phase."""

    cfg: TrainConfig
    precision: Precision
    snapshot: Any  # workloads.data.snapshot.Snapshot
    splits: Any  # workloads.train.data.PreparedSplits
    model_dir: Path
    run_name: str
    out_dir: Path
    world: int = 1
    is_main: bool = True
    remote: str | None = None  # the s3:// copy of the checkpoints
    resume_from: str | None = None
    config_source: str | None = None
    tracker: Any = None  # workloads.train.tracking.Tracker on rank 0, else None
    threads: Any = None  # () -> CPU threads for the next step (None: as at the start)

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / CHECKPOINTS

    @property
    def adapter_dir(self) -> Path:
        return self.out_dir / "adapter"

    @property
    def merged_dir(self) -> Path | None:
        return self.out_dir / "merged" if self.cfg.merge else None

    def previous_state(self) -> dict[str, Any]:
        """``run_state.json`` of an earlier start of this run (empty when none)."""
        path = self.out_dir / RUN_STATE
        return json.loads(path.read_text()) if path.is_file() else {}


def default_run_name(cfg: TrainConfig, dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{dataset_name}-{cfg.method}-{stamp}"


def runs_root() -> Path:
    return cache_dir() / "runs"


def latest_run_dir() -> Path | None:
    root = runs_root()
    if not root.is_dir():
        return None
    dirs = [p for p in root.iterdir() if (p / RUN_STATE).is_file()]
    return max(dirs, key=lambda p: (p / RUN_STATE).stat().st_mtime) if dirs else None


def resolve_output(
    cfg: TrainConfig, dataset_name: str, *, resume: bool, output: Path | None
) -> tuple[str, Path]:
    """Run name and output directory; ``resume`` without either continues the latest run."""
    out = output or cfg.output_dir
    if out is not None:
        out = Path(out).expanduser().resolve()
        return cfg.run_name or out.name, out
    if cfg.run_name:
        return cfg.run_name, runs_root() / cfg.run_name
    if resume:
        latest = latest_run_dir()
        if latest is None:
            raise UserError(f"--resume: no earlier run under {runs_root()}; give --output DIR")
        return latest.name, latest
    name = broadcast(default_run_name(cfg, dataset_name))
    return name, runs_root() / name


def find_resume_point(
    ckpt_dir: Path, remote: str | None, is_main: bool, retry: Any = None
) -> str | None:
    """The newest valid checkpoint (local or the S3 copy), chosen on rank 0 for every rank;
    ``retry`` (``checkpoint.upload_retry``) governs the S3 listing and download."""
    from workloads.train import checkpoints

    resume_from = None
    if is_main:
        found = checkpoints.find_resume_point(ckpt_dir, remote, retry)
        resume_from = str(found) if found else None
    resume_from = broadcast(resume_from)
    if resume_from is None:
        log.warning("--resume: no valid checkpoint in %s; starting from step 0", ckpt_dir)
    return resume_from


# ---------------------------------------------------------------------------- ranks


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (the value itself outside a distributed run)."""
    import torch.distributed as dist

    if _distributed():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def barrier() -> None:
    import torch.distributed as dist

    if _distributed():
        dist.barrier()


def rank_divergence(model) -> float:
    """Largest difference between ranks of any trainable parameter (0.0 when they agree)."""
    import torch
    import torch.distributed as dist

    if not _distributed():
        return 0.0
    params = [p.detach().float().flatten() for p in model.parameters() if p.requires_grad]
    flat = torch.cat(params).cpu()
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)
