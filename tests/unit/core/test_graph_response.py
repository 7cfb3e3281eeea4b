"""Classification of Graph API answers into Accepted, Transient, Throttled, Setup, Invalid."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.graph_response import (
    Accepted,
    Invalid,
    MetaError,
    Outcome,
    Setup,
    Throttled,
    Transient,
    classify,
    event_index,
)

NO_HEADERS: dict[str, str] = {}


def graph_error(**fields: object) -> bytes:
    """A Graph error envelope (docs/capi.md §5.2) with the fields given."""
    return orjson.dumps({"error": fields})


def answer(status: int, body: bytes | None, sent: int = 10, **headers: str) -> Outcome:
    return classify(status, body, headers, None, sent)


# Real-shaped bodies, as docs/capi.md §5 and the Graph error reference print them.
STALE_EVENT = graph_error(
    message="Invalid parameter",
    type="OAuthException",
    code=100,
    error_subcode=2804003,
    is_transient=False,
    error_user_title="Event Timestamp Too Old",
    error_user_msg=(
        "The timestamp for this event is too far in the past. Events need to be sent from your"
        " server within 7 days of when they occurred."
    ),
    fbtrace_id="AeX1dGq7oT0Sg5bDzOgQ2cE",
)
UNHASHED_PII = graph_error(
    message="Invalid parameter",
    type="OAuthException",
    code=100,
    error_subcode=2804016,
    is_transient=False,
    error_user_title="Unhashed customer information parameters",
    error_user_msg="Event 17: customer information parameter em must be hashed with SHA256.",
    fbtrace_id="A3e0Cg7hXq2",
)
TOKEN_EXPIRED = graph_error(
    message=(
        "Error validating access token: Session has expired on Tuesday, 10-Sep-24 09:00:00 PDT."
        " The current time is Tuesday, 10-Sep-24 10:12:31 PDT."
    ),
    type="OAuthException",
    code=190,
    error_subcode=463,
    fbtrace_id="BqkD4Yk2j7y",
)
USER_LIMIT = graph_error(
    message="(#17) User request limit reached",
    type="OAuthException",
    is_transient=True,
    code=17,
    error_subcode=2446079,
    fbtrace_id="Ah1m7Z3",
)
UNKNOWN_ERROR = graph_error(
    message="An unknown error occurred", type="OAuthException", code=1, error_subcode=99,
    is_transient=False, fbtrace_id="F00",
)  # fmt: skip
SERVICE_DOWN = graph_error(
    message="An unexpected error has occurred. Please retry your request later.",
    type="OAuthException",
    is_transient=True,
    code=2,
    fbtrace_id="Dk3",
)
NO_SUCH_PIXEL = graph_error(
    message=(
        "Unsupported post request. Object with ID '123456789' does not exist, cannot be loaded"
        " due to missing permissions, or does not support this operation."
    ),
    type="GraphMethodException",
    code=100,
    error_subcode=33,
    fbtrace_id="Cz9",
)


def test_a_full_count_is_accepted() -> None:
    """200 with events_received equal to the batch size is Accepted and not short."""
    body = b'{"events_received":10,"messages":[],"fbtrace_id":"AbCdEf"}'
    assert answer(200, body) == Accepted(10, (), "AbCdEf", short=False)


def test_a_lower_count_is_accepted_but_short() -> None:
    """Meta counting fewer events than were sent is Accepted with short set, for an alert."""
    body = b'{"events_received":7,"messages":["2 events deduplicated"],"fbtrace_id":"X"}'
    outcome = answer(200, body)
    assert outcome == Accepted(7, ("2 events deduplicated",), "X", short=True)


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[],"fbtrace_id":"X"}',
        b'{"events_received":"10"}',
        b'{"events_received":true}',
        b"[]",
        b"<html>oops</html>",
        b"",
        None,
    ],
)
def test_a_200_without_a_count_is_transient(body: bytes | None) -> None:
    """A 2xx that does not say how many events Meta took is not an acceptance."""
    assert isinstance(answer(200, body), Transient)


def test_a_200_page_saying_service_unavailable_is_transient() -> None:
    """The Python SDK's rule: a 200 that mentions Service Unavailable is an outage."""
    body = b'{"events_received":10,"note":"Service Unavailable"}'
    assert isinstance(answer(200, body), Transient)


