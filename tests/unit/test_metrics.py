"""PrometheusSensor (names, types, safe labels) and the /metrics, /healthz, /readyz server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.core.errors import ConfigError
from stream.core.sensors import MemorySensor, Sensor
from stream.health import HealthServer, worker_port
from stream.metrics import METRICS, OTHER, PrometheusSensor, TeeSensor


def _samples(sensor: PrometheusSensor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back: (name, sorted labels) → value."""
    out = {}
    for family in text_string_to_metric_families(sensor.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _types(sensor: PrometheusSensor) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(sensor.text())}


@pytest.fixture
def sensor() -> PrometheusSensor:
    return PrometheusSensor(process_metrics=False)


# -- the sensor ------------------------------------------------------------------------------


def test_prometheus_sensor_implements_the_sensor_protocol(sensor: PrometheusSensor) -> None:
    """The stages can take a PrometheusSensor wherever they take a Sensor."""
    stage_sensor: Sensor = sensor
    stage_sensor.count("consumed", 3, stage="normalize")
    assert _samples(sensor)[("capi_stream_consumed_total", (("stage", "normalize"),))] == 3


def test_counters_add_up_per_label_set(sensor: PrometheusSensor) -> None:
    """count() adds to capi_stream_<name>_total, one series per label set."""
    sensor.count("dead_lettered", stage="deliver", reason="expired")
    sensor.count("dead_lettered", stage="deliver", reason="expired")
    sensor.count("dead_lettered", 5, stage="normalize", reason="no_match_keys")
    samples = _samples(sensor)
    name = "capi_stream_dead_lettered_total"
    assert samples[(name, (("reason", "expired"), ("stage", "deliver")))] == 2
    assert samples[(name, (("reason", "no_match_keys"), ("stage", "normalize")))] == 5


def test_gauges_hold_the_last_value(sensor: PrometheusSensor) -> None:
    """gauge() sets capi_stream_<name>; a per-pixel gauge keeps one value per pixel."""
    sensor.gauge("pending", 10)
    sensor.gauge("pending", 4)
    sensor.gauge("oldest_pending_age_seconds", 120.5, pixel="111")
    sensor.gauge("oldest_pending_age_seconds", 9.0, pixel="222")
    samples = _samples(sensor)
    assert samples[("capi_stream_pending", ())] == 4
    assert samples[("capi_stream_oldest_pending_age_seconds", (("pixel", "111"),))] == 120.5
    assert samples[("capi_stream_oldest_pending_age_seconds", (("pixel", "222"),))] == 9.0


