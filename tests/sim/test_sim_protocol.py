"""The wire: body encodings, tokens, appsecret_proof, the Gateway endpoint and HTTP details."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from stream.sim import Simulator
from tests.sim.conftest import StartSim, default_config
from tests.sim.events import (
    EVENTS_PATH,
    OTHER_PIXEL,
    PIXEL,
    TOKEN,
    error_of,
    event,
    post,
)

SECRET = "app-secret-for-tests"


def proof(token: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def test_form_encoded_body_is_accepted(client: httpx.Client) -> None:
    """A form body with data as a JSON string of an array of objects is accepted."""
    form = {"data": orjson.dumps([event(0)]).decode(), "access_token": TOKEN}
    response = client.post(EVENTS_PATH, data=form)
    assert response.status_code == 200
    assert response.json()["events_received"] == 1


def test_form_body_in_the_python_sdk_shape_is_accepted(client: httpx.Client) -> None:
    """A form body whose data is an array of JSON strings (Python SDK, sync) is accepted."""
    data = orjson.dumps([orjson.dumps(event(i)).decode() for i in range(2)]).decode()
    response = client.post(EVENTS_PATH, data={"data": data, "access_token": TOKEN})
    assert response.json()["events_received"] == 2


def test_multipart_body_is_accepted(client: httpx.Client) -> None:
    """A multipart body (curl -F, as in Meta's docs) is accepted."""
    files = {"data": (None, orjson.dumps([event(0)]).decode()), "access_token": (None, TOKEN)}
    assert client.post(EVENTS_PATH, files=files).status_code == 200


def test_chunked_body_is_accepted(client: httpx.Client) -> None:
    """A chunked request body is read whole."""

    def chunks() -> Iterator[bytes]:
        payload = orjson.dumps({"data": [event(i) for i in range(50)], "access_token": TOKEN})
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    headers = {"content-type": "application/json"}
    response = client.post(EVENTS_PATH, content=chunks(), headers=headers)
    assert response.json()["events_received"] == 50


def test_unparseable_json_body_is_refused(client: httpx.Client) -> None:
    """A body that is not JSON answers code 100."""
    headers = {"content-type": "application/json"}
    response = client.post(EVENTS_PATH, content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_token_in_the_query_is_accepted(client: httpx.Client) -> None:
    """access_token may come in the query string."""
    response = client.post(EVENTS_PATH, params={"access_token": TOKEN}, json={"data": [event(0)]})
    assert response.status_code == 200


def test_missing_token_answers_code_104(client: httpx.Client) -> None:
    """A request without an access token answers code 104."""
    response = client.post(EVENTS_PATH, json={"data": [event(0)]})
    assert response.status_code == 400
    assert error_of(response)["code"] == 104


def test_unknown_token_answers_code_190(client: httpx.Client, sim: Simulator) -> None:
    """An unknown token answers code 190 without echoing the token."""
    response = client.post(EVENTS_PATH, json={"data": [event(0)], "access_token": "stolen-xyz"})
    assert response.status_code == 400
    assert error_of(response)["code"] == 190
    assert "stolen-xyz" not in response.text
    assert sim.stats(PIXEL).rejected == 1


def test_token_without_access_to_the_pixel_is_refused(client: httpx.Client) -> None:
    """A known token on a pixel it may not write to answers a permission error."""
    response = client.post(
        f"/v25.0/{OTHER_PIXEL}/events", json={"data": [event(0)], "access_token": TOKEN}
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == 200


def test_wildcard_token_writes_to_every_pixel(start_sim: StartSim) -> None:
    """A token allowed on "*" may write to any pixel."""
    sim = start_sim(default_config(tokens={TOKEN: frozenset({"*"})}))
    with httpx.Client(base_url=sim.url) as http:
        response = http.post(
            f"/v25.0/{OTHER_PIXEL}/events", json={"data": [event(0)], "access_token": TOKEN}
        )
    assert response.status_code == 200


def test_no_tokens_configured_accepts_any_token(start_sim: StartSim) -> None:
    """With no tokens configured, any non-empty token may write anywhere."""
    sim = start_sim(default_config(tokens={}))
    with httpx.Client(base_url=sim.url) as http:
        response = http.post(EVENTS_PATH, json={"data": [event(0)], "access_token": "anything"})
    assert response.status_code == 200


@pytest.fixture
def secret_client(start_sim: StartSim) -> Iterator[httpx.Client]:
    sim = start_sim(default_config(app_secret=SECRET))
    with httpx.Client(base_url=sim.url) as http:
        yield http


def test_valid_appsecret_proof_is_accepted(secret_client: httpx.Client) -> None:
    """With an app secret, HMAC-SHA256(secret, token) as hex is accepted."""
    assert post(secret_client, [event(0)], appsecret_proof=proof(TOKEN)).status_code == 200


def test_appsecret_proof_in_the_query_is_accepted(secret_client: httpx.Client) -> None:
    """appsecret_proof may come in the query string with the token."""
    params = {"access_token": TOKEN, "appsecret_proof": proof(TOKEN)}
    assert secret_client.post(EVENTS_PATH, params=params, json={"data": [event(0)]}).is_success


@pytest.mark.parametrize("given", [None, proof(TOKEN, "other-secret"), "00"])
def test_missing_or_wrong_appsecret_proof_is_refused(
    secret_client: httpx.Client, given: str | None
) -> None:
    """With an app secret, a missing or wrong proof answers code 100."""
    extra = {} if given is None else {"appsecret_proof": given}
    response = post(secret_client, [event(0)], **extra)
    assert response.status_code == 400
    assert "appsecret_proof" in error_of(response)["message"]
    assert SECRET not in response.text


def test_gateway_endpoint_answers_202(client: httpx.Client, sim: Simulator) -> None:
    """POST /capi/{pixel}/events with accessKey and data answers 202 and records the events."""
    response = client.post(
        f"/capi/{PIXEL}/events", json={"accessKey": "key", "data": [event(0), event(1)]}
    )
    assert response.status_code == 202
    assert sim.stats(PIXEL).accepted == 2


def test_gateway_refuses_an_unknown_access_key(start_sim: StartSim) -> None:
    """With gateway keys configured, an unknown accessKey answers 401."""
    sim = start_sim(default_config(gateway_keys={"good-key": frozenset({PIXEL})}))
    with httpx.Client(base_url=sim.url) as http:
        bad = http.post(f"/capi/{PIXEL}/events", json={"accessKey": "bad", "data": [event(0)]})
        good = http.post(
            f"/capi/{PIXEL}/events", json={"accessKey": "good-key", "data": [event(1)]}
        )
    assert (bad.status_code, good.status_code) == (401, 202)


def test_gateway_validates_events(client: httpx.Client) -> None:
    """An invalid event sent to the Gateway endpoint is refused as Graph would."""
    response = client.post(f"/capi/{PIXEL}/events", json={"data": [event(0, event_name="")]})
    assert response.status_code == 400


def test_unknown_path_answers_code_2500(client: httpx.Client) -> None:
    """A path that is not an events edge answers Graph's unknown-path error."""
    response = client.post(f"/v25.0/{PIXEL}/adspixels", json={})
    assert response.status_code == 400
    assert error_of(response)["code"] == 2500


def test_get_on_the_events_edge_is_unsupported(client: httpx.Client) -> None:
    """Only POST is supported on the events edge."""
    response = client.get(EVENTS_PATH)
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_api_version_is_echoed(client: httpx.Client) -> None:
    """The answer names the API version of the path, as Graph does."""
    response = client.post(
        f"/v26.0/{PIXEL}/events", json={"data": [event(0)], "access_token": TOKEN}
    )
    assert response.headers["facebook-api-version"] == "v26.0"


def test_connection_is_kept_alive(client: httpx.Client) -> None:
    """HTTP/1.1 requests keep the connection open for the next request."""
    response = post(client, [event(0)])
    assert response.headers["connection"] == "keep-alive"
    assert response.http_version == "HTTP/1.1"


def test_connection_close_is_honoured(sim: Simulator) -> None:
    """A request saying Connection: close gets its answer and then EOF."""
    payload = orjson.dumps({"data": [event(0)], "access_token": TOKEN})
    request = (
        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as raw:
        raw.sendall(request)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in received


def test_garbage_request_line_answers_400(sim: Simulator) -> None:
    """Bytes that are not HTTP are answered 400 and the connection closed."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as raw:
        raw.sendall(b"HELLO\r\n\r\n")
        received = raw.recv(65536)
    assert received.startswith(b"HTTP/1.1 400")


def test_healthz(client: httpx.Client) -> None:
    """GET /_sim/healthz answers ok."""
    assert client.get("/_sim/healthz").json() == {"status": "ok"}
