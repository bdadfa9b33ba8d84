"""Utilization, as ``make bench-train`` and ``make bench-serve`` print it: the CPU features
found, the precision and why, this machine's matmul peak measured in the same run (same dtype,
same torch thread count) and the achieved model FLOP/s as a fraction of it
(``workloads.models.flops`` counts the FLOPs and measures the peak)."""

from __future__ import annotations

from dataclasses import dataclass

# Achieved model FLOP/s over the measured matmul peak that the benchmarks aim for.
TRAIN_GOAL = 0.50  # training, the project's defaults
SERVE_GOAL = 0.30  # serving, at concurrency 32
# Side of the square matrices of the peak measurement (``--peak-size``).
PEAK_SIZE = 2048


def hardware_line(precision, threads: int) -> str:
    """The CPU's matmul-relevant features, the thread count and the precision with its why."""
    from workloads.models.precision import detect_cpu

    return f"CPU {detect_cpu().features()}; {threads} torch thread(s); precision {precision.line()}"


def measure_peak(precision, threads: int, size: int = PEAK_SIZE) -> float:
    """Matmul FLOP/s here in the run's dtype and thread count (best of a few repeats)."""
    from workloads.models.flops import matmul_peak

    return matmul_peak(precision.dtype, threads=threads, size=size)


@dataclass(frozen=True)
class Utilization:
    label: str
    flops_per_s: float  # achieved model FLOP/s
    peak: float  # matmul FLOP/s measured in the same run
    dtype: str
    goal: float | None = None

    @property
    def fraction(self) -> float:
        return self.flops_per_s / self.peak if self.peak > 0 else 0.0

    @property
    def met(self) -> bool:
        return self.goal is not None and self.fraction >= self.goal

    def line(self) -> str:
        text = (
            f"{self.label}: {self.flops_per_s / 1e12:.4f} TFLOP/s of model FLOPs = "
            f"{self.fraction:.1%} of the {self.peak / 1e12:.4f} TFLOP/s {self.dtype} matmul peak"
        )
        if self.goal is not None:
            text += f" (goal >= {self.goal:.0%}: {'met' if self.met else 'NOT met'})"
        return text

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "model_flops_per_s": self.flops_per_s,
            "matmul_peak_flops_per_s": self.peak,
            "dtype": self.dtype,
            "fraction": self.fraction,
            "goal": self.goal,
            "met": self.met,
        }


class ReplyFlops:
    """Model FLOPs of the server's replies, summed per concurrency level: ``measure`` sets
    ``level``; replies outside a level (the warm-up) are not counted."""

    def __init__(self, model_dir: str) -> None:
        from transformers import AutoConfig

        from workloads.models.flops import ModelShape

        self.shape = ModelShape.from_config(AutoConfig.from_pretrained(model_dir))
        self.level: int | None = None
        self.by_level: dict[int, float] = {}

    def tokens_of(self, reply: dict) -> int:
        """The reply's output tokens, counting its model FLOPs on the way."""
        from workloads.models.flops import generation_flops

        usage = reply["usage"]
        if self.level is not None:
            flops = generation_flops(self.shape, usage["prompt_tokens"], usage["completion_tokens"])
            self.by_level[self.level] = self.by_level.get(self.level, 0.0) + flops
        return usage["completion_tokens"]


def serve_utilization(
    results: dict, flops: ReplyFlops, peak: float, dtype: str
) -> list[Utilization]:
    """The server's model FLOP/s at each level over the matmul peak; the goal at the last
    (highest) level."""
    rows = []
    for row in results["server"]:
        level = row["concurrency"]
        achieved = flops.by_level.get(level, 0.0) / max(row["wall_s"], 1e-9)
        goal = SERVE_GOAL if row is results["server"][-1] else None
        rows.append(Utilization(f"server at {level}", achieved, peak, dtype, goal))
    return rows
