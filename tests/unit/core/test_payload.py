"""Request bodies: spliced event JSON, envelope fields, appsecret_proof, and no leaked secrets."""

from __future__ import annotations

import hashlib
import hmac
import re

import orjson
import pytest

from stream.core.offsets import TopicPartition
from stream.core.payload import appsecret_proof, data_array, gateway_body, graph_body
from stream.core.window import LaneKey, PendingEvent

TP = TopicPartition("capi.events.enriched", 0)
LANE = LaneKey("graph", "123456789")
TEST_LANE = LaneKey("graph", "123456789", "TEST4711")
TOKEN = "EAAB-secret-token-value"
SECRET = "app-secret-value"


def event(offset: int, json: bytes | None = None, lane: LaneKey = LANE) -> PendingEvent:
    body = json or orjson.dumps(
        {"event_name": "Purchase", "event_time": 1_700_000_000 + offset, "event_id": f"o-{offset}"}
    )
    return PendingEvent(TP, offset, lane, body, f"o-{offset}", "Purchase", 1e12)


EVENTS = [event(0), event(1), event(2)]


def test_appsecret_proof_is_hmac_sha256_keyed_by_the_secret() -> None:
    """The proof is lowercase hex HMAC-SHA256 with the app secret as key, the token as message."""
    # printf token | openssl dgst -sha256 -hmac secret
    assert appsecret_proof("token", "secret") == (
        "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a"
    )


def test_the_data_array_splices_the_events_verbatim() -> None:
    """Event bytes go into the body exactly as serialized, joined by commas."""
    weird = event(9, b'{"b":1, "a":"\\u00e9"}')  # key order and escapes would not survive a reparse
    expected = b"[" + EVENTS[0].event_json + b"," + weird.event_json + b"]"
    assert data_array(LANE, [EVENTS[0], weird]) == expected


def test_a_minimal_graph_body_is_just_data() -> None:
    """With no token, test code or partner agent the body is {"data": [...]}."""
    body = graph_body(LANE, EVENTS)
    assert orjson.loads(body) == {"data": [orjson.loads(e.event_json) for e in EVENTS]}
    assert body.startswith(b'{"data":[{')


def test_a_full_graph_body_carries_every_envelope_field() -> None:
    """test_event_code (from the lane), partner_agent, access_token and appsecret_proof."""
    body = orjson.loads(
        graph_body(
            TEST_LANE,
            [event(0, lane=TEST_LANE)],
            access_token=TOKEN,
            app_secret=SECRET,
            partner_agent="capi-stream/0.1",
        )
    )
    assert body["test_event_code"] == "TEST4711"
    assert body["partner_agent"] == "capi-stream/0.1"
    assert body["access_token"] == TOKEN
    expected = hmac.new(SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    assert body["appsecret_proof"] == expected


def test_envelope_strings_are_json_escaped() -> None:
    """Quotes, backslashes and non-ASCII in envelope fields stay valid JSON."""
    lane = LaneKey("graph", "1", 'T"\\é')
    body = graph_body(lane, [event(0, lane=lane)], partner_agent='a"b')
    assert orjson.loads(body)["test_event_code"] == 'T"\\é'
    assert orjson.loads(body)["partner_agent"] == 'a"b'


def test_an_app_secret_without_a_body_token_is_refused() -> None:
    """A proof belongs next to its token; without one the caller must handle both."""
    with pytest.raises(ValueError, match="access token") as caught:
        graph_body(LANE, EVENTS, app_secret=SECRET)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("count", [0, 1001])
def test_a_request_outside_1_to_1000_events_is_refused(count: int) -> None:
    """Meta takes 1..1,000 events per request (docs/capi.md §1.5)."""
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        graph_body(LANE, [event(i) for i in range(count)], access_token=TOKEN)


def test_events_of_another_lane_are_refused() -> None:
    """A body never mixes lanes: a test event must not reach production, nor another pixel."""
    with pytest.raises(ValueError, match="another lane"):
        graph_body(LANE, [event(0), event(1, lane=TEST_LANE)])


@pytest.mark.parametrize("json", [b"[1]", b'"x"', b'{"a":1', b" {}"])
def test_an_event_that_is_not_a_json_object_is_refused(json: bytes) -> None:
    """Splicing trusts the bytes, so the obvious corruptions are caught at the edges."""
    with pytest.raises(ValueError, match="not a serialized JSON object"):
        data_array(LANE, [event(0, json)])


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([], "1..1000"),
        ([event(0, b"nope")], "not a serialized JSON object"),
        ([event(0, lane=TEST_LANE)], "another lane"),
    ],
)
def test_no_error_quotes_the_token(events: list[PendingEvent], match: str) -> None:
    """Whatever goes wrong, the message names events and counts, never the access token."""
    with pytest.raises(ValueError, match=re.escape(match)) as caught:
        graph_body(LANE, events, access_token=TOKEN, app_secret=SECRET)
    assert TOKEN not in str(caught.value)
    assert SECRET not in str(caught.value)
    assert TOKEN not in repr(caught.value.args)


def test_the_gateway_body_puts_the_access_key_first() -> None:
    """A CAPI Gateway gets {"accessKey": ..., "data": [...]} as the Java and PHP SDKs send."""
    body = gateway_body(LANE, EVENTS, access_key="gw-key")
    assert body.startswith(b'{"accessKey":"gw-key","data":[')
    assert orjson.loads(body)["data"] == [orjson.loads(e.event_json) for e in EVENTS]


def test_the_gateway_body_without_a_key_is_just_data() -> None:
    """The Gateway docs' example omits accessKey; None leaves it out."""
    assert orjson.loads(gateway_body(LANE, EVENTS)) == {
        "data": [orjson.loads(e.event_json) for e in EVENTS]
    }


def test_a_test_lane_cannot_go_to_a_gateway() -> None:
    """The Gateway body has no test_event_code, so test events would count as production."""
    with pytest.raises(ValueError, match="test_event_code"):
        gateway_body(TEST_LANE, [event(0, lane=TEST_LANE)], access_key="gw-key")
