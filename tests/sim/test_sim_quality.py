"""The simulator's Dataset Quality endpoint answers Meta's shape from what it received."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from stream.sim import FaultConfig, Simulator
from stream.sim.quality import parse_fields, sim_emq
from tests.sim.events import EM, FN, PH, PIXEL, TOKEN, UA, event, post

FIELDS = (
    "web{event_name,event_match_quality{composite_score,match_key_feedback{identifier,"
    "coverage{percentage}},diagnostics{name,percentage}},event_coverage{percentage,"
    "goal_percentage},acr{percentage},data_freshness{upload_frequency}}"
)
QUALITY = "/v25.0/dataset_quality"


def _quality(client: httpx.Client, *, token: str | None = TOKEN, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(QUALITY, params={"dataset_id": PIXEL, "fields": FIELDS, **params},
                      headers=headers)  # fmt: skip


def _rows(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return {row["event_name"]: row for row in resp.json()["web"]}


def _coverage(row: dict[str, Any]) -> dict[str, float]:
    feedback = row["event_match_quality"]["match_key_feedback"]
    return {f["identifier"]: f["coverage"]["percentage"] for f in feedback}


def test_coverage_emq_event_coverage_and_freshness(client: httpx.Client) -> None:
    """8 Purchases: all with e-mail, 5 with phone, 4 with IP (all with UA), 2 without event_id;
    the numbers follow, and the EMQ is the documented formula of that coverage."""
    events = []
    for i in range(8):
        user_data: dict[str, Any] = {"em": [EM], "client_user_agent": UA}
        if i < 5:
            user_data["ph"] = [PH]
        if i % 2 == 0:
            user_data["client_ip_address"] = "203.0.113.7"
        purchase = event(i, user_data=user_data)
        if i >= 6:
            del purchase["event_id"]
        events.append(purchase)
    lead = {"em": [EM], "fn": [FN], "client_user_agent": UA}
    events.append(event(99, event_name="Lead", user_data=lead))
    assert post(client, events).status_code == 200

    rows = _rows(_quality(client))
    assert set(rows) == {"Purchase", "Lead"}
    purchase = rows["Purchase"]
    assert _coverage(purchase) == {
        "email": 100.0, "phone": 62.5, "ip_address": 50.0, "user_agent": 100.0,
    }  # fmt: skip
    expected = sim_emq({"em": 1.0, "ph": 0.625, "client_ip_address": 0.5,
                        "client_user_agent": 1.0, "ip_ua": 0.5})  # fmt: skip
    # 1 + 9 * (0.25 + 0.2 * 0.625 + 0.1 * 0.5) = 4.825
    assert expected == 4.8
    assert purchase["event_match_quality"]["composite_score"] == expected
    assert purchase["event_coverage"] == {"percentage": 75.0, "goal_percentage": 75}
    assert purchase["data_freshness"] == {"upload_frequency": "real_time"}
    assert "acr" not in purchase  # the simulator runs no ads: a field Meta leaves out
    assert rows["Lead"]["event_match_quality"]["composite_score"] == sim_emq({"em": 1, "fn": 1})
    assert _coverage(rows["Lead"]) == {"email": 100.0, "first_name": 100.0, "user_agent": 100.0}


def test_emq_formula_pinned() -> None:
    """No keys scores 1 (Meta's lowest), every weighted key 10, the docstring's example 6.2."""
    assert sim_emq({}) == 1.0
    full = dict.fromkeys(
        ("em", "ph", "external_id", "fbc", "fbp", "ip_ua", "fn", "ln", "zp", "db", "ge", "ct",
         "st", "country"), 1.0,
    )  # fmt: skip
    assert sim_emq(full) == 10.0
    assert sim_emq({"em": 1, "ph": 1, "fn": 1, "ip_ua": 1}) == 6.2


def test_old_events_are_not_real_time(start_sim: Any) -> None:
    """A mean delay of two days between event_time and arrival reads as daily."""
    sim: Simulator = start_sim()
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        post(http, [event(1, event_time=int(time.time()) - 2 * 86_400)])
        row = _rows(_quality(http))["Purchase"]
    assert row["data_freshness"]["upload_frequency"] == "daily"


def test_test_events_are_left_out(client: httpx.Client) -> None:
    """Events sent with a test_event_code do not count, as Meta leaves them out."""
    post(client, [event(1)], test_event_code="TEST1")
    assert _rows(_quality(client)) == {}


def test_only_the_requested_fields_come_back(client: httpx.Client) -> None:
    """fields=web{event_name,event_coverage{percentage}} answers just those."""
    post(client, [event(1)])
    resp = _quality(client, fields="web{event_name,event_coverage{percentage}}")
    assert resp.json() == {
        "web": [{"event_name": "Purchase", "event_coverage": {"percentage": 100.0}}]
    }


def test_token_in_the_query_is_accepted_and_a_bad_one_refused(client: httpx.Client) -> None:
    """access_token in the query works like the header; an unknown token is code 190."""
    assert _quality(client, token=None, access_token=TOKEN).status_code == 200
    refused = _quality(client, token="not-a-token")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 190


@pytest.mark.parametrize("field", ["acr", "composite_score"])
def test_a_retired_field_is_refused_as_nonexisting(
    sim: Simulator, client: httpx.Client, field: str
) -> None:
    """A retired field, at any depth, is Graph's code 100 naming it, as Meta answers an unknown
    field; without it the request is answered."""
    sim.app.quality.retired = frozenset({field})
    resp = _quality(client)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == 100
    assert f"nonexisting field ({field})" in error["message"]
    assert _quality(client, fields="web{event_name}").status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("throttle_17", 429)])
def test_faults_apply_to_the_endpoint(
    sim: Simulator, client: httpx.Client, kind: str, status: int
) -> None:
    """Injected faults answer the quality endpoint like the events edges."""
    sim.set_faults(FaultConfig(rates={kind: 1.0}))
    assert _quality(client).status_code == status


def test_reset_forgets_the_numbers(sim: Simulator, client: httpx.Client) -> None:
    """POST /_sim/reset empties the quality book too."""
    post(client, [event(1)])
    sim.reset()
    assert _rows(_quality(client)) == {}


def test_fields_syntax() -> None:
    """Graph's nested field syntax parses into a tree; unbalanced braces are refused."""
    assert parse_fields("web{a,b{c,d{e}},f}") == {
        "web": {"a": {}, "b": {"c": {}, "d": {"e": {}}}, "f": {}}
    }
    with pytest.raises(ValueError, match="unbalanced"):
        parse_fields("web{a")
