"""A GitHub issues export: each solved issue becomes a question (title and body) with the
comment that answered it.

The export is what ``gh api --paginate`` writes for the issues and for the issue comments (one
file, or a folder of per-issue files). Pull requests, open or unsolved issues and issues
without a matching answer are dropped with their reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import GitHubSource, OnError, resolve_path
from workloads.data.ingest.context import IngestContext, read_text
from workloads.data.records import StageResult, chat_record, qa_messages

Comments = dict[str, list[dict[str, Any]]]


def _load_json_documents(path: Path) -> list[Any]:
    """Items of one `gh api` output file: a JSON array, several arrays back to back (what
    ``--paginate`` writes without ``--slurp``), a slurped array of arrays, or JSON lines."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); export it again with "
                "`gh api --paginate ... > file`"
            ) from exc
        if isinstance(doc, list) and doc and all(isinstance(d, list) for d in doc):
            for page in doc:
                items.extend(page)
        elif isinstance(doc, list):
            items.extend(doc)
        else:
            items.append(doc)
    return items


def _ts(value: str | None) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_bot(user: dict[str, Any] | None) -> bool:
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def _pick_answer(
    issue: dict[str, Any], comments: list[dict[str, Any]], src: GitHubSource
) -> dict[str, Any] | None:
    usable = [c for c in comments if (c.get("body") or "").strip()]
    if not src.include_bots:
        usable = [c for c in usable if not _is_bot(c.get("user"))]
    if src.answer == "maintainer_last":
        maintainers = set(src.maintainer_associations)
        picked = [c for c in usable if c.get("author_association") in maintainers]
        return picked[-1] if picked else None
    # "closing": the comment posted with the close (GitHub's "Close with comment" writes the
    # comment and the close within seconds), preferring the user who closed the issue.
    closed_at = _ts(issue.get("closed_at"))
    if closed_at is None:
        return None
    window = [
        c
        for c in usable
        if _ts(c.get("created_at"))
        and 0 <= (closed_at - _ts(c["created_at"])).total_seconds() <= src.close_window_seconds
    ]
    closer = ((issue.get("closed_by") or {}) or {}).get("login")
    by_closer = [c for c in window if (c.get("user") or {}).get("login") == closer]
    picked = by_closer or window
    return picked[-1] if picked else None


def _comments_by_issue(src: GitHubSource, ctx: IngestContext) -> Comments:
    """Every comment of the export, grouped by its issue's API URL, oldest first."""
    comments_path = resolve_path(src.comments)
    if comments_path.is_dir():
        comment_files = sorted(comments_path.glob("*.json"))
    elif comments_path.exists():
        comment_files = [comments_path]
    else:
        raise UserError(f"{comments_path}: not found; fix `comments` of source {src.name!r}")
    by_issue: Comments = {}
    for path in comment_files:
        for index, comment in enumerate(_load_json_documents(path), 1):
            if not isinstance(comment, dict) or "issue_url" not in comment:
                ctx.bad(
                    f"{path}: item {index}",
                    "not a comment object with `issue_url`",
                    "export comments with `gh api repos/OWNER/REPO/issues/comments --paginate`",
                    "malformed_comment",
                    comment,
                )
                continue
            by_issue.setdefault(comment["issue_url"], []).append(comment)
    for comments in by_issue.values():
        comments.sort(key=lambda c: (c.get("created_at") or "", c.get("id") or 0))
    return by_issue


def _issue_record(
    src: GitHubSource, issue: Any, where: str, by_issue: Comments, ctx: IngestContext
) -> dict[str, Any] | None:
    """The question/answer record of one issue, or None when it was dropped or is bad."""
    if not isinstance(issue, dict) or not {"url", "number", "title"} <= set(issue):
        ctx.bad(
            where,
            "not an issue object (needs url, number, title)",
            "export issues with `gh api 'repos/OWNER/REPO/issues?state=closed' --paginate`",
            "malformed_issue",
            issue,
        )
        return None
    repo = "/".join(str(issue.get("repository_url", "")).rstrip("/").split("/")[-2:])
    native = f"{repo}#{issue['number']}" if repo else f"#{issue['number']}"
    stub = {"id": f"{src.name}:{native}", "source": issue.get("html_url") or issue["url"]}
    if "pull_request" in issue:
        ctx.drop(stub, "pull_request", f"{native} is a pull request, not an issue")
        return None
    if issue.get("state") != "closed" or issue.get("state_reason") != "completed":
        ctx.drop(
            stub,
            "not_solved",
            f"{native} is {issue.get('state')}/{issue.get('state_reason')}, "
            "only closed/completed issues become pairs",
        )
        return None
    answer = _pick_answer(issue, by_issue.get(issue["url"], []), src)
    if answer is None:
        ctx.drop(stub, "no_answer", f"{native}: no comment matches answer={src.answer!r}")
        return None
    title = str(issue["title"]).strip()
    body = str(issue.get("body") or "").strip()
    question = f"{title}\n\n{body}" if body else title
    labels = [
        lbl.get("name") if isinstance(lbl, dict) else lbl for lbl in issue.get("labels") or []
    ]
    category = next(
        (src.label_categories[n] for n in labels if n in src.label_categories), src.category
    )
    return chat_record(
        stub["id"],
        qa_messages(question, str(answer["body"])),
        stub["source"],
        category,
        {"where": where, "answer_url": answer.get("html_url")},
    )


def ingest_github(src: GitHubSource, on_error: OnError) -> StageResult:
    issues_path = resolve_path(src.issues)
    ctx = IngestContext(on_error)
    issues = _load_json_documents(issues_path)
    by_issue = _comments_by_issue(src, ctx)
    records = []
    for index, issue in enumerate(issues, 1):
        ctx.seen += 1
        record = _issue_record(src, issue, f"{issues_path}: item {index}", by_issue, ctx)
        if record is not None:
            records.append(record)
    return StageResult(records, ctx.rejects, {"items": ctx.seen})
