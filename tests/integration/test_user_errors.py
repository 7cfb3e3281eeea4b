"""User errors, as an operator meets them: one line naming the problem, no traceback, no secret.

Each case runs the real ``capi-stream`` command as its own process with only the environment
given here. None needs a broker: configuration errors must be found before anything connects,
and the unreachable cluster is a loopback port that refuses connections.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import ROOT

SECRET = "tok-user-error-secret-0123456789"


def _cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """Exit code and everything the command wrote (stdout and stderr together)."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAPI_STREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", *argv], env={**base, **(env or {})}, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout


def _assert_one_line(code: int, out: str, expected_code: int, *names: str) -> None:
    assert code == expected_code, out
    assert "Traceback" not in out
    assert SECRET not in out
    assert len(out.strip().splitlines()) == 1, out
    for name in names:
        assert name in out, out


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CAPI_STREAM_ACCESS_TOKENS": '{"111": "' + SECRET}, "CAPI_STREAM_ACCESS_TOKENS"),
        ({"CAPI_STREAM_KAFKA": '{"no.such.property": "x"}'}, "CAPI_STREAM_KAFKA"),
        ({"CAPI_STREAM_CONSUMER": '{"fetch.max.bites": 1}'}, "CAPI_STREAM_CONSUMER"),
        ({"CAPI_STREAM_PRODUCER": '{"lingerms": 5}'}, "CAPI_STREAM_PRODUCER"),
        ({"CAPI_STREAM_ADMIN": '{"no.such.property": 1}'}, "CAPI_STREAM_ADMIN"),
        ({"CAPI_STREAM_KAFKA": '{"sasl.password": "' + SECRET + '", "nope": 1}'},
         "CAPI_STREAM_KAFKA"),
        ({"CAPI_STREAM_ACCES_TOKEN": SECRET}, "CAPI_STREAM_ACCES_TOKEN"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", [["deliver"], ["topics", "create"]])
def test_configuration_error_is_one_line_exit_2(
    env: dict[str, str], named: str, command: list[str]
) -> None:
    """Malformed JSON, an unknown librdkafka property (any section) or an unknown variable:
    exit 2 with one line naming the setting, before connecting (the bootstrap is unreachable
    and the command still answers at once)."""
    started = time.monotonic()
    code, out = _cli("--bootstrap", "127.0.0.1:9", *command, env=env)
    _assert_one_line(code, out, 2, named)
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ('{"111": "' + SECRET, "not valid JSON"),
     ('["' + SECRET + '"]', "JSON object"), ('{"111": ""}', "empty")],
)  # fmt: skip
def test_bad_tokens_file_is_one_line_exit_2(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """A missing, malformed, non-object or empty-token access_tokens_file stops the deliverer
    at start (exit 2, one line, the file's tokens never shown), not at its first request."""
    path = tmp_path / "tokens.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out = _cli("deliver", env={"CAPI_STREAM_ACCESS_TOKENS_FILE": str(path)})
    _assert_one_line(code, out, 2, "CAPI_STREAM_ACCESS_TOKENS_FILE", problem)


def test_missing_app_secret_file_is_one_line_exit_2(tmp_path: Path) -> None:
    """A missing app_secret_file: exit 2, one line naming CAPI_STREAM_APP_SECRET_FILE."""
    code, out = _cli("deliver", env={"CAPI_STREAM_APP_SECRET_FILE": str(tmp_path / "none")})
    _assert_one_line(code, out, 2, "CAPI_STREAM_APP_SECRET_FILE")


@pytest.mark.parametrize("stage", ["normalize", "deliver"])
def test_zero_workers_is_refused(stage: str) -> None:
    """``--workers 0`` is a usage error (exit 2, one line), not a silent single worker."""
    code, out = _cli(stage, "--workers", "0")
    _assert_one_line(code, out, 2, "--workers")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so no one else takes it), no listen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


CONNECT_TIMEOUT_S = 2


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "create"],
        ["publish", "-"],
        ["normalize"],
        ["deliver"],
        ["dlq", "summary"],
        ["replay", "--stage", "deliver", "--mode", "oneoff", "--from", "1h"],
    ],
    ids=["topics-create", "publish", "normalize", "deliver", "dlq", "replay"],
)
def test_unreachable_cluster_waits_bounded_and_says_so_once(
    refused_port: int, command: list[str]
) -> None:
    """Against a broker that is not there: one progress line, then after the connect timeout one
    error line naming the bootstrap servers, exit 1, and no flood of librdkafka lines."""
    bootstrap = f"127.0.0.1:{refused_port}"
    env = {
        "CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "CAPI_STREAM_ACCESS_TOKEN": SECRET,
        "CAPI_STREAM_KAFKA": json.dumps({"reconnect.backoff.ms": 10}),  # more retries, more logs
    }
    started = time.monotonic()
    code, out = _cli("--bootstrap", bootstrap, *command, env=env)
    took = time.monotonic() - started
    lines = out.strip().splitlines()
    assert code == 1, out
    assert "Traceback" not in out
    assert SECRET not in out
    assert len(lines) == 2, out
    assert "waiting up to 2 s" in lines[0]
    assert f"cannot reach Kafka at {bootstrap}" in lines[1]
    assert CONNECT_TIMEOUT_S <= took < CONNECT_TIMEOUT_S + 15


@pytest.mark.parametrize("workers", ["1", "2"])
def test_deliver_without_any_token_refuses_to_start(workers: str) -> None:
    """Delivering to Graph with no token at all: exit 2, one line naming the settings that hold
    one, before connecting (the bootstrap is unreachable and the answer is immediate)."""
    started = time.monotonic()
    code, out = _cli("--bootstrap", "127.0.0.1:9", "deliver", "--workers", workers)
    _assert_one_line(code, out, 2, "no access token", "CAPI_STREAM_ACCESS_TOKEN")
    assert time.monotonic() - started < 20


def test_deliver_to_a_gateway_needs_no_token(refused_port: int) -> None:
    """A Gateway destination authenticates with its access key: no token is needed, so the
    deliverer goes on to connect (and here says it cannot reach the cluster: exit 1)."""
    env = {
        "CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "CAPI_STREAM_DELIVERER__DESTINATION": "gateway",
        "CAPI_STREAM_DELIVERER__GATEWAY_URL": "http://127.0.0.1:9",
    }
    code, out = _cli("--bootstrap", f"127.0.0.1:{refused_port}", "deliver", env=env)
    assert code == 1, out
    assert "no access token" not in out
    assert "cannot reach Kafka" in out
