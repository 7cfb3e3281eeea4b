"""The command line as a person types it: global options anywhere, errors that name the source.

No broker: every case here stops at the configuration (exit 2) or only parses arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Exit code and the lines the command wrote (stdout and stderr together)."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAPI_STREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", *argv], env={**base, **(env or {})}, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout.strip().splitlines()


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "c.toml", "--bootstrap", "k:1", "--log-level", "debug", "publish", "x.csv"],
        ["publish", "x.csv", "--config", "c.toml", "--bootstrap", "k:1", "--log-level", "debug"],
        ["--config", "c.toml", "publish", "--bootstrap", "k:1", "x.csv", "--log-level", "debug"],
    ],
    ids=["before", "after", "mixed"],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    """--config, --bootstrap and --log-level parse the same on either side of the command."""
    args = build_parser().parse_args(argv)
    assert (args.config, args.bootstrap, args.log_level) == (Path("c.toml"), "k:1", "debug")


@pytest.mark.parametrize(
    "command",
    [["topics", "create"], ["dlq", "summary"], ["replay", "--stage", "deliver"], ["deliver"],
     ["check"], ["demo"], ["status"]],
)  # fmt: skip
def test_every_command_takes_the_global_options_after_it(command: list[str]) -> None:
    """Nested commands (``topics create``, ``dlq summary``) take them too; one given before
    the command is kept when the command does not repeat it."""
    args = build_parser().parse_args(["--bootstrap", "k:1", *command, "--log-level", "error"])
    assert (args.bootstrap, args.log_level, args.config) == ("k:1", "error", None)


def test_config_after_the_command_is_read(tmp_path: Path) -> None:
    """``capi-stream topics create --config FILE`` reads FILE: its unknown key is named with
    the file, the table and the closest setting, in one line, exit 2."""
    conf = tmp_path / "capi.toml"
    conf.write_text("[deliverer]\nlinger = 500\n")
    code, lines = _cli("topics", "create", "--config", str(conf))
    assert code == 2
    assert lines == [
        f"capi-stream: {conf}: [deliverer] linger: unknown setting (did you mean linger_ms?)"
    ]


def test_toml_syntax_error_is_one_line_with_line_and_column(tmp_path: Path) -> None:
    """A file that is not TOML: one line with the file, the line and the column; exit 2."""
    conf = tmp_path / "capi.toml"
    conf.write_text('bootstrap_servers = "k:9092"\n[deliverer\nlinger_ms = 5\n')
    code, lines = _cli("--config", str(conf), "deliver")
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"capi-stream: {conf}: invalid TOML at line 2, column ")


def test_nested_variable_is_named_with_a_suggestion() -> None:
    """``CAPI_STREAM_DELIVERER__LINGER``: named as written, with the variable that exists."""
    code, lines = _cli("topics", "create", env={"CAPI_STREAM_DELIVERER__LINGER": "5"})
    assert code == 2
    assert lines == [
        "capi-stream: CAPI_STREAM_DELIVERER__LINGER: unknown setting "
        "(did you mean CAPI_STREAM_DELIVERER__LINGER_MS?)"
    ]


def test_log_level_is_checked_by_the_parser() -> None:
    """A log level that does not exist is a usage error (exit 2) listing the levels."""
    code, lines = _cli("topics", "create", "--log-level", "verbose")
    assert code == 2
    assert "invalid choice: 'verbose'" in lines[-1]
    assert "debug" in lines[-1]


def test_demo_uses_the_configured_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``demo`` runs on --bootstrap, else on CAPI_STREAM_BOOTSTRAP_SERVERS, else (None) on
    its own embedded broker."""
    from stream.cli import _demo_bootstrap

    for key in [k for k in os.environ if k.upper().startswith("CAPI_STREAM_")]:
        monkeypatch.delenv(key)
    parser = build_parser()
    assert _demo_bootstrap(parser.parse_args(["demo"])) is None
    assert _demo_bootstrap(parser.parse_args(["demo", "--bootstrap", "k:1"])) == "k:1"
    monkeypatch.setenv("CAPI_STREAM_BOOTSTRAP_SERVERS", "env:9092")
    assert _demo_bootstrap(parser.parse_args(["demo"])) == "env:9092"
    assert _demo_bootstrap(parser.parse_args(["--bootstrap", "k:1", "demo"])) == "k:1"
