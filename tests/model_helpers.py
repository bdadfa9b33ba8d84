"""Small models for tests: the real tokenizer on a randomly initialised Llama."""

from __future__ import annotations

from pathlib import Path


def random_llama_dir(out: Path, tokenizer_dir: Path, **shape) -> Path:
    """A randomly initialised Llama (seed 0) with the real tokenizer, saved into ``out``;
    ``shape`` overrides the two-layer, 32-wide default (hidden_size=512, num_hidden_layers=4,
    ...)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    values = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **{**values, **shape},
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
