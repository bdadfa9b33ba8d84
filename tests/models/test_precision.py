"""bf16, fp16 or fp32 by what the hardware offers, decided in one place for training,
evaluation, serving and the benchmarks. Each CPU and GPU kind is handed in, so the test does not
depend on the machine that runs it: AMX-BF16 (Sapphire Rapids and later), AVX512-BF16 (Cooper
Lake, Zen 4), AVX512 without bf16 (Skylake-SP: oneDNN only emulates bf16), AVX2 only (no oneDNN
bf16 path); GPUs with bf16 units (compute capability 8.0 on) and without (Turing, Volta)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tuneops.core.errors import UserError
from workloads.models import precision
from workloads.models.precision import CpuCapability, GpuCapability, choose_precision

BASE = {"sse4_2", "avx", "avx2", "fma", "f16c"}
AVX512 = BASE | {"avx512f", "avx512dq", "avx512bw", "avx512vl"}
AMX = CpuCapability(frozenset(AVX512 | {"avx512_bf16", "amx_tile", "amx_bf16"}), True)
AVX512_BF16 = CpuCapability(frozenset(AVX512 | {"avx512_bf16"}), True)
AVX512_ONLY = CpuCapability(frozenset(AVX512), True)
AVX2_ONLY = CpuCapability(frozenset(BASE), False)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
A100 = GpuCapability("NVIDIA A100-SXM4-80GB", (8, 0))
H100 = GpuCapability("NVIDIA H100 80GB HBM3", (9, 0))
T4 = GpuCapability("Tesla T4", (7, 5))
V100 = GpuCapability("Tesla V100-SXM2-16GB", (7, 0))

# (capability, what auto picks, words its reason must contain)
CASES = {
    "amx-bf16": (AMX, "bfloat16", ["amx_bf16", "oneDNN has a bf16 path"]),
    "avx512-bf16": (AVX512_BF16, "bfloat16", ["avx512_bf16", "oneDNN has a bf16 path"]),
    "avx512-emulated": (AVX512_ONLY, "float32", ["avx512bw", "emulated"]),
    "avx2-only": (AVX2_ONLY, "float32", ["avx2", "no bf16 path"]),
}


@pytest.fixture
def this_cpu_is(monkeypatch):
    """Make every caller see the given CPU: ``detect_cpu`` is what they all ask."""

    def use(cpu: CpuCapability) -> None:
        monkeypatch.setattr(precision, "detect_cpu", lambda: cpu)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return use


@pytest.mark.parametrize("kind", CASES)
def test_auto_picks_by_capability_and_says_why(kind):
    cpu, dtype, words = CASES[kind]
    chosen = choose_precision("auto", CPU, cpu)
    assert chosen.dtype_name == dtype
    for word in words:
        assert word in chosen.reason, chosen.reason
    assert chosen.line() == f"{chosen.short} ({chosen.reason})"


@pytest.mark.parametrize("kind", ["avx512-emulated", "avx2-only"])
def test_bf16_asked_for_where_it_is_emulated_is_honoured_with_a_warning(kind, caplog):
    cpu, _, words = CASES[kind]
    with caplog.at_level(logging.WARNING, logger="workloads.models.precision"):
        chosen = choose_precision("bf16", CPU, cpu)
    assert chosen.dtype_name == "bfloat16" and chosen.emulated
    assert chosen.reason.startswith("bf16 as configured, emulated: ")
    for word in words:
        assert word in chosen.reason, chosen.reason
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert chosen.reason in caplog.records[0].getMessage()


@pytest.mark.parametrize("kind", ["amx-bf16", "avx512-bf16"])
def test_bf16_asked_for_where_it_is_native_is_not_warned(kind, caplog):
    with caplog.at_level(logging.WARNING, logger="workloads.models.precision"):
        chosen = choose_precision("bfloat16", CPU, CASES[kind][0])
    assert chosen.dtype_name == "bfloat16" and not chosen.emulated
    assert "as configured" in chosen.reason and not caplog.records


def test_fp32_is_always_honoured_and_fp16_needs_a_gpu(caplog):
    with caplog.at_level(logging.WARNING, logger="workloads.models.precision"):
        for cpu, _, _ in CASES.values():
            chosen = choose_precision("fp32", CPU, cpu)
            assert chosen.dtype_name == "float32" and not chosen.emulated
    assert not caplog.records
    with pytest.raises(UserError, match="needs a GPU"):
        choose_precision("fp16", CPU, AMX)
    with pytest.raises(UserError, match="not one of auto, float32, bfloat16, float16"):
        choose_precision("fp8", CPU, AMX)


# (GPU, what auto picks, words its reason must contain)
GPU_CASES = {
    "h100": (H100, "bfloat16", ["H100", "9.0", "has bf16 units"]),
    "a100": (A100, "bfloat16", ["A100", "8.0", "has bf16 units"]),
    "t4": (T4, "float16", ["T4", "7.5", "no bf16 units: fp16"]),
    "v100": (V100, "float16", ["V100", "7.0", "no bf16 units: fp16"]),
}


@pytest.mark.parametrize("kind", GPU_CASES)
def test_a_gpu_decides_by_its_compute_capability(kind):
    gpu, dtype, words = GPU_CASES[kind]
    chosen = choose_precision("auto", CUDA, AVX2_ONLY, gpu)
    assert chosen.dtype_name == dtype and not chosen.emulated
    for word in words:
        assert word in chosen.reason, chosen.reason


def test_bf16_asked_for_on_a_gpu_without_bf16_units_is_honoured_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="workloads.models.precision"):
        chosen = choose_precision("bf16", CUDA, gpu=T4)
        native = choose_precision("bf16", CUDA, gpu=A100)
        half = choose_precision("fp16", CUDA, gpu=T4)
    assert chosen.dtype_name == "bfloat16" and chosen.emulated and "T4" in chosen.reason
    assert not native.emulated and not half.emulated and half.dtype_name == "float16"
    assert len(caplog.records) == 1 and "emulated" in caplog.records[0].getMessage()


def test_the_gpu_is_read_from_its_capability_not_from_emulated_support(monkeypatch):
    """torch.cuda.is_bf16_supported() says True on a T4 (it can emulate bf16); the choice
    goes by the compute capability instead."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4")
    chosen = choose_precision("auto", CUDA, AVX2_ONLY)
    assert chosen.dtype_name == "float16"
    assert chosen.reason == "GPU Tesla T4 (compute capability 7.5) has no bf16 units: fp16 instead"