def test_request_latency_is_a_histogram_with_http_buckets(sensor: PrometheusSensor) -> None:
    """observe("request_seconds") fills capi_stream_request_seconds buckets, count and sum."""
    for seconds in (0.003, 0.2, 4.0):
        sensor.observe("request_seconds", seconds)
    samples = _samples(sensor)
    assert _types(sensor)["capi_stream_request_seconds"] == "histogram"
    assert samples[("capi_stream_request_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("capi_stream_request_seconds_bucket", (("le", "0.25"),))] == 2
    assert samples[("capi_stream_request_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("capi_stream_request_seconds_count", ())] == 3
    assert samples[("capi_stream_request_seconds_sum", ())] == pytest.approx(4.203)


def test_every_known_metric_is_exported_with_its_type(sensor: PrometheusSensor) -> None:
    """Each name of the METRICS table becomes capi_stream_<name> of the table's type."""
    for name, spec in METRICS.items():
        labels = dict.fromkeys(spec.labels, "x")
        if "pixel" in labels:
            labels["pixel"] = "1"
        {"counter": sensor.count, "gauge": sensor.gauge, "histogram": sensor.observe}[spec.kind](
            name, 1.0, **labels
        )
    types = _types(sensor)
    for name, spec in METRICS.items():
        assert types["capi_stream_" + name] == spec.kind, name


def test_the_event_age_limit_is_exported_for_alerting(sensor: PrometheusSensor) -> None:
    """Meta's 7-day (and 62-day physical_store) limits are gauges to compare ages against."""
    samples = _samples(sensor)
    assert samples[("capi_stream_event_age_limit_seconds", (("kind", "default"),))] == 604_800
    limit = ("capi_stream_event_age_limit_seconds", (("kind", "physical_store"),))
    assert samples[limit] == 62 * 86_400


def test_an_unknown_name_is_created_on_first_use_with_the_prefix(
    sensor: PrometheusSensor,
) -> None:
    """A name outside the table becomes capi_stream_<name>, typed by the call that made it."""
    sensor.count("lanes-reopened", 2, pixel="123")
    sensor.gauge("revoke_seconds", 1.5)
    sensor.observe("probe_seconds", 0.3, kind="setup")
    types = _types(sensor)
    assert types["capi_stream_lanes_reopened"] == "counter"
    assert types["capi_stream_revoke_seconds"] == "gauge"
    assert types["capi_stream_probe_seconds"] == "histogram"
    samples = _samples(sensor)
    assert samples[("capi_stream_lanes_reopened_total", (("pixel", "123"),))] == 2
    assert samples[("capi_stream_probe_seconds_count", (("kind", "setup"),))] == 1


def test_labels_outside_the_allowed_set_are_never_exported(sensor: PrometheusSensor) -> None:
    """A label named like event_id, email or token is dropped; the allowed ones stay."""
    sensor.count("retries", kind="transient", token="EAABsecret", event_id="order-1")
    sensor.count("brand_new", email="a@b.c", reason="x")
    text = sensor.text()
    assert "EAABsecret" not in text
    assert "order-1" not in text
    assert "a@b.c" not in text
    samples = _samples(sensor)
    assert samples[("capi_stream_retries_total", (("kind", "transient"),))] == 1
    assert samples[("capi_stream_brand_new_total", (("reason", "x"),))] == 1


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("reason", "John_Smith@Gmail.com"),
        ("reason", "fake-token-wzLixnjYBO7ZCZC4"),
        ("outcome", "+1 (650) 555-1212"),
        ("stage", "Mary O'Brien"),
        ("pixel", "john@example.com"),
        ("pixel", "EAAB123"),
        ("warning", "x" * 65),
    ],
)
def test_label_values_that_are_not_codes_are_exported_as_other(
    sensor: PrometheusSensor, label: str, value: str
) -> None:
    """A value that is not a lowercase code (or, for pixel, digits) becomes "other"."""
    name = {"reason": "dead_lettered", "outcome": "requests", "stage": "consumed"}.get(label)
    name = name or {"pixel": "events_posted", "warning": "normalize_warnings"}[label]
    sensor.count(name, **{label: value})
    text = sensor.text()
    assert value not in text
    assert f'{label}="{OTHER}"' in text


def test_the_wrong_kind_for_a_known_name_is_ignored_without_raising(
    sensor: PrometheusSensor,
) -> None:
    """count() on a gauge's name neither raises nor changes the gauge."""
    sensor.gauge("pending", 7)
    sensor.count("pending", 100)
    sensor.observe("pending", 1)
    assert _samples(sensor)[("capi_stream_pending", ())] == 7


def test_a_metric_stops_growing_past_its_series_cap() -> None:
    """Past max_series label sets, new ones collapse into a single "other" series."""
    sensor = PrometheusSensor(max_series=3, process_metrics=False)
    for pixel in range(10):
        sensor.count("events_posted", pixel=str(pixel))
    series = [k for k in _samples(sensor) if k[0] == "capi_stream_events_posted_total"]
    assert len(series) == 4
    assert _samples(sensor)[("capi_stream_events_posted_total", (("pixel", OTHER),))] == 7


def test_two_sensors_do_not_share_a_registry() -> None:
    """Each sensor has its own registry: two in one process neither collide nor mix counts."""
    a, b = PrometheusSensor(), PrometheusSensor()
    a.count("enriched", 2)
    b.count("enriched", 5)
    assert _samples(a)[("capi_stream_enriched_total", ())] == 2
    assert _samples(b)[("capi_stream_enriched_total", ())] == 5


def test_process_metrics_are_exported_by_default() -> None:
    """CPU and memory of the process come with the stage's metrics."""
    names = {f.name for f in text_string_to_metric_families(PrometheusSensor().text())}
    assert "process_cpu_seconds" in names
    assert "process_resident_memory_bytes" in names


def test_counting_from_many_threads_loses_nothing(sensor: PrometheusSensor) -> None:
    """The poll thread and the event loop may report at once; every increment counts."""

    def work() -> None:
        for i in range(1000):
            sensor.count("events_received", pixel=str(i % 7))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(
        v for (n, _), v in _samples(sensor).items() if n == "capi_stream_events_received_total"
    )
    assert total == 8000


def test_tee_sensor_reports_to_every_sensor(sensor: PrometheusSensor) -> None:
    """One call reaches both the Prometheus sensor and a MemorySensor."""
    memory = MemorySensor()
    tee = TeeSensor(sensor, memory)
    tee.count("consumed", 4, stage="deliver")
    tee.gauge("pending", 2)
    tee.observe("request_seconds", 0.1)
    assert memory.total("consumed", stage="deliver") == 4
    assert _samples(sensor)[("capi_stream_consumed_total", (("stage", "deliver"),))] == 4
    assert memory.observations["request_seconds"] == [0.1]


# -- the health server -----------------------------------------------------------------------


@pytest.fixture
def server(sensor: PrometheusSensor) -> Iterator[tuple[HealthServer, dict[str, bool]]]:
    state = {"ready": False, "alive": True}
    health = HealthServer(
        0, sensor, ready=lambda: state["ready"], alive=lambda: state["alive"], host="127.0.0.1"
    )
    with health:
        yield health, state


def test_metrics_endpoint_serves_the_prometheus_text(
    server: tuple[HealthServer, dict[str, bool]], sensor: PrometheusSensor
) -> None:
    """GET /metrics answers 200 with the sensor's series in the text format."""
    health, _ = server
    sensor.count("consumed", 12, stage="deliver")
    response = httpx.get(f"{health.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'capi_stream_consumed_total{stage="deliver"} 12.0' in response.text


def test_metrics_endpoint_speaks_openmetrics_when_asked(
    server: tuple[HealthServer, dict[str, bool]],
) -> None:
    """A scraper that accepts OpenMetrics gets it (and its # EOF trailer)."""
    health, _ = server
    accept = "application/openmetrics-text; version=1.0.0"
    response = httpx.get(f"{health.url}/metrics", headers={"Accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_readyz_follows_the_ready_callable(server: tuple[HealthServer, dict[str, bool]]) -> None:
    """/readyz is 503 until ready() says yes, then 200, and 503 again when it says no."""
    health, state = server
    assert httpx.get(f"{health.url}/readyz").status_code == 503
    state["ready"] = True
    assert httpx.get(f"{health.url}/readyz").status_code == 200
    state["ready"] = False
    assert httpx.get(f"{health.url}/readyz").status_code == 503


def test_healthz_is_200_while_alive(server: tuple[HealthServer, dict[str, bool]]) -> None:
    """/healthz answers 200 while alive() holds, whatever readiness says, and 503 after."""
    health, state = server
    assert httpx.get(f"{health.url}/healthz").status_code == 200
    state["alive"] = False
    assert httpx.get(f"{health.url}/healthz").status_code == 503


def test_a_check_that_raises_answers_503() -> None:
    """A ready() that raises is a failing probe, not a dropped request."""

    def broken() -> bool:
        raise RuntimeError("dictionary changed size during iteration")

    with HealthServer(0, None, ready=broken, host="127.0.0.1") as health:
        assert httpx.get(f"{health.url}/readyz").status_code == 503
        assert httpx.get(f"{health.url}/healthz").status_code == 200


def test_unknown_paths_are_404_and_queries_are_ignored(
    server: tuple[HealthServer, dict[str, bool]],
) -> None:
    """Only the three routes exist; /metrics?x=1 is /metrics; HEAD answers without a body."""
    health, _ = server
    assert httpx.get(f"{health.url}/").status_code == 404
    assert httpx.get(f"{health.url}/admin").status_code == 404
    assert httpx.get(f"{health.url}/metrics?name[]=x").status_code == 200
    head = httpx.head(f"{health.url}/healthz")
    assert head.status_code == 200
    assert head.content == b""


def test_metrics_without_a_sensor_is_404() -> None:
    """A process that exports no metrics says so on /metrics instead of serving nothing."""
    with HealthServer(0, host="127.0.0.1") as health:
        assert httpx.get(f"{health.url}/metrics").status_code == 404


def test_stop_closes_the_port() -> None:
    """After stop() nothing listens on the port any more."""
    health = HealthServer(0, host="127.0.0.1").start()
    port = health.port
    health.stop()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_a_taken_port_is_a_config_error() -> None:
    """Binding a port in use raises ConfigError naming the setting (the CLI exits 2)."""
    with HealthServer(0, host="127.0.0.1") as first:
        second = HealthServer(first.port, host="127.0.0.1")
        with pytest.raises(ConfigError, match="METRICS_PORT"):
            second.start()


def test_each_worker_gets_its_own_port() -> None:
    """Worker i serves on metrics_port + i; no port stays none, and 0 stays any."""
    assert [worker_port(9100, i) for i in range(3)] == [9100, 9101, 9102]
    assert worker_port(None, 2) is None
    assert worker_port(0, 2) == 0


def test_no_created_series_in_either_format(
    server: tuple[HealthServer, dict[str, bool]], sensor: PrometheusSensor
) -> None:
    """A scrape holds one series per counter and histogram, no `_created` twin, in the text
    format and in OpenMetrics."""
    health, _ = server
    sensor.count("consumed", 3, stage="normalize")
    sensor.count("match_key_events", pixel="123", event_name="Purchase", key="em")
    sensor.observe("request_seconds", 0.2)
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        headers = {"Accept": accept} if accept else {}
        text = httpx.get(f"{health.url}/metrics", headers=headers).text
        assert "capi_stream_consumed_total" in text
        assert "capi_stream_request_seconds_count" in text
        assert "_created" not in text, accept


@pytest.mark.parametrize(
    ("name", "labels", "exported"),
    [
        ("events_by_name", {"pixel": "1", "event_name": "Purchase"}, "Purchase"),
        ("events_by_name", {"pixel": "1", "event_name": "custom"}, "custom"),
        ("events_by_name", {"pixel": "1", "event_name": "purchase"}, OTHER),
        ("events_by_name", {"pixel": "1", "event_name": "john@example.com"}, OTHER),
        ("match_key_events", {"pixel": "1", "event_name": "Lead", "key": "ip_ua"}, "ip_ua"),
        ("match_key_events", {"pixel": "1", "event_name": "Lead", "key": "email"}, OTHER),
        ("derived_event_id", {"pixel": "1", "event_name": "Lead", "action_source": "website"},
         "website"),
    ],
)  # fmt: skip
def test_match_key_labels_take_only_their_closed_sets(
    sensor: PrometheusSensor, name: str, labels: dict[str, str], exported: str
) -> None:
    """event_name is a standard name or custom, key a match key; anything else is "other"."""
    sensor.count(name, **labels)
    label = next(k for k in ("key", "action_source", "event_name") if k in labels)
    samples = _samples(sensor)
    want = tuple(sorted({**labels, label: exported}.items()))
    assert samples[(f"capi_stream_{name}_total", want)] == 1


def test_the_pending_age_and_wait_are_documented_apart(sensor: PrometheusSensor) -> None:
    """oldest_pending_age_seconds is the event's age (Meta's limit); oldest_pending_wait_seconds
    is the time in the stage: both exported per pixel with help that says which is which."""
    sensor.gauge("oldest_pending_age_seconds", 5 * 86_400, pixel="1")
    sensor.gauge("oldest_pending_wait_seconds", 3.0, pixel="1")
    helps = {f.name: f.documentation for f in text_string_to_metric_families(sensor.text())}
    assert "EVENT's age" in helps["capi_stream_oldest_pending_age_seconds"]
    assert "waited in the deliver stage" in helps["capi_stream_oldest_pending_wait_seconds"]