def test_a_transport_error_is_transient_with_its_reason() -> None:
    """Timeouts and resets come in as text and are retried with a hint if one arrived."""
    outcome = classify(None, None, {"Retry-After": "3"}, "ReadTimeout", 10)
    assert outcome == Transient("transport: ReadTimeout", 3.0)


def test_no_status_and_no_error_is_transient() -> None:
    """An answer with nothing in it is retried, never taken as success."""
    assert classify(None, None, NO_HEADERS, None, 10) == Transient("no response", None)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
@pytest.mark.parametrize("body", [b"", b"<html>Bad Gateway</html>", b'{"unrelated":1}'])
def test_a_bare_5xx_or_timeout_status_is_transient(status: int, body: bytes) -> None:
    """Without a Graph error code, 5xx and 408 are retried."""
    assert isinstance(answer(status, body), Transient)


@pytest.mark.parametrize("body", [UNKNOWN_ERROR, SERVICE_DOWN])
def test_graph_codes_1_and_2_are_transient(body: bytes) -> None:
    """Unknown error and service unavailable are retried; the error is kept as evidence."""
    outcome = answer(500, body)
    assert isinstance(outcome, Transient)
    assert outcome.error is not None
    assert outcome.error.code in (1, 2)


def test_is_transient_makes_any_other_code_transient() -> None:
    """Meta's own is_transient hint is believed, even on a 400."""
    body = graph_error(message="Please retry", type="OAuthException", code=100, is_transient=True)
    assert isinstance(answer(400, body), Transient)


def test_a_negative_code_is_transient() -> None:
    """Negative codes are Meta-internal errors; docs/capi.md §5.3 says retry."""
    assert isinstance(answer(400, graph_error(message="internal", code=-3)), Transient)


def test_an_unknown_code_on_a_5xx_is_transient() -> None:
    """A code we do not know is judged by the status: 5xx retries."""
    assert isinstance(answer(500, graph_error(message="huh", code=9999)), Transient)


@pytest.mark.parametrize(
    ("code", "subcode"),
    [(4, 1504022), (4, 1504039), (17, 2446079), (32, None), (341, None), (613, 1487742),
     (80000, None), (80004, 2446079), (80014, None)],
)  # fmt: skip
def test_rate_limit_codes_are_throttled(code: int, subcode: int | None) -> None:
    """Throttle codes back off the lane, even when Meta also marks them transient."""
    body = graph_error(
        message=f"(#{code}) limit reached", type="OAuthException", code=code,
        error_subcode=subcode, is_transient=True,
    )  # fmt: skip
    outcome = answer(400, body)
    assert isinstance(outcome, Throttled)
    assert outcome.code == code


def test_a_throttle_carries_the_business_use_case_wait() -> None:
    """X-Business-Use-Case-Usage minutes become the throttle's retry_after_s."""
    buc = '{"9876":[{"type":"ads_management","estimated_time_to_regain_access":5}]}'
    outcome = classify(400, USER_LIMIT, {"X-Business-Use-Case-Usage": buc}, None, 10)
    assert isinstance(outcome, Throttled)
    assert (outcome.code, outcome.retry_after_s) == (17, 300.0)
    assert outcome.error is not None
    assert outcome.error.error_subcode == 2446079


def test_a_bare_429_is_throttled_without_a_code() -> None:
    """HTTP 429 with no Graph body is a throttle; Retry-After is honoured."""
    assert classify(429, b"", {"Retry-After": "12"}, None, 10) == Throttled(None, 12.0)


