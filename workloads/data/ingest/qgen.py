"""Question generation for document sections through an OpenAI-compatible endpoint.

Off by default. When enabled, each section is sent with an instruction to write question and
answer pairs grounded in it, answered as a JSON array. Any server that speaks the OpenAI chat
completions API works: a hosted one, vLLM, or the project's own model server
(``tuneops serve``). A reply that is not the asked-for JSON is rejected with its text, never
guessed at.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import QuestionGeneration
from workloads.data.ingest.context import IngestContext
from workloads.data.records import chat_record, qa_messages

INSTRUCTION = (
    "You write training data for an assistant that helps engineers operate cloud-native "
    "systems. From the documentation section the user gives you, write {n} question and answer "
    "pairs that the section answers. Questions must make sense without the section; answers "
    "must only use facts from it. Reply with a JSON array of objects with the keys "
    '"question" and "answer", and nothing else.'
)


def parse_pairs(reply: str) -> list[dict[str, str]] | None:
    """The ``[{"question", "answer"}, ...]`` array in a reply, or None when there is none."""
    match = re.search(r"\[.*\]", reply or "", re.S)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list):
        return None
    pairs = [
        {"question": d["question"].strip(), "answer": d["answer"].strip()}
        for d in data
        if isinstance(d, dict)
        and isinstance(d.get("question"), str)
        and isinstance(d.get("answer"), str)
        and d["question"].strip()
        and d["answer"].strip()
    ]
    return pairs or None


def generate_pairs(
    sections: list[dict[str, Any]], cfg: QuestionGeneration, ctx: IngestContext
) -> list[dict[str, Any]]:
    import openai
    from tqdm import tqdm

    if not cfg.base_url:
        raise UserError("generate.enabled is true but generate.base_url is not set")
    client = openai.OpenAI(
        base_url=cfg.base_url,
        api_key=os.environ.get(cfg.api_key_env) or "not-needed",
        timeout=cfg.timeout_s,
        max_retries=2,
    )
    records = []
    for section in tqdm(sections, desc="generate questions", unit="section"):
        try:
            response = client.chat.completions.create(
                model=cfg.model,
                messages=[
                    {"role": "system", "content": INSTRUCTION.format(n=cfg.questions_per_section)},
                    {"role": "user", "content": section["text"]},
                ],
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
            )
        except openai.APIConnectionError as exc:
            raise UserError(
                f"cannot reach the question-generation endpoint {cfg.base_url} ({exc}); start "
                "it or set generate.enabled: false"
            ) from exc
        except openai.APIStatusError as exc:
            raise UserError(
                f"the question-generation endpoint {cfg.base_url} answered {exc.status_code}: "
                f"{exc.message}"
            ) from exc
        reply = response.choices[0].message.content or ""
        pairs = parse_pairs(reply)
        if pairs is None:
            ctx.drop(section, "generation_unparseable", "reply was not a JSON array", reply=reply)
            continue
        for index, pair in enumerate(pairs[: cfg.questions_per_section]):
            records.append(
                chat_record(
                    f"{section['id']}/q{index}",
                    qa_messages(pair["question"], pair["answer"]),
                    section["source"],
                    section.get("category"),
                    {"generated_by": cfg.model},
                )
            )
    return records
