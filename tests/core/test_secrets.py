"""The one token reader every server uses: variable first, then the mounted file."""

from __future__ import annotations

import pytest

from tuneops.core.errors import UserError
from tuneops.core.secrets import read_token


def test_the_variable_wins_then_the_file_then_nothing(tmp_path, monkeypatch):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("T_TOKEN", " from-env ")
    assert read_token("T_TOKEN", secret, "auth.token_file") == "from-env"
    monkeypatch.setenv("T_TOKEN", "   ")  # blank counts as unset
    assert read_token("T_TOKEN", secret, "auth.token_file") == "from-file"
    assert read_token(None, None, "auth.token_file") is None


@pytest.mark.parametrize("content", [None, "  \n"])
def test_a_missing_or_empty_file_is_one_line_naming_the_setting(tmp_path, content):
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(UserError, match=r"^sink.auth.token_file .* (does not exist|is empty)"):
        read_token(None, secret, "sink.auth.token_file")
