"""Destinations: lanes per event (Gateway filter, test codes) and requests whose secrets are in
the body, never the URL, read from the credentials provider at each request."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from stream.core.errors import ConfigError
from stream.core.window import LaneKey, PendingEvent
from stream.credentials import Credentials
from stream.deliver.destinations import Destinations
from tests.unit.deliver.helpers import TP

EVENT = orjson.dumps({"event_name": "Purchase", "event_id": "e1", "value": 5})


def item(lane: LaneKey) -> PendingEvent:
    return PendingEvent(TP, 0, lane, EVENT, "e1", "Purchase", 1e12)


def test_graph_requests_carry_token_and_proof_in_the_body_only(tmp_path: Path) -> None:
    """The token file is read through the provider: a rotated file changes the next body."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"111": "tok-old"}))
    credentials = Credentials(access_tokens_file=tokens, app_secret=SecretStr("s3cret"),
                              check_interval_s=0.0)  # fmt: skip
    subject = Destinations(names=("graph",), credentials=credentials, graph_base="http://g")
    lane = LaneKey("graph", "111", "TEST9")
    first = subject.request(lane, [item(lane)])
    assert first.url == "http://g/v25.0/111/events"
    body = orjson.loads(first.body)
    assert (body["access_token"], body["test_event_code"]) == ("tok-old", "TEST9")
    assert len(body["appsecret_proof"]) == 64
    tokens.write_text(json.dumps({"111": "tok-new-longer"}))
    assert (
        orjson.loads(subject.request(lane, [item(lane)]).body)["access_token"] == "tok-new-longer"
    )
    assert "tok" not in first.url


def test_both_destinations_and_the_gateway_filter() -> None:
    """Graph and Gateway: two lanes, the Gateway's without a test code; a filter that refuses
    the event leaves only Graph."""
    both = Destinations(names=("graph", "gateway"), credentials=Credentials(),
                        gateway_base="http://gw", gateway_access_key=SecretStr("key"))  # fmt: skip
    assert both.lanes("111", "T1", EVENT) == (
        LaneKey("graph", "111", "T1"), LaneKey("gateway", "111", None))  # fmt: skip
    gateway = both.lanes("111", "T1", EVENT)[1]
    request = both.request(gateway, [item(gateway)])
    assert request.url == "http://gw/capi/111/events"
    assert orjson.loads(request.body)["accessKey"] == "key"
    picky = Destinations(
        names=("graph", "gateway"), credentials=Credentials(), gateway_base="http://gw",
        gateway_filter=lambda event: event["value"] == 10,
    )  # fmt: skip
    assert picky.lanes("111", None, EVENT) == (LaneKey("graph", "111", None),)


def test_a_gateway_without_its_url_is_a_configuration_error() -> None:
    """The Gateway destination needs gateway_url."""
    with pytest.raises(ConfigError, match="GATEWAY_URL"):
        Destinations(names=("gateway",), credentials=Credentials())
