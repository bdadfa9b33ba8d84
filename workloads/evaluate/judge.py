"""LLM-as-judge: an OpenAI-compatible endpoint grades each answer against its reference, 1-5.

The prompt is a versioned file in the repo (``prompts/judge_v1.md``); its name and digest are
recorded with the grades. Model replies are parsed leniently ("Grade: 4", "**4**/5", "4",
"score=4 because..."); a reply with no clear grade is kept with ``grade: None`` and its raw text,
and counted in ``judge_unparsed_rate``, never dropped or guessed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tuneops.core.errors import UserError
from workloads.evaluate.config import JudgeConfig
from workloads.evaluate.generate import first_model_id, openai_client

_LABELLED = re.compile(
    r"\b(?:grade|score|rating|note)\b\s*(?:is|of)?\s*[:=\-]?\s*[*_\"'(\[]*\s*([1-5])(?:\.0+)?\b",
    re.IGNORECASE,
)
_OUT_OF = re.compile(r"(?<![\d.])([1-5])(?:\.0+)?\s*(?:/|out of)\s*5\b", re.IGNORECASE)
_LEADING = re.compile(r"^\W*([1-5])(?:\.0+)?(?![\d.])")
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.])")


def parse_grade(text: str) -> int | None:
    """The 1-5 grade in a judge reply, or None when the reply does not state one clearly."""
    if not text:
        return None
    for pattern in (_LABELLED, _OUT_OF):
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    match = _LEADING.match(text.strip())
    if match:
        return int(match.group(1))
    digits = {m.group(1) for m in _DIGIT.finditer(text)}
    if len(digits) == 1:  # one distinct 1-5 number and nothing else to confuse it with
        return int(digits.pop())
    return None


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    template: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:12]

    @property
    def version(self) -> str:
        return f"{self.name}@{self.digest}"

    def render(self, question: str, reference: str, answer: str) -> str:
        return (
            self.template.replace("{{question}}", question.strip())
            .replace("{{reference}}", reference.strip())
            .replace("{{answer}}", answer.strip() or "(empty answer)")
        )


def load_prompt(config: JudgeConfig) -> JudgePrompt:
    path = config.prompt_path()
    if not path.is_file():
        raise UserError(f"judge prompt not found: {path} (judge.prompt in the eval config)")
    text = path.read_text(encoding="utf-8")
    for slot in ("{{question}}", "{{reference}}", "{{answer}}"):
        if slot not in text:
            raise UserError(f"judge prompt {path} lacks the {slot} placeholder")
    return JudgePrompt(name=path.stem, template=text)


class Judge:
    def __init__(self, config: JudgeConfig):
        self.config = config
        self.prompt = load_prompt(config)
        self.base_url = config.base_url.rstrip("/")
        self.client = openai_client(
            self.base_url, api_key=os.environ.get(config.api_key_env), timeout_s=config.timeout_s
        )
        self.model = config.model or first_model_id(self.client, self.base_url)

    def grade_one(self, question: str, reference: str, answer: str) -> dict[str, Any]:
        import openai

        content = self.prompt.render(question, reference, answer)
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": content}],
                max_tokens=self.config.max_tokens,
                temperature=0.0,
            )
        except openai.APIError as exc:
            raise UserError(f"the judge endpoint {self.base_url} failed: {exc}") from exc
        raw = resp.choices[0].message.content or ""
        return {"grade": parse_grade(raw), "raw": raw, "prompt": self.prompt.version}

    def grade(
        self, records: Sequence[dict[str, Any]], progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        def run(record: dict[str, Any]) -> dict[str, Any]:
            out = self.grade_one(record["question"], record["reference"], record["answer"])
            if progress:
                progress(1)
            return out

        with ThreadPoolExecutor(self.config.concurrency) as pool:
            return list(pool.map(run, records))

    def close(self) -> None:
        self.client.close()
