"""Credentials files: checked at start, kept in memory, re-read on change, never half-read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from stream.config import Settings, load_settings
from stream.core.errors import ConfigError
from stream.credentials import Credentials, WatchedFile, parse_secret, parse_tokens

TOKEN = "tok-abcdefghijklmnop"
NEW_TOKEN = "tok-rotated-qrstuvwxyz"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, text: str, bump_ns: int = 0) -> None:
    """Write in place (not atomically) and move the mtime so a change is always visible."""
    path.write_text(text, encoding="utf-8")
    if bump_ns:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def _doc(token: str) -> str:
    return json.dumps({"111": token})


def _tokens(path: Path, clock: FakeClock) -> WatchedFile[dict[str, object]]:
    return WatchedFile("CAPI_STREAM_ACCESS_TOKENS_FILE", path, parse_tokens, clock=clock)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ('{"111": "' + TOKEN, "not valid JSON"),
        ("", "not valid JSON"),
        ('["' + TOKEN + '"]', "must be a JSON object"),
        ('{"111": ""}', "token of pixel 111 is empty"),
        ('{"111": "   "}', "token of pixel 111 is empty"),
        ('{"111": 12345}', "token of pixel 111 is not a string"),
        ('{"' + TOKEN + '": ""}', "token of an entry is empty"),
    ],
)
def test_tokens_file_is_checked_at_start(tmp_path: Path, content: str | None, problem: str) -> None:
    """A missing, malformed, non-object or empty-token file is one ConfigError naming the
    setting, and never quotes a token (not even a token swapped into a key)."""
    path = tmp_path / "tokens.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Settings(access_tokens_file=path)
    text = str(info.value)
    assert text.startswith("CAPI_STREAM_ACCESS_TOKENS_FILE: ")
    assert problem in text
    assert TOKEN not in text
    assert "\n" not in text


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read"), (" \n", "empty")])
def test_secret_file_is_checked_at_start(tmp_path: Path, content: str | None, problem: str) -> None:
    """A missing or empty app secret file is one ConfigError naming CAPI_STREAM_APP_SECRET_FILE."""
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^CAPI_STREAM_APP_SECRET_FILE: .*{problem}"):
        load_settings(app_secret_file=path)


def test_tokens_are_read_once_not_per_request(tmp_path: Path) -> None:
    """The tokens are kept: deleting the file after start changes nothing for requests."""
    path = tmp_path / "tokens.json"
    path.write_text(_doc(TOKEN), encoding="utf-8")
    settings = Settings(access_tokens_file=path, access_token="tok-default")
    path.unlink()
    for _ in range(100):
        assert settings.token_for("111").get_secret_value() == TOKEN  # type: ignore[union-attr]
    assert settings.token_for("222").get_secret_value() == "tok-default"  # type: ignore[union-attr]


def test_changed_file_is_read_at_the_next_check(tmp_path: Path) -> None:
    """A rotated file is used after at most one check interval; before it, the file is not
    even looked at."""
    clock = FakeClock()
    path = tmp_path / "tokens.json"
    _write(path, _doc(TOKEN))
    watched = _tokens(path, clock)
    _write(path, _doc(NEW_TOKEN), bump_ns=10_000_000)
    clock.now += 0.5
    assert watched.get()["111"].get_secret_value() == TOKEN  # type: ignore[attr-defined]
    clock.now += 0.6
    assert watched.get()["111"].get_secret_value() == NEW_TOKEN  # type: ignore[attr-defined]
    assert watched.reloads == 1
    clock.now += 5
    watched.get()
    assert watched.reloads == 1  # unchanged file: not read again


def test_half_written_rotation_keeps_last_good_tokens_and_warns_once(tmp_path: Path) -> None:
    """A rotation read mid-write (truncated, then partial JSON) keeps the last good tokens,
    logs ONE warning without any token, and heals when the write completes."""
    clock = FakeClock()
    path = tmp_path / "tokens.json"
    _write(path, _doc(TOKEN))
    watched = _tokens(path, clock)
    with capture_logs() as logs:
        for step, partial in enumerate(["", '{"111": "tok-rot', '{"111": "tok-rotated-q']):
            _write(path, partial, bump_ns=(step + 1) * 10_000_000)
            clock.now += 1.1
            assert watched.get()["111"].get_secret_value() == TOKEN  # type: ignore[attr-defined]
        _write(path, _doc(NEW_TOKEN), bump_ns=100_000_000)
        clock.now += 1.1
        assert watched.get()["111"].get_secret_value() == NEW_TOKEN  # type: ignore[attr-defined]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["setting"] == "CAPI_STREAM_ACCESS_TOKENS_FILE"
    assert TOKEN not in str(logs)
    assert "tok-rot" not in str(logs)


def test_failed_read_is_retried_even_when_the_stamp_did_not_move(tmp_path: Path) -> None:
    """A partial read within the writer's mtime tick heals: after a failure the file is read
    again at the next check even if mtime, size and inode look the same."""
    clock = FakeClock()
    path = tmp_path / "tokens.json"
    _write(path, _doc(TOKEN))
    watched = _tokens(path, clock)
    _write(path, '{"111": "tok-', bump_ns=10_000_000)
    clock.now += 1.1
    assert watched.get()["111"].get_secret_value() == TOKEN  # type: ignore[attr-defined]
    before = path.stat()
    path.write_text('{"1": "tok-"}', encoding="utf-8")  # same size, made valid in place
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    clock.now += 1.1
    assert watched.get()["1"].get_secret_value() == "tok-"  # type: ignore[attr-defined]


def test_vanished_file_keeps_last_good_secret(tmp_path: Path) -> None:
    """An app secret file removed during a rotation keeps the last good secret and warns once."""
    clock = FakeClock()
    path = tmp_path / "secret"
    path.write_text("s3cret-value\n", encoding="utf-8")
    creds = Credentials(app_secret_file=path, clock=clock)
    path.unlink()
    with capture_logs() as logs:
        for _ in range(3):
            clock.now += 1.1
            assert creds.secret().get_secret_value() == "s3cret-value"  # type: ignore[union-attr]
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "s3cret" not in str(logs)
    path.write_text("new-secret", encoding="utf-8")
    clock.now += 1.1
    assert creds.secret().get_secret_value() == "new-secret"  # type: ignore[union-attr]


def test_setting_values_win_over_files(tmp_path: Path) -> None:
    """access_tokens beats the tokens file for its pixel; app_secret beats the secret file,
    whose file is then not even read."""
    path = tmp_path / "tokens.json"
    path.write_text('{"111": "tok-file", "222": "tok-file-222"}', encoding="utf-8")
    settings = Settings(
        access_tokens_file=path, access_tokens={"111": "tok-env"},
        app_secret="env-secret", app_secret_file=tmp_path / "missing",
    )  # fmt: skip
    assert settings.token_for("111").get_secret_value() == "tok-env"  # type: ignore[union-attr]
    assert settings.token_for("222").get_secret_value() == "tok-file-222"  # type: ignore[union-attr]
    assert settings.token_for("333") is None
    assert settings.secret().get_secret_value() == "env-secret"  # type: ignore[union-attr]


def test_parsers_strip_whitespace() -> None:
    """Tokens and secrets lose surrounding whitespace (a trailing newline from an editor)."""
    assert parse_tokens('{"1": " a \\n"}')["1"].get_secret_value() == "a"
    assert parse_secret("  b\n").get_secret_value() == "b"


def test_copy_with_new_token_settings_reads_them() -> None:
    """model_copy that changes a credential setting gives a copy with the new credentials;
    a deep copy shares the provider."""
    settings = Settings(access_token="tok-a")
    copy = settings.model_copy(update={"access_token": SecretStr("tok-b")})
    assert copy.token_for("1").get_secret_value() == "tok-b"  # type: ignore[union-attr]
    assert settings.model_copy(deep=True).token_for("1").get_secret_value() == "tok-a"  # type: ignore[union-attr]
