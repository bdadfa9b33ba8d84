"""What the trainer learns from: assistant-only labels with the end-of-turn token, and packing
that keeps examples apart (the loss of a packed batch equals the per-example losses)."""

from __future__ import annotations

import itertools

import pytest
from train_helpers import config_for

from workloads.train.build import build_trainer
from workloads.train.callbacks import Counters
from workloads.train.data import open_snapshot, prepare_splits


def _trainer(tiny_model_dir, snapshot_dir, tmp_path, *extra):
    cfg = config_for(tiny_model_dir, snapshot_dir, tmp_path / "run", *extra)
    splits = prepare_splits(open_snapshot(str(snapshot_dir)), max_eval_examples=4)
    trainer = build_trainer(
        cfg,
        tiny_model_dir,
        splits.train[:6],
        splits.validation,
        precision="fp32",
        checkpoints_dir=tmp_path / "ckpt",
        counters=Counters(),
    )
    return trainer, splits.train[:6]


def test_only_assistant_turns_and_their_end_token_are_trained(
    tiny_model_dir, snapshot_dir, tmp_path
):
    trainer, rows = _trainer(tiny_model_dir, snapshot_dir, tmp_path, "data.packing=false")
    tok = trainer.processing_class
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, ids, labels, mask in zip(
        rows, batch["input_ids"], batch["labels"], batch["attention_mask"], strict=False
    ):
        ids, labels = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
        trained = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
        answer = row["messages"][-1]["content"]
        # Exactly the answer and the end-of-turn token that closes it: no system or user token.
        assert tok.decode(trained) == answer + "<|im_end|>"
        assert trained[-1] == im_end
        # The prompt's own <|im_end|> tokens (system, user) are present but masked.
        masked_ends = [i for i, lab in zip(ids, labels, strict=True) if i == im_end and lab == -100]
        assert len(masked_ends) == 2


def test_loss_on_all_tokens_trains_the_prompt_too(tiny_model_dir, snapshot_dir, tmp_path):
    trainer, _ = _trainer(
        tiny_model_dir, snapshot_dir, tmp_path, "data.packing=false", "data.loss_on=all"
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0][batch["attention_mask"][0].bool()]
    assert (labels != -100).all()


def test_the_training_template_renders_like_the_models_own(tiny_model_dir, snapshot_dir, tmp_path):
    from transformers import AutoTokenizer

    trainer, rows = _trainer(tiny_model_dir, snapshot_dir, tmp_path)
    original = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert "{% generation %}" in trainer.processing_class.chat_template
    assert "{% generation %}" not in original.chat_template
    for row in rows:
        assert trainer.processing_class.apply_chat_template(
            row["messages"], tokenize=False
        ) == original.apply_chat_template(row["messages"], tokenize=False)


@pytest.mark.parametrize("loss", ["selected_logits", "trl_fused"])
def test_packed_batch_loss_equals_the_per_example_losses(
    tiny_model_dir, snapshot_dir, tmp_path, loss
):
    import torch

    trainer, _ = _trainer(tiny_model_dir, snapshot_dir, tmp_path, f"lm_head_loss={loss}")
    packed_rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    row = max(packed_rows, key=lambda r: len(r["seq_lengths"]))
    assert len(row["seq_lengths"]) >= 3, "the fixture should pack several examples into one row"
    packed = trainer.data_collator([row])
    assert "attention_mask" not in packed  # padding-free: position ids mark the examples

    # The same examples, one at a time, unpacked.
    bounds = torch.tensor([0, *row["seq_lengths"]]).cumsum(0).tolist()
    singles = []
    for start, end in itertools.pairwise(bounds):
        example = {k: row[k][start:end] for k in ("input_ids", "labels")}
        example["seq_lengths"] = [end - start]
        singles.append(trainer.data_collator([example]))

    model = trainer.model.eval()
    with torch.no_grad():
        packed_loss = trainer.compute_loss(model, dict(packed))
        total, count = 0.0, 0
        for single in singles:
            n = int((single["labels"][:, 1:] != -100).sum())
            total += float(trainer.compute_loss(model, dict(single))) * n
            count += n
    assert count == int((packed["labels"][:, 1:] != -100).sum())
    assert float(packed_loss) == pytest.approx(total / count, rel=1e-4, abs=1e-5)


def test_packed_logits_match_unpacked_without_a_kv_cache(
    embedded_model_dir, tiny_model_dir, snapshot_dir, tmp_path
):
    """The model-level property packing relies on (DESIGN: with sdpa, no KV cache may be built):
    on the real model, the second packed example's logits equal its logits alone."""
    import torch
    from transformers import AutoModelForCausalLM

    trainer, _ = _trainer(tiny_model_dir, snapshot_dir, tmp_path)
    row = max(
        (trainer.train_dataset[i] for i in range(len(trainer.train_dataset))),
        key=lambda r: len(r["seq_lengths"]),
    )
    packed = trainer.data_collator([row])
    n0, n1 = row["seq_lengths"][:2]
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, attn_implementation="sdpa")
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([row["input_ids"][n0 : n0 + n1]]), use_cache=False)
        packed_out = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        )
    diff = (packed_out.logits[0, n0 : n0 + n1] - alone.logits[0]).abs().max()
    assert float(diff) < 1e-3


def test_the_trainer_counts_every_packed_example_and_token(
    tiny_model_dir, snapshot_dir, tmp_path, monkeypatch
):
    from trl import SFTTrainer

    from workloads.train.sft_trainer import CountingSFTTrainer

    trainer, _ = _trainer(tiny_model_dir, snapshot_dir, tmp_path)
    assert isinstance(trainer, CountingSFTTrainer) and trainer.selected_logits  # CPU: auto
    monkeypatch.setattr(SFTTrainer, "training_step", lambda self, model, inputs, *a, **k: 0.0)
    row = trainer.train_dataset[0]
    trainer.training_step(trainer.model, trainer.data_collator([row]))
    assert trainer.counters.examples == len(row["seq_lengths"])
    assert trainer.counters.tokens == len(row["input_ids"])
