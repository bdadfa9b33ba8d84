"""The one place that decides the device and the floating-point precision.

CPUs differ from machine to machine: some have native bf16 dot products (AMX-BF16,
AVX512-BF16), some only emulate bf16 through AVX512-BW (several times slower than fp32), and
some (AVX2 only) have no oneDNN bf16 path at all. ``bf16`` is chosen on a CPU only when oneDNN
has a bf16 path *and* the CPU executes bf16 natively; on a GPU only when it has bf16 units
(compute capability 8.0 and later), else fp16. Training, evaluation, serving and the
benchmarks all ask ``choose_precision`` and print ``Precision.line()``. What the hardware offers
is read once (``detect_cpu``, ``detect_gpu``); tests hand in a ``CpuCapability`` or a
``GpuCapability`` of their own instead.

An explicit choice (``bfloat16``, ``bf16``, ``float32`` ...) is honoured; where it is emulated
rather than run natively it is logged as a warning and its reason says so. Only fp16 on a CPU
is refused: training cannot run it there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tuneops.core.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
# Training spells precisions the way TRL does.
TRAIN_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Vector extensions named in the reasons, widest first.
ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512bw", "avx512f", "avx2")
# The /proc/cpuinfo flags that matter to matmul speed, listed where a report names the CPU.
FEATURE_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "avx_ne_convert",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# The first compute capability with bf16 tensor cores (Ampere).
GPU_BF16_FROM = (8, 0)


@dataclass(frozen=True)
class Precision:
    dtype_name: str  # float32, bfloat16 or float16
    reason: str
    emulated: bool = False  # an explicit choice the hardware only emulates

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def short(self) -> str:
        return {v: k for k, v in TRAIN_NAMES.items()}[self.dtype_name]

    def line(self) -> str:
        """``bf16 (why)``: what reports print."""
        return f"{self.short} ({self.reason})"


@dataclass(frozen=True)
class CpuCapability:
    """What the CPU offers for bf16: its instruction-set flags and whether this torch's oneDNN
    can run bf16 on it at all (natively or emulated)."""

    flags: frozenset[str]
    onednn_bf16: bool
    isa_limit: str | None = None  # ONEDNN_MAX_CPU_ISA, when set
    torch_isa: str | None = None  # torch.backends.cpu.get_cpu_capability(): its kernels' ISA
    model: str | None = None  # "model name" in /proc/cpuinfo

    @property
    def native_bf16(self) -> list[str]:
        return sorted(set(NATIVE_BF16_FLAGS) & self.flags)

    @property
    def widest(self) -> str:
        """The widest vector extension found, as /proc/cpuinfo spells it."""
        return next((flag for flag in ISA_FLAGS if flag in self.flags), "no AVX2")

    def described(self) -> str:
        limit = f", oneDNN limited to {self.isa_limit}" if self.isa_limit else ""
        return f"CPU has {self.widest}{limit}"

    def features(self) -> str:
        """One line for reports: the CPU, its matmul-relevant flags, torch's kernel ISA and
        whether oneDNN has a bf16 path."""
        found = [flag for flag in FEATURE_FLAGS if flag in self.flags] or ["none of note"]
        parts = [
            f"{self.model or 'CPU'}: {' '.join(found)}",
            f"torch kernels {self.torch_isa or 'unknown'}",
            f"oneDNN bf16 path {'yes' if self.onednn_bf16 else 'no'}",
        ]
        if self.isa_limit:
            parts.append(f"ONEDNN_MAX_CPU_ISA={self.isa_limit}")
        return "; ".join(parts)


@dataclass(frozen=True)
class GpuCapability:
    """What a CUDA GPU offers: its name, compute capability and whether it has bf16 units."""

    name: str
    compute: tuple[int, int]

    @property
    def native_bf16(self) -> bool:
        return self.compute >= GPU_BF16_FROM

    def described(self) -> str:
        return f"GPU {self.name} (compute capability {self.compute[0]}.{self.compute[1]})"


def _cpuinfo() -> dict[str, str]:
    """The first CPU's ``flags`` and ``model name`` lines of /proc/cpuinfo ({} elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "model name") and key not in found:
            found[key] = value.strip()
    return found


