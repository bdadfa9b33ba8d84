"""The secret scan (`make lint`, and so CI's lint job): detect-secrets against the committed
.secrets.baseline. Every finding the baseline allows is audited as no secret and documented
with its reason; a new one fails the scan."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuneops.core.paths import REPO_ROOT

BASELINE = REPO_ROOT / ".secrets.baseline"
HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def _baseline() -> dict:
    return json.loads(BASELINE.read_text())


def _scan(tmp_path: Path, *files: str) -> subprocess.CompletedProcess:
    """The scan `make lint` runs, against a copy of the baseline (it may rewrite line numbers)."""
    baseline = tmp_path / "baseline.json"
    shutil.copy(BASELINE, baseline)
    return subprocess.run(
        [str(HOOK), "--baseline", str(baseline), *files],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_lint_runs_the_pinned_scanner_over_every_tracked_file():
    makefile = (REPO_ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") : makefile.index("\nfmt:")]
    assert "git ls-files -z | xargs -0 $(VENV)/bin/detect-secrets-hook --baseline" in lint
    from detect_secrets.__version__ import VERSION

    assert _baseline()["version"] == VERSION
    dev_lock = (REPO_ROOT / "requirements-dev.lock").read_text()
    assert re.search(rf"^detect-secrets=={re.escape(VERSION)} \\$", dev_lock, re.MULTILINE)


def test_every_allowed_finding_is_audited_as_no_secret():
    results = _baseline()["results"]
    assert results, "the fixtures' planted fake keys are in the baseline"
    unaudited = [
        f"{name}:{r['line_number']} {r['type']}"
        for name, found in results.items()
        for r in found
        if r.get("is_secret") is not False
    ]
    assert unaudited == []


def test_every_file_with_an_allowed_finding_is_documented_with_its_reason():
    doc = (REPO_ROOT / "docs" / "supply-chain.md").read_text()
    section = doc[doc.index("## Secret scan") :]
    missing = [name for name in _baseline()["results"] if f"`{name}`" not in section]
    assert missing == []


def test_a_new_secret_fails_the_scan(tmp_path):
    planted = tmp_path / "settings.py"
    key = "AKIA" + "Q3EGRDT7" + "LW2XNB5P"  # assembled at run time: this file holds no key
    planted.write_text(f'aws_access_key_id = "{key}"\n')
    done = _scan(tmp_path, str(planted))
    assert done.returncode == 1
    assert "AWS Access Key" in done.stdout and str(planted) in done.stdout


@pytest.mark.parametrize(
    "text",
    ["    sha256: " + "9f" * 32 + "\n", "    --hash=sha256:" + "0a" * 32 + "\n"],
    ids=["digest", "lock-hash"],
)
def test_digests_are_not_secrets(tmp_path, text):
    listing = tmp_path / "digests.yaml"
    listing.write_text(text)
    assert _scan(tmp_path, str(listing)).returncode == 0


def test_the_audited_fixtures_pass_the_scan(tmp_path):
    audited = [name for name in _baseline()["results"] if (REPO_ROOT / name).is_file()]
    assert any(name.startswith("tests/") for name in audited)
    done = _scan(tmp_path, *audited)
    # 0, or 3 when only line numbers moved (the baseline is rewritten): never 1, a new secret.
    assert done.returncode in (0, 3), done.stdout
    assert "Potential secrets" not in done.stdout