def test_this_machine_is_read_from_proc_cpuinfo_and_torch():
    """``detect_cpu`` reads the flags of /proc/cpuinfo and torch's own view of the CPU."""
    cpu = precision.detect_cpu()
    assert cpu.torch_isa == torch.backends.cpu.get_cpu_capability()
    assert cpu.onednn_bf16 == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    info = Path("/proc/cpuinfo")
    if info.exists():
        line = next(x for x in info.read_text().splitlines() if x.startswith("flags"))
        assert cpu.flags == frozenset(line.split(":", 1)[1].split())
    features = cpu.features()
    assert f"torch kernels {cpu.torch_isa}" in features
    assert f"oneDNN bf16 path {'yes' if cpu.onednn_bf16 else 'no'}" in features


def test_the_features_line_names_what_matters_for_matmuls():
    cpu = CpuCapability(
        frozenset(AVX512 | {"avx512_bf16", "amx_tile", "amx_bf16", "sse3"}),
        True,
        torch_isa="AVX512",
        model="Intel(R) Xeon(R) Platinum 8480+",
    )
    assert cpu.features() == (
        "Intel(R) Xeon(R) Platinum 8480+: avx2 fma avx512f avx512bw avx512_bf16 amx_tile "
        "amx_bf16; torch kernels AVX512; oneDNN bf16 path yes"
    )
    bare = CpuCapability(frozenset(BASE), False, isa_limit="AVX2")
    assert bare.features() == (
        "CPU: avx2 fma; torch kernels unknown; oneDNN bf16 path no; ONEDNN_MAX_CPU_ISA=AVX2"
    )


def test_onednn_limited_by_the_environment_is_named():
    """``ONEDNN_MAX_CPU_ISA=AVX2`` makes any CPU behave as an AVX2-only one (oneDNN reads it
    once, at its first use, hence a fresh process)."""
    code = (
        "from workloads.models.precision import choose_precision, detect_cpu, pick_device\n"
        "cpu = detect_cpu()\n"
        "print(cpu.isa_limit, cpu.onednn_bf16, choose_precision('auto', pick_device()).line())"
    )
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    limit, onednn, line = done.stdout.strip().split(" ", 2)
    assert (limit, onednn) == ("AVX2", "False")
    assert line.startswith("fp32 (") and "limited to AVX2" in line


@pytest.mark.parametrize("kind", CASES)
def test_training_takes_the_choice(this_cpu_is, kind):
    from workloads.train.config import load_train_config
    from workloads.train.preflight import train_precision

    cpu, dtype, _ = CASES[kind]
    this_cpu_is(cpu)
    chosen = train_precision(load_train_config())
    assert chosen.dtype_name == dtype
    assert chosen == choose_precision("auto", CPU, cpu)


@pytest.mark.parametrize("kind", ["avx512-bf16", "avx2-only"])
def test_evaluation_and_serving_load_in_the_choice(this_cpu_is, tiny_model_dir, kind):
    """Evaluation and serving both load through ``load_model`` with their config's dtype."""
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.generate import LocalGenerator
    from workloads.models.load import load_model
    from workloads.serve.config import load_serve_config

    cpu, dtype, _ = CASES[kind]
    this_cpu_is(cpu)
    gen_cfg = load_eval_config(overrides=["generation.cpu_prepack=false"]).generation
    generator = LocalGenerator(str(tiny_model_dir), gen_cfg)
    assert generator.precision == dtype
    assert generator.precision_reason == choose_precision("auto", CPU, cpu).reason
    serve_dtype = load_serve_config().dtype
    loaded = load_model(str(tiny_model_dir), dtype=serve_dtype)
    assert loaded.dtype == getattr(torch, dtype)
    assert next(loaded.model.parameters()).dtype == getattr(torch, dtype)


def test_every_shipped_config_leaves_the_choice_to_the_hardware():
    """No config hard-codes bf16 for the CPU: train, eval and serve all say auto."""
    from workloads.evaluate.config import load_eval_config
    from workloads.serve.config import load_serve_config
    from workloads.train.config import load_train_config

    assert load_train_config(env="local").precision == "auto"
    assert load_train_config().precision == "auto"
    assert load_eval_config().generation.dtype == "auto"
    assert load_serve_config().dtype == "auto"


def test_an_explicit_bf16_on_an_emulating_cpu_loads_and_says_so(this_cpu_is, tiny_model_dir):
    """Serving and evaluation load what was asked for; the reason they print says emulated."""
    from workloads.models.load import load_model

    this_cpu_is(AVX2_ONLY)
    loaded = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert "emulated" in loaded.precision_reason and "no bf16 path" in loaded.precision_reason