def cpu_runs_bf16() -> bool:
    """True when oneDNN can run bf16 here at all (natively or emulated)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _torch_isa() -> str | None:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


@lru_cache(maxsize=1)
def detect_cpu() -> CpuCapability:
    """This machine's CPU (read once per process)."""
    info = _cpuinfo()
    return CpuCapability(
        flags=frozenset(info.get("flags", "").split()),
        onednn_bf16=cpu_runs_bf16(),
        isa_limit=os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
        torch_isa=_torch_isa(),
        model=info.get("model name") or None,
    )


def detect_gpu(device) -> GpuCapability:
    """The CUDA GPU behind ``device`` (a ``torch.device`` of type cuda)."""
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return GpuCapability(name=torch.cuda.get_device_name(index), compute=(major, minor))


def cpu_bf16(cpu: CpuCapability | None = None) -> tuple[bool, str]:
    """(use bf16 on this CPU, why): native bf16 instructions and a oneDNN bf16 path."""
    cpu = cpu or detect_cpu()
    native = cpu.native_bf16
    if cpu.onednn_bf16 and native:
        return True, f"CPU has {'+'.join(native)} and oneDNN has a bf16 path"
    if not cpu.onednn_bf16:
        return False, (
            f"{cpu.described()}: oneDNN has no bf16 path here (it needs AVX512-BW or "
            "AVX-NE-CONVERT)"
        )
    return False, (
        f"{cpu.described()} but no AMX-BF16 or AVX512-BF16: bf16 would only be emulated, "
        "slower than fp32"
    )


def cpu_supports_bf16(cpu: CpuCapability | None = None) -> bool:
    """True when bf16 is the fast choice on this CPU."""
    return cpu_bf16(cpu)[0]


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


def _on_gpu(name: str, wanted: str, gpu: GpuCapability) -> Precision:
    if wanted == "auto":
        if gpu.native_bf16:
            return Precision("bfloat16", f"{gpu.described()} has bf16 units")
        return Precision("float16", f"{gpu.described()} has no bf16 units: fp16 instead")
    if wanted == "bfloat16" and not gpu.native_bf16:
        return _emulated(name, wanted, f"{gpu.described()} has no bf16 units")
    return Precision(wanted, f"{name} as configured, on {gpu.described()}")


def _on_cpu(name: str, wanted: str, cpu: CpuCapability) -> Precision:
    ok, why = cpu_bf16(cpu)
    if wanted == "auto":
        return Precision("bfloat16" if ok else "float32", why)
    if wanted == "float16":
        raise UserError(f"{name} needs a GPU; use auto, bfloat16 or float32 on the CPU")
    if wanted == "bfloat16" and not ok:
        return _emulated(name, wanted, why)
    return Precision(wanted, f"{name} as configured ({why})")


def _emulated(name: str, wanted: str, why: str) -> Precision:
    reason = f"{name} as configured, emulated: {why}; auto would be faster"
    log.warning("precision %s", reason)
    return Precision(wanted, reason, emulated=True)


def choose_precision(
    name: str,
    device,
    cpu: CpuCapability | None = None,
    gpu: GpuCapability | None = None,
) -> Precision:
    """``auto`` picks what the hardware runs fastest; an explicit name is honoured, with a
    warning where the hardware only emulates it.

    ``name`` is ``auto``, a torch dtype name (``bfloat16``) or a training name (``bf16``);
    ``cpu`` and ``gpu`` are this machine's unless a test hands them in.
    """
    wanted = TRAIN_NAMES.get(name, name)
    if wanted != "auto" and wanted not in DTYPES:
        raise UserError(f"dtype {name!r} is not one of auto, {', '.join(DTYPES)}")
    if device.type == "cuda":
        return _on_gpu(name, wanted, gpu or detect_gpu(device))
    return _on_cpu(name, wanted, cpu or detect_cpu())


def pick_dtype(name: str, device):
    """The torch dtype for ``name`` on ``device`` (see ``choose_precision``)."""
    return choose_precision(name, device).dtype
