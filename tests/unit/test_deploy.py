"""The shipped Prometheus alerts and Grafana dashboard name only what the stages export.

The exported names are read from a real :class:`~stream.metrics.PrometheusSensor` fed one call
per metric declared in :data:`stream.metrics.METRICS` (so ``_total``, ``_bucket`` and the label
names are the exporter's, not a copy of its rules), and from the gauges of ``capi-stream quality
serve`` (:class:`~stream.quality.exporter.QualityMetrics`) fed one good poll and one failed one.
A renamed metric or label then fails here instead of leaving an alert that never fires or a
panel that stays empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.metrics import METRICS, PREFIX, PrometheusSensor
from stream.quality.exporter import QualityMetrics
from stream.quality.model import DatasetQuality, MetaRow, PollFailure

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "capi-stream.json"

#: Series Prometheus makes itself, and labels every scraped series gets.
PROMETHEUS_SERIES = frozenset({"up"})
TARGET_LABELS = frozenset({"job", "instance"})
_NAME = re.compile(r"\b((?:capi_stream_|meta_|up\b)\w*)(\{[^}]*\})?")
#: The prefix of the series ``capi-stream quality serve`` exports.
QUALITY_PREFIX = "meta_"
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")


def _exported() -> dict[str, frozenset[str]]:
    """Every series name the exporter writes for the declared metrics → its label names."""
    sensor = PrometheusSensor(process_metrics=False)
    for name, spec in METRICS.items():
        labels = dict.fromkeys(spec.labels, "x")
        if "pixel" in labels:
            labels["pixel"] = "123"
        if spec.kind == "counter":
            sensor.count(name, **labels)
        elif spec.kind == "gauge":
            sensor.gauge(name, 1.0, **labels)
        else:
            sensor.observe(name, 0.1, **labels)
    exported: dict[str, frozenset[str]] = {}
    for family in sensor.registry.collect():
        for sample in family.samples:
            if sample.name.startswith(PREFIX) and not sample.name.endswith("_created"):
                exported[sample.name] = frozenset(sample.labels)
    return exported | _quality_exported()


def _quality_exported() -> dict[str, frozenset[str]]:
    """Every series of the quality exporter after one good poll (every field) and a failed one."""
    metrics = QualityMetrics()
    coverage = {"em": 1.0, "client_ip_address": 1.0, "client_user_agent": 1.0}
    row = MetaRow("Purchase", 7.0, coverage, 0.5, 0.75, 0.1, "real_time", (), ())
    metrics.record(DatasetQuality("123", (row,)), 1.0)
    metrics.failed(PollFailure("123", "throttled", "limit", 17))
    return {
        sample.name: frozenset(sample.labels)
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.startswith(QUALITY_PREFIX) and not sample.name.endswith("_created")
    }


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def _problems(expr: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """Unknown series, and label names no series of the expression has."""
    problems = []
    known_labels = set(TARGET_LABELS) | {"le"}
    for name, selector in _NAME.findall(expr):
        if name in PROMETHEUS_SERIES:
            continue
        if name not in exported:
            problems.append(f"{name}: not exported")
            continue
        labels = exported[name] | TARGET_LABELS
        known_labels |= labels
        for label in _MATCHER.findall(selector or ""):
            if label not in labels:
                problems.append(f"{name}: no label {label}")
    for group in _BY.findall(expr):
        for label in (part.strip() for part in group.split(",") if part.strip()):
            if label not in known_labels:
                problems.append(f"by ({label}): no metric of the expression has it")
    return problems


def test_every_alert_expression_names_exported_metrics() -> None:
    """Each alert's expression names only exported series and their labels."""
    exported = _exported()
    problems = {r["alert"]: _problems(r["expr"], exported) for r in _alert_rules()}
    assert not any(problems.values()), problems


def test_every_dashboard_expression_names_exported_metrics() -> None:
    """Each panel's queries (and the pixel variable's) name only exported series and labels."""
    exported = _exported()
    exprs = _dashboard_expressions()
    assert len(exprs) >= 10
    problems = {e: _problems(e, exported) for e in exprs}
    assert not any(problems.values()), {e: p for e, p in problems.items() if p}


def test_checker_catches_a_wrong_name_and_label() -> None:
    """The check is not blind: a misspelt metric, a missing _total and a wrong label fail."""
    exported = _exported()
    assert _problems("capi_stream_lanes_halted > 0", exported) == []
    assert _problems("rate(capi_stream_dead_lettered[5m])", exported)
    assert _problems('capi_stream_pending{pixel="1"}', exported)
    assert _problems("sum by (reason) (capi_stream_pending)", exported)


@pytest.mark.parametrize(
    "metric",
    ["capi_stream_lanes_halted", "capi_stream_oldest_pending_age_seconds",
     "capi_stream_dead_lettered_total", "capi_stream_short_receipts_total",
     "capi_stream_consumer_lag"],
)  # fmt: skip
def test_the_readme_alerts_are_shipped(metric: str) -> None:
    """Each alert the README recommends is a rule, with a severity and a summary."""
    rules = [r for r in _alert_rules() if metric in r["expr"]]
    assert rules, metric
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize(
    "metric",
    ["capi_stream_events_received_total", "capi_stream_requests_total",
     "capi_stream_dead_lettered_total", "capi_stream_pending",
     "capi_stream_oldest_pending_age_seconds", "capi_stream_lanes_halted",
     "capi_stream_consumer_lag", "capi_stream_request_seconds_bucket"],
)  # fmt: skip
def test_dashboard_shows_what_an_operator_needs(metric: str) -> None:
    """Accepted, rejected, dead-lettered by reason, pending, oldest age, halted lanes, lag and
    request latency each have a panel."""
    assert any(metric in expr for expr in _dashboard_expressions()), metric


@pytest.mark.parametrize(
    "metric",
    ["meta_event_match_quality", "meta_match_key_coverage_ratio", "meta_event_coverage_ratio",
     "meta_quality_last_success_timestamp_seconds"],
)  # fmt: skip
def test_match_quality_has_alerts_and_panels(metric: str) -> None:
    """Meta's EMQ, key coverage, event coverage and the poll's age each have a rule and a
    panel, beside the delivery ones."""
    assert any(metric in r["expr"] for r in _alert_rules()), metric
    assert any(metric in expr for expr in _dashboard_expressions()), metric


@pytest.mark.parametrize(
    "metric",
    ["capi_stream_match_key_events_total", "capi_stream_events_by_name_total",
     "capi_stream_derived_event_id_total"],
)  # fmt: skip
def test_local_match_keys_have_alerts_and_panels(metric: str) -> None:
    """The normalize stage's own key coverage and derived event ids have a rule and a panel."""
    assert any(metric in r["expr"] for r in _alert_rules()), metric
    assert any(metric in expr for expr in _dashboard_expressions()), metric


def test_quality_checker_is_not_blind() -> None:
    """A quality series with a wrong label or a missing _total fails the check too."""
    exported = _exported()
    assert _problems('meta_event_match_quality{event_name="Purchase"}', exported) == []
    assert _problems('meta_event_match_quality{key="em"}', exported)
    assert _problems("rate(meta_quality_poll_errors[1h])", exported)


def test_compose_prometheus_loads_the_alerts() -> None:
    """prometheus.yml loads the rules file that docker-compose.yml mounts."""
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
