"""Typed configuration of a dataset build (``configs/data/*.yaml``).

Relative paths in a config are resolved against the repository root, so the same config works
from any working directory. Every default here is also written out in
``configs/data/default.yaml``, which is where a user changes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from tuneops.core.config import StrictModel, load_config
from tuneops.core.paths import CONFIG_DIR, REPO_ROOT
from workloads.data.s3_retry import S3Retry
from workloads.models.refs import DEFAULT_MODEL

DEFAULT_CONFIG = CONFIG_DIR / "data" / "default.yaml"
OnError = Literal["fail", "quarantine"]
ScrubKind = Literal["email", "aws_access_key", "aws_secret_key", "private_key", "token", "ipv4"]


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute as given, relative to the repository root otherwise."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


class FieldMap(StrictModel):
    """Which field of an input row holds what. A row needs ``messages``, ``text`` or both
    ``question`` and ``answer``; the others are optional."""

    id: str | None = None
    messages: str | None = None
    question: str | None = None
    answer: str | None = None
    system: str | None = None
    text: str | None = None
    category: str | None = None
    # A list of other wordings of ``question`` that the same answer answers. Each becomes a
    # record of its own in the same group as the row (one split, deduplicated as one).
    rephrasings: str | None = None

    @model_validator(mode="after")
    def _needs_content(self) -> FieldMap:
        if not (self.messages or self.text or (self.question and self.answer)):
            raise ValueError("map `messages`, `text`, or both `question` and `answer`")
        if self.rephrasings and not self.question:
            raise ValueError("`rephrasings` needs `question` and `answer`")
        return self


class RecordsSource(StrictModel):
    """Chat or Q&A rows from a JSONL, JSON, CSV or Parquet file."""

    type: Literal["records"]
    name: str
    path: str
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = "auto"
    fields: FieldMap = FieldMap(id="id", question="question", answer="answer", category="category")
    category: str | None = Field(None, description="category when the row has none")
    max_rephrasings: int | None = Field(
        None, ge=0, description="the first N of each row's rephrasings (null: all of them)"
    )


class GitHubSource(StrictModel):
    """A GitHub issues export: the JSON of the issues and comments endpoints (``gh api``)."""

    type: Literal["github"]
    name: str
    issues: str = Field(description="file written by `gh api repos/O/R/issues?state=closed`")
    comments: str = Field(description="file or folder of `gh api .../issues/comments` output")
    answer: Literal["maintainer_last", "closing"] = "maintainer_last"
    maintainer_associations: list[str] = Field(
        default_factory=lambda: ["OWNER", "MEMBER", "COLLABORATOR"]
    )
    close_window_seconds: int = Field(300, ge=0)
    include_bots: bool = False
    category: str | None = None
    label_categories: dict[str, str] = Field(default_factory=dict)


class QuestionGeneration(StrictModel):
    """Ask an OpenAI-compatible endpoint to write Q/A pairs about each document section."""

    enabled: bool = False
    base_url: str | None = None
    model: str = "cloudops-assistant"
    api_key_env: str = "OPENAI_API_KEY"
    questions_per_section: int = Field(2, ge=1, le=10)
    temperature: float = 0.2
    max_tokens: int = 512
    timeout_s: float = 60.0


class DocsSource(StrictModel):
    """A folder of Markdown or text documents, split into sections at headings."""

    type: Literal["docs"]
    name: str
    path: str
    patterns: list[str] = Field(default_factory=lambda: ["**/*.md", "**/*.txt"])
    max_section_chars: int = Field(2000, ge=200)
    min_section_chars: int = Field(80, ge=1)
    emit_text: bool = True
    category: str | None = None
    generate: QuestionGeneration = QuestionGeneration()


class K8sApiSource(StrictModel):
    """Q/A pairs about resource kinds and their fields, from the Kubernetes OpenAPI schemas
    that the installed ``kubernetes-validate`` package ships."""

    type: Literal["k8s_api"]
    name: str = "k8s-api"
    schema_version: str = "latest"
    kinds: list[str] = Field(
        default_factory=list, description="`Kind` or `group/version/Kind`; empty: every kind"
    )
    stable_only: bool = True
    max_kinds: int = Field(40, ge=1)
    fields_per_kind: int = Field(8, ge=0)
    max_pairs: int = Field(250, ge=1)
    category: str = "kubernetes"


Source = Annotated[
    RecordsSource | GitHubSource | DocsSource | K8sApiSource, Field(discriminator="type")
]


class NormaliseConfig(StrictModel):
    strip_html: bool = True
    strip_quoted_email: bool = True


class ValidationConfig(StrictModel):
    tokenizer: str = DEFAULT_MODEL
    max_length: int = Field(512, ge=16, description="tokens after chat templating")
    min_turn_chars: int = Field(2, ge=1)
    max_turn_chars: int = Field(12000, ge=10)
    min_text_chars: int = Field(80, ge=1)
    language: str | None = Field(None, description="e.g. `en`; None skips the check")
    min_language_ratio: float = Field(0.05, ge=0, le=1)


class ScrubConfig(StrictModel):
    enabled: bool = True
    kinds: list[ScrubKind] = Field(
        default_factory=lambda: [
            "email",
            "aws_access_key",
            "aws_secret_key",
            "private_key",
            "token",
        ]
    )


class DedupConfig(StrictModel):
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.7, gt=0, le=1, description="estimated Jaccard similarity")
    num_perm: int = Field(128, ge=16, le=512)
    shingle: Literal["word", "char"] = "word"
    shingle_size: int = Field(1, ge=1, le=16)
    seed: int = 1


class DecontaminateConfig(StrictModel):
    enabled: bool = True
    benchmark: str | None = Field(None, description="JSONL path; None: the project benchmark")
    ngram: int = Field(8, ge=2, le=32)
    threshold: float = Field(0.5, gt=0, le=1)


class FormattingConfig(StrictModel):
    system_prompt: str | None = None
    mode: Literal["add_if_missing", "replace", "keep"] = "add_if_missing"


class SplitConfig(StrictModel):
    validation: float = Field(0.05, ge=0, lt=1)
    test: float = Field(0.05, ge=0, lt=1)
    salt: str = "tuneops"

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave a share for train")
        return self


class DataConfig(StrictModel):
    name: str = Field("cloudops", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    on_error: OnError = "fail"
    sources: list[Source] = Field(min_length=1)
    normalise: NormaliseConfig = NormaliseConfig()
    validation: ValidationConfig = ValidationConfig()
    scrub: ScrubConfig = ScrubConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    formatting: FormattingConfig = FormattingConfig()
    split: SplitConfig = SplitConfig()
    output: str | None = Field(None, description="datasets root; None: <cache>/datasets")
    # `--upload`: tries and timeouts of the copy to S3 (workloads/data/s3_retry.py).
    upload_retry: S3Retry = S3Retry()

    @model_validator(mode="after")
    def _unique_sources(self) -> DataConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self


def load_data_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> DataConfig:
    return load_config(DataConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)
