"""`capi-stream deliver|normalize --metrics-port`: /healthz, /readyz and /metrics of a running
stage."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream import schemas
from stream.core.codec import AvroCodec
from stream.sim import SimConfig, Simulator
from tests.brokers.provision import free_port
from tests.factories import empty_user_data, raw_event
from tests.integration.helpers import (
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    start_stage,
)

pytestmark = pytest.mark.integration


def test_running_deliverer_serves_health_readiness_and_metrics(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Alive at once (the loop ticks), ready once assigned, /metrics counts what it delivered,
    and librdkafka's log never reaches stderr raw."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=2)
    now = time.time()
    items = [(f"m-{i}".encode(), enriched_value(f"m-{i}", "111", now)) for i in range(300)]
    produce(kafka_bootstrap, names["enriched"], items)
    port = free_port()
    with Simulator(SimConfig(tokens={"sekrit-9f3a": frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token="sekrit-9f3a",
            deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.3},
        )  # fmt: skip
        proc = start_stage(["deliver", "--metrics-port", str(port)], settings, tmp_path / "d.log")
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while sim.stats().accepted < 300 or _get(f"{base}/readyz") != 200:
                assert time.monotonic() < deadline, (tmp_path / "d.log").read_text()[-2000:]
                time.sleep(0.2)
            assert _get(f"{base}/healthz") == 200
            text = ""
            while "capi_stream_events_posted_total" not in text and time.monotonic() < deadline:
                text = httpx.get(f"{base}/metrics", timeout=5).text
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert 'capi_stream_consumed_total{stage="deliver"} 300.0' in text
    assert 'capi_stream_events_posted_total{pixel="111"} 300.0' in text
    assert "sekrit-9f3a" not in text
    log = (tmp_path / "d.log").read_text()
    assert "|rdkafka#" not in log  # librdkafka's raw "%3|…|FAIL|rdkafka#…|" lines: none
    assert "sekrit-9f3a" not in log


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_running_normalizer_serves_lag_partitions_and_match_keys(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    tmp_path: Path,
) -> None:  # fmt: skip
    """A scrape of the normalize stage once it processed everything: consumer and commit lag
    0, its partitions, events and key coverage per pixel and event name (others as custom),
    derived ids per action_source, a local score, and no `_created` series."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=2)
    now = int(time.time())
    codec = AvroCodec(schemas.load("conversion_event"))
    email_only = empty_user_data()
    email_only.update(em=["a@example.com"], client_user_agent="UA")
    events = [raw_event(event_id=f"p-{i}", event_time=now) for i in range(6)]
    events += [raw_event(event_id=None, event_time=now, event_name="MyStep",
                         user_data=email_only) for _ in range(4)]  # fmt: skip
    produce(kafka_bootstrap, names["raw"], [(None, codec.encode(e)) for e in events])
    port = free_port()
    settings = stage_settings(kafka_bootstrap, names)
    proc = start_stage(["normalize", "--metrics-port", str(port)], settings, tmp_path / "n.log")
    base = f"http://127.0.0.1:{port}"
    score = ("capi_stream_match_key_score", (("event_name", "Purchase"), ("pixel", "1234567890")))
    lag = ("capi_stream_consumer_lag", (("stage", "normalize"),))
    try:
        deadline = time.monotonic() + 60
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        text = ""
        while samples.get(lag) != 0 or score not in samples:
            assert time.monotonic() < deadline, (samples, (tmp_path / "n.log").read_text()[-2000:])
            time.sleep(0.5)
            if _get(f"{base}/readyz") == 200:
                text = httpx.get(f"{base}/metrics", timeout=5).text
                samples = _samples(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    pixel = (("pixel", "1234567890"),)
    assert samples[("capi_stream_assigned_partitions", (("stage", "normalize"),))] == 2
    assert samples[("capi_stream_commit_lag", (("stage", "normalize"),))] == 0
    by_name = "capi_stream_events_by_name_total"
    assert samples[(by_name, (("event_name", "Purchase"), *pixel))] == 6
    assert samples[(by_name, (("event_name", "custom"), *pixel))] == 4
    keys = "capi_stream_match_key_events_total"
    assert samples[(keys, (("event_name", "Purchase"), ("key", "ph"), *pixel))] == 6
    assert samples[(keys, (("event_name", "custom"), ("key", "em"), *pixel))] == 4
    assert (keys, (("event_name", "custom"), ("key", "ph"), *pixel)) not in samples
    derived = ("capi_stream_derived_event_id_total",
               (("action_source", "website"), ("event_name", "custom"), *pixel))  # fmt: skip
    assert samples[derived] == 4
    assert 0 < samples[score] <= 10
    assert "_created" not in text


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