def test_a_429_with_a_graph_body_is_throttled() -> None:
    """429 wins over whatever code the body carries."""
    outcome = answer(429, graph_error(message="slow down", code=100))
    assert isinstance(outcome, Throttled)


def test_an_expired_token_is_setup_with_its_evidence() -> None:
    """Code 190 halts the lane and keeps code, subcode, message and fbtrace_id."""
    outcome = answer(400, TOKEN_EXPIRED)
    assert isinstance(outcome, Setup)
    assert (outcome.code, outcome.subcode, outcome.fbtrace_id) == (190, 463, "BqkD4Yk2j7y")
    assert outcome.message.startswith("Error validating access token")


@pytest.mark.parametrize("code", [3, 10, 102, 200, 250, 299, 368, 803])
def test_permission_session_and_policy_codes_are_setup(code: int) -> None:
    """Permissions, sessions, policy blocks and unknown objects are not the events' fault."""
    body = graph_error(message=f"(#{code}) Permissions error", type="OAuthException", code=code)
    assert isinstance(answer(403, body), Setup)


def test_a_pixel_that_does_not_exist_is_setup_not_invalid() -> None:
    """Code 100 subcode 33 names a wrong pixel id; isolating would dead-letter every event."""
    outcome = answer(400, NO_SUCH_PIXEL)
    assert isinstance(outcome, Setup)
    assert (outcome.code, outcome.subcode) == (100, 33)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_bare_auth_or_not_found_status_is_setup(status: int) -> None:
    """Without a Graph body, 401/403/404 mean a wrong token, key or URL (a Gateway, a proxy)."""
    assert isinstance(answer(status, b"Forbidden"), Setup)


def test_invalid_parameter_keeps_the_whole_meta_error() -> None:
    """Code 100 is Invalid, and the dead letter gets every field of Meta's envelope."""
    outcome = answer(400, STALE_EVENT)
    assert outcome == Invalid(
        MetaError(
            code=100,
            error_subcode=2804003,
            type="OAuthException",
            message="Invalid parameter",
            error_user_title="Event Timestamp Too Old",
            error_user_msg=(
                "The timestamp for this event is too far in the past. Events need to be sent"
                " from your server within 7 days of when they occurred."
            ),
            fbtrace_id="AeX1dGq7oT0Sg5bDzOgQ2cE",
        ),
        event_index=None,
    )


def test_an_index_in_error_user_msg_is_extracted() -> None:
    """'Event 17: ...' in error_user_msg names event 17 of the request."""
    outcome = answer(400, UNHASHED_PII, sent=50)
    assert isinstance(outcome, Invalid)
    assert outcome.event_index == 17


def test_code_100_on_a_5xx_is_still_invalid() -> None:
    """The Graph code decides over the status (docs/capi.md §5.2)."""
    assert isinstance(answer(500, STALE_EVENT), Invalid)


def test_an_unknown_code_on_a_4xx_is_invalid() -> None:
    """Other invalid-parameter-like errors go to isolation."""
    assert isinstance(answer(400, graph_error(message="Bad", code=1234)), Invalid)


@pytest.mark.parametrize(
    "body", [b"", b"<html>Bad Request</html>", b"\xff\xfe", b'"str"', b'{"error":{"code":1e999}}']
)
def test_an_unreadable_4xx_is_invalid_with_the_body_as_evidence(body: bytes) -> None:
    """A 4xx body that is not a Graph envelope still goes to isolation, with a snippet kept."""
    outcome = answer(400, body)
    assert isinstance(outcome, Invalid)
    assert outcome.meta_error.code is None
    assert outcome.meta_error.message.startswith("HTTP 400: ")


