"""``capi-stream check`` as an operator runs it: a real broker, a real registry, the simulator.

Each case runs the real command as its own process with only the environment given here, and
looks at what a person sees: the exit code, the first line, the line of each finding, and that
no secret is ever printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from stream.sim import SimConfig, Simulator
from tests.integration.helpers import ROOT

TOKEN = "tok-check-good-5f1e"
OTHER = "tok-check-other-77aa"
BAD = "tok-check-unknown-0c3d"
MINE, THEIRS, NOBODYS = "1110001", "2220002", "3330003"
SIM_TOKENS = {TOKEN: frozenset({MINE}), OTHER: frozenset({THEIRS})}


def _check(*argv: str, env: dict[str, str], timeout: float = 90) -> tuple[int, list[str]]:
    """Exit code and the lines of ``capi-stream check`` (stdout and stderr together)."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAPI_STREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", *argv, "check"], env={**base, **env}, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout.splitlines()


def _line(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, "\n".join(lines)
    return found[0]


def _topics_env(unique: Callable[[str], str]) -> tuple[dict[str, str], list[str]]:
    names = [unique("raw"), unique("enr"), unique("dlq")]
    topics = {"raw": names[0], "enriched": names[1], "dlq": names[2]}
    return {"CAPI_STREAM_TOPICS": json.dumps(topics)}, names


@pytest.mark.integration
def test_check_passes_on_a_ready_setup(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
) -> None:
    """Topics exist, the registry answers, the token may use its pixel: exit 0, each finding
    ``ok``, the pixel's name shown, the token never."""
    env, names = _topics_env(unique)
    make_topics(*names, partitions=3)
    with Simulator(SimConfig(tokens=SIM_TOKENS)) as sim:
        code, lines = _check("--bootstrap", kafka_bootstrap, env={
            **env, "CAPI_STREAM_ACCESS_TOKENS": json.dumps({MINE: TOKEN}),
            "CAPI_STREAM_DELIVERER__GRAPH_URL": sim.url,
            "CAPI_STREAM_SCHEMA_REGISTRY_URL": schema_registry_url,
        })  # fmt: skip
        requests = sim.stats().requests
    text = "\n".join(lines)
    assert code == 0, text
    assert lines[0] == "configuration: valid"
    assert _line(lines, "kafka: ").startswith("kafka: ok (1 broker at ")
    for name in names:
        assert _line(lines, f"topic {name}:") == f"topic {name}: ok (3 partitions)"
    assert _line(lines, "schema registry: ").startswith("schema registry: ok (")
    assert _line(lines, f"pixel {MINE}:") == f'pixel {MINE}: ok (name "Simulated pixel {MINE}")'
    assert lines[-1] == "check: ok"
    assert TOKEN not in text
    assert requests == 0  # the probe is a read: the events edge was never asked


@pytest.mark.integration
def test_check_names_what_is_wrong(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """A missing topic, an invalid token, a pixel the token may not use and an unknown pixel:
    exit 1, one line each naming the problem and Meta's code, then the count."""
    env, names = _topics_env(unique)
    make_topics(*names[1:], partitions=2)  # the raw topic is missing
    with Simulator(SimConfig(tokens=SIM_TOKENS)) as sim:
        code, lines = _check("--bootstrap", kafka_bootstrap, env={
            **env, "CAPI_STREAM_ACCESS_TOKENS": json.dumps({MINE: BAD, THEIRS: TOKEN}),
            "CAPI_STREAM_ACCESS_TOKEN": TOKEN,
            "CAPI_STREAM_DELIVERER__GRAPH_URL": sim.url,
            "CAPI_STREAM_NORMALIZER__DEFAULT_PIXEL_ID": NOBODYS,
        })  # fmt: skip
    text = "\n".join(lines)
    assert code == 1, text
    assert lines[0] == "configuration: valid"
    assert _line(lines, f"topic {names[0]}:") == (
        f"topic {names[0]}: missing (create it: capi-stream topics create)")  # fmt: skip
    assert _line(lines, "schema registry: ").startswith("schema registry: not configured")
    assert _line(lines, f"pixel {MINE}:").startswith(f"pixel {MINE}: token invalid (code 190: ")
    assert _line(lines, f"pixel {THEIRS}:").startswith(
        f"pixel {THEIRS}: no permission on this pixel (code 200: ")  # fmt: skip
    assert _line(lines, f"pixel {NOBODYS}:").startswith(
        f"pixel {NOBODYS}: unknown pixel (or hidden from this token) (code 100/33: ")  # fmt: skip
    assert "fbtrace_id" in _line(lines, f"pixel {MINE}:")
    assert lines[-1] == "check: 4 problems found"
    for secret in (TOKEN, BAD):
        assert secret not in text


SECRET = "s3kr1t-check"

#: Every kind of secret a configuration can hold, each with its own value to grep for.
SECRET_SETTINGS = {
    "CAPI_STREAM_ACCESS_TOKEN": f"{SECRET}-access-token",
    "CAPI_STREAM_ACCESS_TOKENS": json.dumps({MINE: f"{SECRET}-pixel-token"}),
    "CAPI_STREAM_APP_SECRET": f"{SECRET}-app-secret",
    "CAPI_STREAM_GATEWAY_ACCESS_KEY": f"{SECRET}-gateway-key",
    "CAPI_STREAM_KAFKA": json.dumps({
        "sasl.username": "visible-user",
        "sasl.password": f"{SECRET}-sasl-password",
        "ssl.key.password": f"{SECRET}-ssl-key-password",
        "ssl.keystore.password": f"{SECRET}-keystore-password",
        "sasl.oauthbearer.client.secret": f"{SECRET}-oauth-secret",
    }),
    "CAPI_STREAM_CONSUMER": json.dumps({"ssl.key.pem": f"{SECRET}-key-pem"}),
}  # fmt: skip
REGISTRY_AUTH = [
    {"basic.auth.user.info": f"user:{SECRET}-basic-auth"},
    {"bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": f"{SECRET}-bearer",
     "bearer.auth.logical.cluster": "lsrc-1", "bearer.auth.identity.pool.id": "pool-1"},
]  # fmt: skip


@pytest.mark.parametrize("registry_conf", REGISTRY_AUTH, ids=["basic", "bearer"])
def test_check_masks_every_secret(registry_conf: dict[str, str]) -> None:
    """Tokens, the app secret, the Gateway key and every secret Kafka or registry property
    are fed in; none appears in the output, each setting is listed masked, and a non-secret
    property (the SASL user name) is shown. Nothing is reachable: exit 1, findings named."""
    env = {
        **SECRET_SETTINGS,
        "CAPI_STREAM_SCHEMA_REGISTRY_URL": "http://127.0.0.1:9/apis/ccompat/v7",
        "CAPI_STREAM_SCHEMA_REGISTRY": json.dumps(registry_conf),
        "CAPI_STREAM_DELIVERER__GRAPH_URL": "http://127.0.0.1:9",
        "CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S": "1",
    }
    code, lines = _check("--bootstrap", "127.0.0.1:9", env=env)
    text = "\n".join(lines)
    assert code == 1, text
    assert lines[0] == "configuration: valid"
    assert SECRET not in text
    for key in ("access_token", f"access_tokens.{MINE}", "app_secret", "gateway_access_key",
                'kafka."sasl.password"', 'kafka."ssl.key.password"',
                'kafka."ssl.keystore.password"', 'kafka."sasl.oauthbearer.client.secret"',
                'consumer."ssl.key.pem"'):  # fmt: skip
        assert f"  {key} = **********" in lines, key
    for name, value in registry_conf.items():
        if SECRET in value:
            assert f'  schema_registry."{name}" = **********' in lines
    assert '  kafka."sasl.username" = "visible-user"' in lines
    assert _line(lines, "kafka: cannot reach Kafka at 127.0.0.1:9")
    assert _line(lines, "schema registry: ")
    assert _line(lines, f"pixel {MINE}: unreachable")
    assert lines[-1] == "check: 3 problems found"


def test_check_refuses_an_invalid_configuration_in_one_line() -> None:
    """An invalid setting: exit 2, one line naming it, before anything connects."""
    code, lines = _check(env={"CAPI_STREAM_DELIVERER__LINGER_MS": "soon"})
    assert code == 2
    assert len(lines) == 1
    assert "CAPI_STREAM_DELIVERER__LINGER_MS" in lines[0]


def test_check_of_a_gateway_destination_reaches_it_without_a_token() -> None:
    """With a Gateway destination no token is needed and none is probed: the Gateway is asked
    for an answer (any status) and the access key's presence is shown, never its value."""
    key = f"{SECRET}-gw-key"
    with Simulator(SimConfig(gateway_keys={key: frozenset({"*"})})) as sim:
        url = sim.url
        code, lines = _check("--bootstrap", "127.0.0.1:9", env={
            "CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S": "1",
            "CAPI_STREAM_DELIVERER__DESTINATION": "gateway",
            "CAPI_STREAM_DELIVERER__GATEWAY_URL": sim.url,
            "CAPI_STREAM_GATEWAY_ACCESS_KEY": key,
        })  # fmt: skip
    text = "\n".join(lines)
    assert code == 1, text  # Kafka is not there
    assert _line(lines, "gateway: ").startswith(f"gateway: reachable at {url} (HTTP ")
    assert "access key set" in text
    assert not [line for line in lines if line.startswith("pixel")]
    assert key not in text
