"""A training chat template with ``{% generation %}`` markers, for assistant-only loss.

TRL masks the loss to the assistant's turns only when the chat template marks them. The model's
own template is used when it has the markers; otherwise TRL's patched templates, then the
project's own under ``templates/``, each accepted only if it renders every probe conversation
exactly as the model's own template does (training sees the text the model sees at inference).
"""

from __future__ import annotations

from pathlib import Path

from tuneops.core.errors import UserError

TEMPLATES_DIR = Path(__file__).parent / "templates"
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ],
]


def training_chat_template(tokenizer) -> str | None:
    """A chat template with ``{% generation %}`` markers that renders like the model's own.

    Returns None when the tokenizer's template already has the markers. Tries TRL's patched
    templates first, then the project's own (SmolLM2/ChatML), accepted only if it renders every
    probe conversation exactly as the original does.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    original = tokenizer.chat_template
    if not original:
        raise UserError("the base model's tokenizer has no chat template; set data.loss_on=all")
    if has_generation_markers(original):
        return None
    try:
        patched = get_training_chat_template(tokenizer)
        if patched:
            return patched
    except ValueError:
        pass
    for file in sorted(TEMPLATES_DIR.glob("*.jinja")):
        candidate = file.read_text(encoding="utf-8")
        if renders_like(tokenizer, candidate):
            return candidate
    raise UserError(
        "the base model's chat template has no {% generation %} markers and no matching "
        f"training template is known; add one under {TEMPLATES_DIR} or set data.loss_on=all"
    )


def renders_like(tokenizer, candidate: str) -> bool:
    """True when ``candidate`` renders every probe conversation as the tokenizer's own does."""
    try:
        for messages in PROBE_CONVERSATIONS:
            for prompt in (False, True):
                ours = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=prompt, chat_template=candidate
                )
                theirs = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=prompt
                )
                if ours != theirs:
                    return False
    except Exception:  # a template that cannot render this conversation does not match
        return False
    return True
