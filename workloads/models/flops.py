"""Model FLOPs of training and generation, counted from the model's config, and this machine's
matmul peak, so that the benchmarks can report utilization: achieved model FLOP/s over the
peak measured in the same run, dtype and thread count.

Counted are the multiply-adds of the matrix products the model needs (2 FLOPs each): the
decoder layers' linear projections, the attention scores (``Q·Kᵀ`` and ``P·V``) and the LM head.
Norms, activations, softmax, rotary embeddings and the embedding lookup are left out (a few
per cent of the work, none of it matmul). Work the hardware does beyond what the result needs
is not model work and is not counted either: padding, masked-out attention, recomputation by
gradient checkpointing. For a Llama-style decoder with ``L`` layers, hidden size ``d``,
``h`` query and ``k`` key/value heads of size ``e``, MLP width ``f`` and vocabulary ``V``:

- one layer's linear weights: ``P = d·h·e + 2·d·k·e + h·e·d + 3·d·f`` (q, k, v, o; gate, up,
  down); the LM head has ``d·V``; ``N = L·P + d·V`` (the parameters that take part in
  matmuls; with tied embeddings it equals the parameter count);
- forward, per token: ``2·P`` per layer, ``2·d·V`` where logits are computed; attention:
  ``4·h·e`` per attended (query, key) pair and layer; a causal sequence of ``l`` tokens has
  ``l·(l+1)/2`` pairs (packed examples attend within themselves only);
- backward: the gradient of a product's input costs as much as its forward (``2·in·out`` per
  token), so does its weight's gradient; attention's backward is twice its forward (``dQ``,
  ``dK``, ``dV``, ``dP``). Full fine-tuning hence costs ``6·N`` per token (``6·N + 12·L·h·e``
  per attended pair). With LoRA of rank ``r`` on a module ``in→out``, the base weight needs
  no gradient, only its input does (``2·in·out``); the adapter adds ``2·r·(in+out)`` forward,
  as much for its input gradient and as much for its weights' gradient. Layers below the
  lowest adapted one need no backward at all (computed once and replayed, their forward is
  counted by the share of rows computed), nor do the parts of that lowest layer below its
  lowest adapter: its q/k/v inputs' gradients (``2·d·(h+2k)·e``) and the adapters' input
  gradients there. The LM head (frozen) needs the gradient of its input only, where the loss
  is taken.
- generation: a request with ``p`` prompt and ``g`` generated tokens runs ``p + g - 1`` tokens
  through the layers (the last token is sampled, never fed back), computes logits ``g`` times
  (the prompt's last position, then every step), and attends ``p(p+1)/2 + (g-1)·p +
  g(g-1)/2`` pairs: about ``2·N·(p + g)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# A decoder layer's stages in forward order, with the modules (PEFT target names) in each; the
# attention scores sit between the q/k/v projections and o_proj.
STAGES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),
    (),  # attention scores
    ("o_proj",),
    ("gate_proj", "up_proj"),
    ("down_proj",),
)
SCORES = 1  # index of the attention-score stage
MODULES = tuple(name for stage in STAGES for name in stage)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM ...)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a transformers config (or its ``config.json`` as a dict)."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        try:
            hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
            return cls(
                layers=int(get("num_hidden_layers")),
                hidden=hidden,
                heads=heads,
                kv_heads=int(get("num_key_value_heads") or heads),
                head_dim=int(get("head_dim") or hidden // heads),
                intermediate=int(get("intermediate_size")),
                vocab=int(get("vocab_size")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a Llama-style decoder config ({exc})") from exc

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear module of one decoder layer."""
        d, f = self.hidden, self.intermediate
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (d, q),
            "k_proj": (d, kv),
            "v_proj": (d, kv),
            "o_proj": (q, d),
            "gate_proj": (d, f),
            "up_proj": (d, f),
            "down_proj": (f, d),
        }

    @property
    def layer_params(self) -> int:
        """``P``: one layer's linear weights."""
        return sum(i * o for i, o in self.linears().values())

    @property
    def head_params(self) -> int:
        return self.hidden * self.vocab

    @property
    def matmul_params(self) -> int:
        """``N``: the weights that take part in matmuls (layers and LM head)."""
        return self.layers * self.layer_params + self.head_params

    def score_flops(self, pairs: float) -> float:
        """Forward FLOPs of one layer's attention scores over ``pairs`` (query, key) pairs."""
        return 4.0 * self.heads * self.head_dim * pairs


