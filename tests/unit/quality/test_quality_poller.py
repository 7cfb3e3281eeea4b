"""The Dataset Quality client and poller against the simulator: values, errors, kept gauges."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from stream.quality.client import DatasetQualityClient, agent_name
from stream.quality.exporter import THROTTLE_FLOOR_S, Poller, QualityMetrics
from stream.quality.model import DatasetQuality, PollFailure
from stream.sim import FaultConfig, SimConfig, Simulator

TOKEN = "tok-quality"
PIXEL, OTHER_PIXEL = "111", "222"
EM = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
UA = "Mozilla/5.0 (X11; Linux x86_64)"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as simulator:
        yield simulator


def _send(sim: Simulator, pixel: str, n: int, *, with_ph: int) -> None:
    """n website Purchases to ``pixel``: all with e-mail, IP and UA; the first ``with_ph`` with
    a phone."""
    events = []
    for i in range(n):
        user_data: dict[str, Any] = {"em": [EM], "client_ip_address": "203.0.113.7",
                                     "client_user_agent": UA}  # fmt: skip
        if i < with_ph:
            user_data["ph"] = [EM]
        events.append({
            "event_name": "Purchase", "event_time": int(sim.app._clock()) - 60,
            "action_source": "website", "event_id": f"{pixel}-{i}",
            "event_source_url": "https://shop.example.com/", "user_data": user_data,
            "custom_data": {"currency": "usd", "value": 1.0},
        })  # fmt: skip
    resp = httpx.post(sim.events_url(pixel), json={"data": events, "access_token": TOKEN})
    assert resp.status_code == 200, resp.text


def _client(
    sim: Simulator, http: httpx.Client, token: str = TOKEN, **kw: Any
) -> DatasetQualityClient:
    return DatasetQualityClient(
        http, base_url=sim.url, version="v25.0",
        token_for=lambda _pixel: SecretStr(token), **kw,
    )  # fmt: skip


def _samples(metrics: QualityMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _value(metrics: QualityMetrics, name: str, **labels: str) -> float | None:
    return _samples(metrics).get((name, tuple(sorted(labels.items()))))


def _poller(sim: Simulator, http: httpx.Client, metrics: QualityMetrics, **kw: Any) -> Poller:
    client = _client(sim, http, **kw)
    return Poller(client.fetch, [PIXEL, OTHER_PIXEL], metrics, rnd=random.Random(7),
                  clock=lambda: 1_767_225_600.0)  # fmt: skip


def test_a_poll_exports_meta_numbers(sim: Simulator) -> None:
    """EMQ, per-key coverage (Meta's names mapped to ours), event coverage and its goal,
    and the time of the last success; the next round is an interval away."""
    _send(sim, PIXEL, 8, with_ph=6)
    metrics = QualityMetrics()
    with httpx.Client(timeout=5.0) as http:
        delay = _poller(sim, http, metrics).poll_round()
    assert delay == 3600.0
    row = {"pixel": PIXEL, "event_name": "Purchase"}
    assert _value(metrics, "meta_event_match_quality", **row) == 1 + 9 * (0.25 + 0.2 * 0.75 + 0.1)
    assert _value(metrics, "meta_match_key_coverage_ratio", **row, key="ph") == 0.75
    assert _value(metrics, "meta_match_key_coverage_ratio", **row, key="em") == 1.0
    assert _value(metrics, "meta_match_key_coverage_ratio", **row, key="ip_ua") == 1.0
    assert _value(metrics, "meta_event_coverage_ratio", **row) == 1.0
    assert _value(metrics, "meta_event_coverage_goal_ratio", **row) == 0.75
    assert (
        _value(metrics, "meta_quality_last_success_timestamp_seconds", pixel=PIXEL)
        == 1_767_225_600.0
    )
    # the other pixel answered too, with no rows
    assert _value(metrics, "meta_quality_last_success_timestamp_seconds", pixel=OTHER_PIXEL)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("http_500", "transient"), ("code_2", "transient"), ("throttle_17", "throttled"),
     ("throttle_80004", "throttled"), ("code_190", "setup")],
)  # fmt: skip
def test_a_failed_poll_keeps_the_last_values_and_counts_the_error(
    sim: Simulator, fault: str, kind: str
) -> None:
    """A 500, a transient code, a throttle or an expired token: every gauge keeps its value,
    the error is counted by kind, and the next round comes sooner than the interval (later than
    Meta's floor for a throttle)."""
    _send(sim, PIXEL, 4, with_ph=2)
    metrics = QualityMetrics()
    with httpx.Client(timeout=5.0) as http:
        poller = _poller(sim, http, metrics)
        poller.poll_round()
        before = {k: v for k, v in _samples(metrics).items() if k[0].startswith("meta_event")}
        sim.set_faults(FaultConfig(rates={fault: 1.0}))
        delay = poller.poll_round()
    after = _samples(metrics)
    assert before
    assert all(after[k] == v for k, v in before.items())
    errors = {k: v for k, v in after.items() if k[0] == "meta_quality_poll_errors_total"}
    if kind == "throttled":
        # the round stops at the first throttle: the second pixel is not asked
        assert errors == {
            ("meta_quality_poll_errors_total", (("kind", kind), ("pixel", PIXEL))): 1.0
        }
        assert delay >= THROTTLE_FLOOR_S
        assert sim.app.quality.requests() == {PIXEL: 2, OTHER_PIXEL: 1}
    else:
        assert sum(errors.values()) == 2.0
        assert all(dict(labels)["kind"] == kind for _, labels in errors)
        assert delay < 3600.0 or kind == "setup"
    assert poller.failures == 1


def test_backoff_grows_and_resets(sim: Simulator) -> None:
    """Consecutive failed rounds widen the jitter cap; one good round restores the interval."""
    sim.set_faults(FaultConfig(rates={"http_500": 1.0}))
    metrics = QualityMetrics()
    with httpx.Client(timeout=5.0) as http:
        poller = _poller(sim, http, metrics)
        for _ in range(4):
            poller.poll_round()
        assert poller.failures == 4
        sim.clear_faults()
        assert poller.poll_round() == 3600.0
    assert poller.failures == 0


def test_a_bad_token_is_a_setup_failure(sim: Simulator) -> None:
    """An unknown token is code 190: kind setup, Meta's message kept, no token in it."""
    with httpx.Client(timeout=5.0) as http:
        result = _client(sim, http, token="wrong-token").fetch(PIXEL)
    assert isinstance(result, PollFailure)
    assert (result.kind, result.code) == ("setup", 190)
    assert "wrong-token" not in result.message


def test_a_retired_field_is_dropped_reported_and_not_fatal(sim: Simulator) -> None:
    """Graph refuses acr as nonexistent: the client asks again without it, reports it, and
    does not ask for it in the next poll."""
    _send(sim, PIXEL, 2, with_ph=2)
    sim.app.quality.retired = frozenset({"acr"})
    requests: list[httpx.Request] = []
    with httpx.Client(timeout=5.0, event_hooks={"request": [requests.append]}) as http:
        client = _client(sim, http)
        first = client.fetch(PIXEL)
        second = client.fetch(PIXEL)
    assert isinstance(first, DatasetQuality)
    assert first.unavailable == ("acr",)
    assert first.rows[0].emq is not None
    assert "acr" not in first.rows[0].missing
    assert isinstance(second, DatasetQuality)
    assert len(requests) == 3  # refused, again without acr, then the next poll at once
    assert "acr" not in requests[2].url.params["fields"]


def test_a_field_meta_leaves_out_is_reported_missing(sim: Simulator) -> None:
    """The simulator never answers acr (it runs no ads): the row says so, nothing fails."""
    _send(sim, PIXEL, 2, with_ph=0)
    with httpx.Client(timeout=5.0) as http:
        result = _client(sim, http).fetch(PIXEL)
    assert isinstance(result, DatasetQuality)
    assert result.rows[0].missing == ("acr",)
    assert result.rows[0].acr is None


def test_the_token_never_rides_in_the_url(sim: Simulator) -> None:
    """The token goes in the Authorization header; the URL holds the pixel and the fields, and
    with an app secret the appsecret_proof (an HMAC), never the token or the secret."""
    secret = "app-secret-xyz"
    requests: list[httpx.Request] = []
    config = SimConfig(tokens={TOKEN: frozenset({"*"})}, app_secret=secret)
    hooks = {"request": [requests.append]}
    with Simulator(config) as guarded, httpx.Client(timeout=5.0, event_hooks=hooks) as http:
        client = _client(guarded, http, app_secret=lambda: SecretStr(secret),
                         agent=agent_name("capi-stream"))  # fmt: skip
        result = client.fetch(PIXEL)
    assert isinstance(result, DatasetQuality)
    (request,) = requests
    assert TOKEN not in str(request.url)
    assert secret not in str(request.url)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["agent_name"] == "capi-stream"
    assert len(request.url.params["appsecret_proof"]) == 64


def test_labels_are_bounded() -> None:
    """A pixel that is not digits is other; custom names collapse to custom (lowest values);
    an unknown key is other."""
    from stream.quality.model import MetaRow

    def row(name: str, emq: float, cov: dict[str, float]) -> MetaRow:
        return MetaRow(name, emq, cov, None, None, None, None, (), ())

    metrics = QualityMetrics()
    metrics.record(DatasetQuality("abc", (row("step_a", 7.0, {"em": 0.9, "new_key": 0.5}),
                                          row("step_b", 5.0, {"em": 0.4}))), 1.0)  # fmt: skip
    text = generate_latest(metrics.registry).decode()
    assert 'meta_event_match_quality{event_name="custom",pixel="other"} 5.0' in text
    assert 'key="em",pixel="other"} 0.4' in text
    assert 'key="other"' in text
    assert "step_a" not in text


def test_a_good_poll_drops_rows_meta_no_longer_reports() -> None:
    """Series of event names absent from the latest good answer are removed."""
    from stream.quality.model import MetaRow

    metrics = QualityMetrics()
    lead = MetaRow("Lead", 6.0, {"em": 1.0}, None, None, None, None, (), ())
    purchase = MetaRow("Purchase", 7.0, {"ph": 1.0}, None, None, None, None, (), ())
    metrics.record(DatasetQuality(PIXEL, (lead, purchase)), 1.0)
    metrics.record(DatasetQuality(PIXEL, (purchase,)), 2.0)
    text = generate_latest(metrics.registry).decode()
    assert 'event_name="Lead"' not in text
    assert 'meta_event_match_quality{event_name="Purchase",pixel="111"} 7.0' in text


def test_a_missing_field_keeps_its_last_value_and_is_counted(sim: Simulator) -> None:
    """Meta stops answering composite_score (retired): the client drops it, the EMQ gauge keeps
    its last value, a missing_field error is counted, and the other gauges still move."""
    _send(sim, PIXEL, 4, with_ph=4)
    metrics = QualityMetrics()
    row = {"pixel": PIXEL, "event_name": "Purchase"}
    with httpx.Client(timeout=5.0) as http:
        poller = _poller(sim, http, metrics)
        poller.poll_round()
        emq = _value(metrics, "meta_event_match_quality", **row)
        sim.app.quality.retired = frozenset({"composite_score"})
        _send(sim, PIXEL, 4, with_ph=0)  # phone now on half the events
        assert poller.poll_round() == 3600.0  # not a failed poll
    assert emq is not None
    assert _value(metrics, "meta_event_match_quality", **row) == emq
    assert _value(metrics, "meta_match_key_coverage_ratio", **row, key="ph") == 0.5
    errors = {"pixel": PIXEL, "kind": "missing_field"}
    assert _value(metrics, "meta_quality_poll_errors_total", **errors) == 1.0


def test_a_key_meta_stops_listing_reads_zero() -> None:
    """Meta lists only the keys it received: a key that vanished from the feedback is 0, while
    a row without any feedback keeps every key's last value."""
    from stream.quality.model import MetaRow

    def row(cov: dict[str, float], missing: tuple[str, ...] = ()) -> MetaRow:
        return MetaRow("Purchase", 6.0, cov, 0.9, 0.75, None, None, (), missing)

    metrics = QualityMetrics()
    metrics.record(DatasetQuality(PIXEL, (row({"em": 1.0, "ph": 0.6}),)), 1.0)
    metrics.record(DatasetQuality(PIXEL, (row({"em": 1.0}),)), 2.0)
    labels = {"pixel": PIXEL, "event_name": "Purchase"}
    assert _value(metrics, "meta_match_key_coverage_ratio", **labels, key="ph") == 0.0
    metrics.record(DatasetQuality(PIXEL, (row({}, ("match_key_feedback",)),)), 3.0)
    assert _value(metrics, "meta_match_key_coverage_ratio", **labels, key="em") == 1.0
    assert (
        _value(metrics, "meta_quality_poll_errors_total", pixel=PIXEL, kind="missing_field") == 1.0
    )
