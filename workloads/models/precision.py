"""The one place that decides the device and the floating-point precision.

CPUs differ from machine to machine: some have native bf16 dot products (AMX-BF16,
AVX512-BF16), some only emulate bf16 through AVX512-BW (several times slower than fp32), and
some (AVX2 only) have no oneDNN bf16 path at all. ``bf16`` is chosen on a CPU only when oneDNN
has a bf16 path *and* the CPU executes bf16 natively; on a GPU when CUDA says it supports it.
Training, evaluation, serving and the benchmarks all ask here, and print ``Precision.reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tuneops.core.errors import UserError

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
# Training spells precisions the way TRL does.
TRAIN_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    dtype_name: str  # float32, bfloat16 or float16
    reason: str

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def short(self) -> str:
        return {v: k for k, v in TRAIN_NAMES.items()}[self.dtype_name]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_bf16() -> tuple[bool, str]:
    """(use bf16 on this CPU, why): native bf16 instructions and a oneDNN bf16 path."""
    onednn = cpu_runs_bf16()
    native = sorted(set(NATIVE_BF16_FLAGS) & _cpu_flags())
    if onednn and native:
        return True, f"CPU has {'+'.join(native)} and oneDNN has a bf16 path"
    if not onednn:
        return False, "oneDNN has no bf16 path on this CPU (no AVX512-BW/AVX-NE-CONVERT)"
    return False, "this CPU only emulates bf16 (no AMX-BF16 or AVX512-BF16); fp32 is faster"


def cpu_supports_bf16() -> bool:
    """True when bf16 is the fast choice on this CPU."""
    return cpu_bf16()[0]


def cpu_runs_bf16() -> bool:
    """True when oneDNN can run bf16 here at all (natively or emulated)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"device {name!r} is not a torch device (try cpu, cuda, cuda:0)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is visible; use device: auto")
    return device


def choose_precision(name: str, device) -> Precision:
    """``auto`` picks what the hardware runs fastest; an explicit name is checked against it.

    ``name`` is ``auto``, a torch dtype name (``bfloat16``) or a training name (``bf16``).
    """
    import torch

    wanted = TRAIN_NAMES.get(name, name)
    if wanted != "auto" and wanted not in DTYPES:
        raise UserError(f"dtype {name!r} is not one of auto, {', '.join(DTYPES)}")
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if wanted == "auto":
            wanted = "bfloat16" if bf16 else "float16"
            return Precision(wanted, f"GPU {'supports' if bf16 else 'lacks'} bf16")
        return Precision(wanted, f"{name} as configured, on the GPU")
    ok, why = cpu_bf16()
    if wanted == "auto":
        return Precision("bfloat16" if ok else "float32", why)
    if wanted == "float16":
        raise UserError(f"{name} needs a GPU; use auto, bfloat16 or float32 on the CPU")
    if wanted == "bfloat16" and not ok and not cpu_runs_bf16():
        raise UserError(f"{name} on this CPU: {why}; use auto or float32")
    return Precision(wanted, f"{name} as configured ({why})")


def pick_dtype(name: str, device):
    """The torch dtype for ``name`` on ``device`` (see ``choose_precision``)."""
    return choose_precision(name, device).dtype
