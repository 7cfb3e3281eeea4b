"""The pure parts of ``capi-stream check``: what a probe answer means, what is a secret."""

from __future__ import annotations

import orjson
import pytest

from stream.check import effective_settings, is_secret_property, mask_url, pixels_to_probe
from stream.config import Settings
from stream.core.probe import pixel_verdict


def _error(code: int, subcode: int | None = None, message: str = "m") -> bytes:
    error: dict[str, object] = {"code": code, "message": message, "fbtrace_id": "TRACE"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (400, _error(190, 463), "token invalid"),
        (400, _error(104), "token invalid"),
        (403, _error(200), "no permission on this pixel"),
        (400, _error(10), "no permission on this pixel"),
        (400, _error(100, 33), "unknown pixel (or hidden from this token)"),
        (400, _error(803), "unknown pixel (or hidden from this token)"),
        (400, _error(100, None, "Invalid appsecret_proof provided"), "app secret does not match"),
        (429, _error(4), "destination busy or failing (HTTP 429)"),
        (502, b"<html>", "unexpected answer (HTTP 502)"),
    ],
)
def test_pixel_verdict_names_the_problem(status: int, body: bytes, problem: str) -> None:
    """Each Graph answer to the probe becomes the problem an operator acts on."""
    verdict = pixel_verdict("123", status, body, None)
    assert not verdict.ok
    assert verdict.problem is not None
    assert verdict.problem.startswith(problem)


def test_pixel_verdict_line_quotes_meta() -> None:
    """The line keeps Meta's code, subcode, message and fbtrace_id for support."""
    line = pixel_verdict("123", 400, _error(190, 463, "Session has expired"), None).line()
    assert line == "pixel 123: token invalid (code 190/463: Session has expired; fbtrace_id TRACE)"


def test_pixel_verdict_ok_and_unreachable() -> None:
    """A 200 with the id is ok (the name shown); a transport failure says so."""
    ok = pixel_verdict("123", 200, b'{"id": "123", "name": "Shop"}', None)
    assert ok.ok
    assert ok.line() == 'pixel 123: ok (name "Shop")'
    down = pixel_verdict("123", None, None, "connection failed (ConnectError)")
    assert down.line() == "pixel 123: unreachable (connection failed (ConnectError))"


@pytest.mark.parametrize(
    "name",
    ["sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
     "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "basic.auth.user.info",
     "bearer.auth.token", "bearer.auth.client.secret", "sasl.jaas.config"],
)  # fmt: skip
def test_secret_properties_are_recognized(name: str) -> None:
    """Every property that holds a secret is masked."""
    assert is_secret_property(name)


@pytest.mark.parametrize(
    "name",
    ["sasl.username", "security.protocol", "ssl.ca.location", "ssl.key.location",
     "bearer.auth.credentials.source", "sasl.mechanism"],
)  # fmt: skip
def test_plain_properties_are_shown(name: str) -> None:
    """Names, mechanisms and file locations are worth seeing: they are not masked."""
    assert not is_secret_property(name)


def test_url_credentials_are_masked() -> None:
    """A URL's user:password is masked, its host kept."""
    assert mask_url("https://u:pw@reg.example:8081/x") == "https://**********@reg.example:8081/x"
    assert mask_url("https://reg.example") == "https://reg.example"


def test_effective_settings_lists_every_field() -> None:
    """Every top-level setting appears, with passthrough properties quoted."""
    rows = dict(effective_settings(Settings(kafka={"sasl.username": "me"})))
    assert rows['kafka."sasl.username"'] == '"me"'
    for field in Settings.model_fields:
        assert any(key == field or key.startswith(f"{field}.") for key in rows), field


def test_pixels_to_probe_are_the_configured_ones() -> None:
    """Asked-for pixels, pixels with their own token and the default pixel, each once."""
    settings = Settings(access_tokens={"2": "t"}, normalizer={"default_pixel_id": "3"})
    assert pixels_to_probe(settings, ["1", "2"]) == ["1", "2", "3"]


def test_topic_lines_name_missing_and_unauthorized_topics() -> None:
    """Each topic's line: partitions, missing (with the command that creates it), or not
    authorized (with the grants it needs)."""
    from stream.check import topic_lines
    from stream.kafka.cluster import TopicState

    lines = topic_lines([
        TopicState("raw", partitions=6),
        TopicState("enriched", error="UNKNOWN_TOPIC_OR_PART"),
        TopicState("dlq", error="TOPIC_AUTHORIZATION_FAILED"),
    ])  # fmt: skip
    assert lines == [
        "topic raw: ok (6 partitions)",
        "topic enriched: missing (create it: capi-stream topics create)",
        "topic dlq: not authorized (grant this principal DESCRIBE, READ and WRITE on it)",
    ]
