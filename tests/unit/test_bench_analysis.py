"""The benchmarks' pure analysis: latency segments from a trace, goals, component attribution."""

from __future__ import annotations

from bench.breakdown_bench import BUILTINS, OTHER, component
from bench.deliver_bench import goals
from bench.latency_bench import breakdown, bursts


def _point(capi_cpu: float, floor_cpu: float, rate_vs_sdk: float) -> dict[str, object]:
    return {
        "capi": {"cpu_s_per_1000_events": capi_cpu},
        "floor": {"cpu_s_per_1000_events": floor_cpu},
        "cpu_vs_floor": round(capi_cpu / floor_cpu, 3),
        "rate_vs_sdk": rate_vs_sdk,
    }


def test_latency_segments_follow_each_event_through_its_request() -> None:
    """Two events of one request: each segment is the difference of the times of its path."""
    seen = [
        (b"k1", "e1", 1_000_000, 1000.020),  # produced at 1000.000, readable 20 ms later
        (b"k2", "e2", 1_000_500, 1000.510),
    ]
    journal = [["P", 1001.100, 1001.160, 2, ["e1", "e2"]]]
    sends = [("P", 1001.090, 1001.165)]
    out = breakdown(seen, journal, [1.165, 0.665], None, sends)
    segments = out["segments_ms"]
    assert segments["produce_to_readable"]["max"] == 20.0
    assert segments["readable_to_request_arrived"]["max"] == 1080.0  # e1: 1001.100 - 1000.020
    assert segments["produce_to_answered"]["max"] == 1160.0
    request = out["request_ms"]
    assert request["first_event_readable_to_stage_sends"]["p50"] == 1070.0
    assert request["stage_sends_to_simulator_reads"]["p50"] == 10.0
    assert request["simulator_reads_to_answers"]["p50"] == 60.0
    assert request["simulator_answers_to_stage_has_answer"]["p50"] == 5.0
    assert out["produce_to_accepted_ms"]["max"] == 1165.0


def test_latency_from_the_raw_record_when_the_normalizer_is_in_the_path() -> None:
    """With an origin per key, the path starts at the raw record's produce."""
    seen = [(b"k1", "e1", 1_000_200, 1000.300)]
    journal = [["P", 1001.0, 1001.05, 1, ["e1"]]]
    out = breakdown(seen, journal, [0.85], {b"k1": 1000.0})
    assert out["segments_ms"]["raw_produce_to_enriched_produce"]["p50"] == 200.0
    assert out["segments_ms"]["produce_to_answered"]["p50"] == 1050.0


def test_a_re_sent_event_counts_from_its_first_request() -> None:
    """A repeat in a later request does not move the event's arrival."""
    seen = [(b"k1", "e1", 1_000_000, 1000.0)]
    journal = [["P", 1001.0, 1001.05, 1, ["e1"]], ["P", 1003.0, 1003.05, 1, ["e1"]]]
    out = breakdown(seen, journal, [1.05])
    assert out["segments_ms"]["produce_to_answered"]["max"] == 1050.0


def test_deliver_goals_take_the_worst_latency() -> None:
    """CPU goals hold at every latency: the worst point decides, with its margin."""
    result = goals({"50ms": _point(0.03, 0.02, 4.0), "500ms": _point(0.06, 0.05, 12.0)})
    assert result["cpu_vs_floor"]["measured"] == 1.5
    assert result["cpu_vs_floor"]["met"]
    assert not result["cpu_per_1000"]["met"]
    assert result["cpu_per_1000"]["margin"] == -0.01
    assert result["rate_vs_sdk_500ms"]["met"]


def test_functions_are_counted_under_their_component() -> None:
    """Module paths and built-in names map to the table's components, first match wins."""
    assert component("/x/site-packages/httpx/_client.py", "send").startswith("HTTP client")
    assert component("~", "<method 'consume' of 'cimpl.Consumer' objects>").startswith("Kafka")
    assert component("~", "<built-in method _hashlib.openssl_sha256>").startswith("SHA-256")
    assert component("/w/stream/core/normalize/phone.py", "normalize").startswith("normalize")
    assert component("~", "<method 'lower' of 'str' objects>") == BUILTINS
    assert component("/w/elsewhere.py", "f") == OTHER


def test_requests_arriving_together_form_a_burst_ranked_by_arrival() -> None:
    """Answers beyond the configured latency are grouped by the request's place in its burst."""
    journal = [
        ["A", 10.000, 10.060, 1, []],  # first of a burst: 10 ms beyond 50 ms
        ["B", 10.005, 10.085, 1, []],  # second: 30 ms beyond
        ["A", 11.000, 11.070, 1, []],  # a new burst a second later: 20 ms beyond
    ]
    out = bursts(journal, 0.050)
    assert out["bursts"] == 2
    assert out["mean_requests_per_burst"] == 1.5
    assert out["answer_beyond_latency_ms_by_rank"] == {0: 15.0, 1: 30.0}