@pytest.mark.parametrize(
    ("envelope", "index"),
    [
        ({"error_data": {"event_index": 3}}, 3),
        ({"error_data": '{"event_index": 4}'}, 4),
        ({"error_data": {"errors": [{"event_index": "5", "message": "bad"}]}}, 5),
        ({"error_data": {"event_index": 2}, "error_user_msg": "Event 9: bad"}, 2),
        ({"error_user_msg": "Invalid value at event_index 6"}, 6),
        ({"error_user_msg": 'Problem with "event_index": 7'}, 7),
        ({"message": "(#100) Invalid parameter at events[8].user_data"}, 8),
        ({"message": "data[ 9 ] has an invalid event_time"}, 9),
        ({"error_user_title": "Event #1: bad currency"}, 1),
        ({"error_data": "event 0: missing action_source"}, 0),
        ({"error_user_msg": "Event 12: out of range"}, None),
        ({"error_data": {"event_index": -1}}, None),
        ({"error_data": {"event_index": True}}, None),
        ({"error_user_msg": "Events need to be sent within 7 days"}, None),
        ({"message": "Invalid parameter"}, None),
        ({}, None),
    ],
)
def test_event_index_sources_and_patterns(envelope: dict[str, object], index: int | None) -> None:
    """error_data.event_index wins; else the text names it; out-of-range or absent is None."""
    assert event_index(envelope, sent=10) == index


def test_a_gateway_202_is_accepted_for_every_event() -> None:
    """The CAPI Gateway answers a bare 202; the SDK counts that as all events taken."""
    outcome = classify(202, b"", NO_HEADERS, None, 10, gateway=True)
    assert outcome == Accepted(10, (), None, short=False)


def test_a_gateway_202_with_a_count_uses_the_count() -> None:
    """When a Gateway does report events_received, it is believed."""
    outcome = classify(202, b'{"events_received":9}', NO_HEADERS, None, 10, gateway=True)
    assert outcome == Accepted(9, (), None, short=True)


def test_a_graph_202_without_a_count_is_transient() -> None:
    """Outside Gateway mode a 202 is just a 2xx without events_received."""
    assert isinstance(answer(202, b""), Transient)


def test_an_unexpected_status_is_transient() -> None:
    """A redirect or informational status is not success and not the events' fault."""
    assert isinstance(answer(302, b""), Transient)


def test_a_retry_after_date_counts_when_now_is_given() -> None:
    """classify passes now through to the hint parser."""
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}
    outcome = classify(503, b"", headers, None, 1, now=1_700_000_000.0)
    assert isinstance(outcome, Transient)
    assert outcome.retry_after_s == 60.0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(
    status=st.none() | st.integers(100, 599),
    body=st.none()
    | st.binary(max_size=200)
    | _JSON.map(orjson.dumps)
    | st.dictionaries(
        st.sampled_from(["code", "error_subcode", "is_transient", "error_data", "message"]), _JSON
    ).map(lambda e: orjson.dumps({"error": e})),
    sent=st.integers(1, 1000),
    gateway=st.booleans(),
)
def test_no_answer_makes_classify_raise(
    status: int | None, body: bytes | None, sent: int, gateway: bool
) -> None:
    """Any status and any body classify into one of the five outcomes."""
    outcome = classify(status, body, NO_HEADERS, None, sent, gateway=gateway)
    assert isinstance(outcome, Accepted | Transient | Throttled | Setup | Invalid)
    if isinstance(outcome, Invalid) and outcome.event_index is not None:
        assert 0 <= outcome.event_index < sent


def test_wrong_appsecret_proof_is_a_setup_error_not_an_invalid_event() -> None:
    """Code 100 about appsecret_proof halts the lane instead of dead-lettering its events."""
    body = (
        b'{"error":{"message":"Invalid appsecret_proof provided in the API argument",'
        b'"type":"GraphMethodException","code":100,"fbtrace_id":"AbC"}}'
    )
    outcome = classify(400, body, {}, None, 10)
    assert isinstance(outcome, Setup)
    assert outcome.code == 100