@dataclass(frozen=True)
class TokenStats:
    """What a set of sequences asks of the model: tokens, causal (query, key) pairs, and the
    positions where logits are computed (every token, or only those the loss is taken on)."""

    tokens: int
    pairs: int
    logit_positions: int

    @classmethod
    def of(cls, lengths: Iterable[int], logit_positions: int | None = None) -> TokenStats:
        """From sequence lengths; logits at every token unless ``logit_positions`` is given."""
        lengths = list(lengths)
        tokens = sum(lengths)
        pairs = sum(n * (n + 1) // 2 for n in lengths)
        return cls(tokens, pairs, tokens if logit_positions is None else logit_positions)


@dataclass(frozen=True)
class TrainPlan:
    """What a training step computes: adapters of ``rank`` on ``modules`` of the top
    ``adapted_layers`` layers (``full``: every weight trained instead), and the share of rows
    whose frozen lower layers were computed rather than replayed from a store."""

    adapted_layers: int
    rank: int = 0
    modules: tuple[str, ...] = MODULES
    full: bool = False
    frozen_computed: float = 1.0

    def __post_init__(self) -> None:
        unknown = set(self.modules) - set(MODULES)
        if unknown:
            raise ValueError(f"FLOPs are counted for {', '.join(MODULES)}; not {sorted(unknown)}")


def _lowest_adapted_stage(modules: tuple[str, ...]) -> int:
    return next(i for i, stage in enumerate(STAGES) if set(stage) & set(modules))


def _adapter(rank: int, fan_in: int, fan_out: int, input_grad: bool) -> float:
    """Per token, one LoRA adapter ``x·A·B``: forward through A and B, both weights'
    gradients, B's input gradient, and A's input gradient where the layer's input needs one."""
    forward = weights = 2.0 * rank * (fan_in + fan_out)
    inner = 2.0 * rank * fan_out
    outer = 2.0 * rank * fan_in if input_grad else 0.0
    return forward + weights + inner + outer


def _adapted_layer(shape: ModelShape, plan: TrainPlan, stats: TokenStats, lowest: bool) -> float:
    """Forward and backward FLOPs of one layer with adapters (or fully trained)."""
    tokens, scores = stats.tokens, shape.score_flops(stats.pairs)
    linears = shape.linears()
    total = 2.0 * shape.layer_params * tokens + scores  # forward of the base
    # Stages whose input gradient is needed: all, except, in the lowest adapted layer of a
    # LoRA run, those at or below its lowest adapter (nothing under them learns).
    first = _lowest_adapted_stage(plan.modules) + 1 if lowest and not plan.full else 0
    for index, stage in enumerate(STAGES):
        wants_input_grad = index >= first
        if index == SCORES:
            total += 2 * scores if wants_input_grad else 0.0
            continue
        for name in stage:
            fan_in, fan_out = linears[name]
            if wants_input_grad:
                total += 2.0 * fan_in * fan_out * tokens
            if plan.full:
                total += 2.0 * fan_in * fan_out * tokens  # the weight's gradient
            elif name in plan.modules:
                total += _adapter(plan.rank, fan_in, fan_out, wants_input_grad) * tokens
    return total


def train_flops(shape: ModelShape, plan: TrainPlan, stats: TokenStats) -> float:
    """Model FLOPs of one pass of training over sequences with ``stats`` (the module
    docstring has the formula)."""
    adapted = shape.layers if plan.full else min(plan.adapted_layers, shape.layers)
    frozen = shape.layers - adapted
    forward_layer = 2.0 * shape.layer_params * stats.tokens + shape.score_flops(stats.pairs)
    total = plan.frozen_computed * frozen * forward_layer
    for index in range(adapted):
        total += _adapted_layer(shape, plan, stats, lowest=index == 0)
    head = 2.0 * shape.head_params * stats.logit_positions
    total += head * (3 if plan.full else 2)  # forward, input gradient (, weight gradient)
    return total


def generation_flops(shape: ModelShape, prompt: int, generated: int) -> float:
    """Model FLOPs of answering one request: ``prompt`` tokens in, ``generated`` out."""
    fed = prompt + max(generated - 1, 0)
    steps = max(generated - 1, 0)
    pairs = prompt * (prompt + 1) // 2 + steps * prompt + steps * (steps + 1) // 2
    logits = max(generated, 1)
    return (
        2.0 * shape.layer_params * shape.layers * fed
        + shape.layers * shape.score_flops(pairs)
        + 2.0 * shape.head_params * logits
    )


def matmul_peak(
    dtype: Any,
    *,
    threads: int | None = None,
    size: int = 2048,
    repeats: int = 5,
    device: str = "cpu",
    onednn: bool = True,
) -> float:
    """This machine's matmul FLOP/s in ``dtype`` on ``threads`` torch threads: the best of
    ``repeats`` products of two ``size``×``size`` matrices (after one untimed warm-up that
    creates the kernels). On the CPU the same product is also timed through oneDNN with the
    second matrix packed (``onednn``), and the faster of the two counts: in fp32 torch uses MKL,
    which on the AMD EPYC development machine reached 208 GFLOP/s where oneDNN reached about
    470, the path the project's fp32 training and inference take. The thread count is put back
    as it was."""
    import torch

    if size < 1 or repeats < 1:
        raise ValueError("size and repeats must be positive")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
        sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        products = [lambda: torch.matmul(a, b)]
        if onednn and torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available():
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), size)
                products.append(
                    lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
                )
            except RuntimeError:  # no oneDNN primitive for this dtype on this CPU
                pass
        best = math.inf
        for product in products:
            product()
            sync()
            for _ in range(repeats):
                started = time.perf_counter()
                product()
                sync()
                best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return 2.0 * size**3 / max(best, 1e-12)
