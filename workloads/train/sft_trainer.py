"""The project's ``SFTTrainer``: counts what it trains and, on CPU, a cheaper LM-head loss.

Imports ``trl`` at the top: import this module only where training happens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from workloads.train.callbacks import Counters


class CountingSFTTrainer(SFTTrainer):
    """``SFTTrainer`` that counts real examples and tokens per step (a packed row holds several
    examples) and, with ``selected_logits``, computes the loss with ``selected_logits_loss``.

    ``original_chat_template`` is the tokenizer's template before the training template
    replaced it; the saved tokenizer gets it back.
    """

    def __init__(
        self,
        *args,
        counters: Counters,
        selected_logits: bool = False,
        original_chat_template: str | None = None,
        **kwargs,
    ):
        self.counters = counters
        self.frozen_prefix = None  # workloads.train.frozen_layers.FrozenPrefix, when in use
        self.recall_probe = None  # workloads.train.recall.RecallProbe, when asked for
        self.recall_every = False  # ask it at every evaluation (else once, after training)
        self.selected_logits = selected_logits
        self.original_chat_template = original_chat_template
        super().__init__(*args, **kwargs)

    def training_step(self, model, inputs, *args, **kwargs):
        if "position_ids" in inputs and "attention_mask" not in inputs:
            self.counters.examples += int((inputs["position_ids"] == 0).sum())
            self.counters.tokens += int(inputs["position_ids"].numel())
        else:
            self.counters.examples += int(inputs["input_ids"].shape[0])
            self.counters.tokens += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """The validation loss, and the development questions' key-fact recall when asked."""
        metrics = super().evaluate(*args, **kwargs)
        if self.recall_probe is not None and self.recall_every:
            metrics.update(self.ask_recall())
        return metrics

    def ask_recall(self, saved=None) -> dict[str, float]:
        """The development questions' key-fact recall of the weights as they are (or of the
        model saved in the folder ``saved``), logged."""
        recall = self.recall_probe.ask_saved(saved) if saved else self.recall_probe(self.model)
        self.log(recall)
        return recall

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.selected_logits or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return selected_logits_loss(self, model, inputs, num_items_in_batch)


def selected_logits_loss(trainer, model, inputs, num_items_in_batch):
    """Token-mean cross entropy computed from the logits of the labelled positions only.

    TRL's fused LM head runs a Triton kernel on GPUs; on CPU its torch fallback is several times
    slower than one LM-head matmul restricted (``logits_to_keep``) to the positions whose next
    token is trained, which also never builds the logits of prompt positions.
    """
    labels = inputs["labels"]
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    forward["use_cache"] = False  # packed examples stay isolated only without a KV cache
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().flatten()
    if keep.numel() == 0:
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)
    logits = model(**forward, logits_to_keep=keep).logits
    kept = targets[:, keep]
    loss_sum = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        kept.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    valid = (kept != -100).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else valid
    loss = loss_sum / torch.as_tensor(denom).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes
    _record_metrics(trainer, model, inputs, logits, kept, valid)
    return loss


def _record_metrics(trainer, model, inputs, logits, kept, valid) -> None:
    """What TRL's own ``compute_loss`` logs: token accuracy, and tokens seen in training."""
    mode = "train" if model.training else "eval"
    with torch.no_grad():
        correct = ((logits.argmax(-1) == kept) & (kept != -100)).sum()
    trainer._metrics[mode]["mean_token_accuracy"].append(
        (correct / valid).item() if valid > 0 else 0.0
    )
    if mode == "train":
        if "attention_mask" in inputs:
            trainer._total_train_tokens += int(inputs["attention_mask"].sum())
        else:
            trainer._total_train_tokens += int(inputs["position_ids"].size(1))
        trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]
