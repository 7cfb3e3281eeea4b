"""``bench/results/REPORT.md`` from the benchmarks' JSON results: goals first, then the tables.

Every function takes a benchmark's result (as its ``run`` returned it) and gives Markdown lines;
a benchmark that did not run leaves its section out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import common

Result = Mapping[str, Any]


def _n(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _met(met: bool, margin: str) -> str:
    return f"**{'met' if met else 'missed'}** ({margin})"


def goal_rows(results: Mapping[str, Result]) -> list[tuple[str, str, str, str]]:
    """(goal, measured, beside what, result) for every goal of the run."""
    rows: list[tuple[str, str, str, str]] = []
    if (dl := results.get("deliver")) is not None:
        g = dl["goals"]
        worst = max(dl["throughput"].items(), key=lambda kv: kv[1]["cpu_vs_floor"])
        rows.append((
            "deliver: CPU per event ≤ 1.5x the floor's (worst latency)",
            f"{g['cpu_vs_floor']['measured']:.2f}x at {worst[0]}",
            f"capi-stream {worst[1]['capi']['cpu_s_per_1000_events']:.4f} vs floor "
            f"{worst[1]['floor']['cpu_s_per_1000_events']:.4f} CPU-s/1000",
            _met(g["cpu_vs_floor"]["met"], f"{g['cpu_vs_floor']['margin']:+.2f}x"),
        ))  # fmt: skip
        if "rate_vs_sdk_500ms" in g:
            p = dl["throughput"]["500ms"]
            rows.append((
                "deliver: ≥ 10x the SDK loop's rate at 500 ms",
                f"{g['rate_vs_sdk_500ms']['measured']:.1f}x",
                f"{_n(p['capi']['events_per_s'])}/s vs {_n(p['sdk']['events_per_s'])}/s",
                _met(g["rate_vs_sdk_500ms"]["met"], f"{g['rate_vs_sdk_500ms']['margin']:+.1f}x"),
            ))  # fmt: skip
        rows.append((
            "deliver: ≤ 0.05 CPU-s per 1,000 events (worst latency)",
            f"{g['cpu_per_1000']['measured']:.4f}",
            "(the Go processor: 0.065 to 0.08)",
            _met(g["cpu_per_1000"]["met"], f"{g['cpu_per_1000']['margin']:+.4f}"),
        ))  # fmt: skip
    if (norm := results.get("normalize")) is not None:
        g = norm["goals"]
        c = norm["core"]["contenders"]
        r = norm["core"]["ratios"]
        rows.append((
            "normalize: ≥ 1.0x the SDK's rate (core, GC tuned as the stage runs it; "
            "events per CPU-second)",
            f"{g['core_vs_sdk']['measured']:.2f}x (wall clock {r['gc_tuned_vs_sdk']:.2f}x)",
            f"{_n(c['capi-stream+gc']['median_cpu_events_per_s'])} vs SDK "
            f"{_n(c['sdk']['median_cpu_events_per_s'])} per CPU-s"
            + (
                f"; the raw decode alone is {r['decode_vs_sdk_cpu_time']:.2f}x the SDK's rate, "
                f"the floor {r['floor_vs_sdk_cpu_time']:.2f}x"
                if "decode_vs_sdk_cpu_time" in r
                else ""
            ),
            _met(g["core_vs_sdk"]["met"], f"{g['core_vs_sdk']['margin']:+.2f}x"),
        ))  # fmt: skip
        rows.append((
            "normalize: ≥ 0.70x the floor's rate (core; events per CPU-second)",
            f"{g['core_vs_floor']['measured']:.2f}x (wall clock {r['gc_tuned_vs_floor']:.2f}x)",
            f"{_n(c['capi-stream+gc']['median_cpu_events_per_s'])} vs floor "
            f"{_n(c['floor']['median_cpu_events_per_s'])} per CPU-s",
            _met(g["core_vs_floor"]["met"], f"{g['core_vs_floor']['margin']:+.2f}x"),
        ))  # fmt: skip
    if (lat := results.get("latency")) is not None and lat.get("goal"):
        g = lat["goal"]
        d = lat["variants"]["default"]
        rows.append((
            f"p99 produce → accepted at {lat['rate']:,.0f}/s over 8 pixels ≤ linger + 250 ms",
            f"{_n(g['measured_ms'])} ms",
            f"linger {d['linger_ms']:,} ms → goal {d['linger_ms'] + 250:,} ms "
            f"(p50 {_n(d['produce_to_accepted_ms']['p50'])} ms)",
            _met(g["met"], f"{g['margin_ms']:+,.0f} ms"),
        ))  # fmt: skip
    if (out := results.get("outage")) is not None:
        b = out.get("broker_outage", {})
        if "goal" in b:
            rows.append((
                f"peak RSS ≤ 300 MB through a {b['outage_seconds']:g} s broker outage, "
                f"{b['backlog_events']:,} backlog",
                f"deliver {_n(b['deliver']['peak_rss_mb'])} MB, normalize "
                f"{_n(b['normalize']['peak_rss_mb'])} MB",
                f"all delivered and committed: "
                f"{'yes' if b['deliver']['all_delivered_and_committed'] else 'NO'}; "
                f"all normalized: {'yes' if b['normalize']['all_committed'] else 'NO'}",
                _met(b["goal"]["met"], f"{b['goal']['margin_mb']:+,.0f} MB"),
            ))  # fmt: skip
        if (a := out.get("api_outage")) is not None:
            rows.append((
                f"peak RSS ≤ 300 MB through a {a['outage_seconds']:g} s API outage",
                f"{_n(a['peak_rss_mb'])} MB", "deliver stage",
                _met(a["goal"]["met"], f"{a['goal']['margin_mb']:+,.0f} MB"),
            ))  # fmt: skip
    for name, key, label in _TOOLS:
        if (r := results.get(name)) is not None and key in r:
            t = r[key]
            rows.append((
                f"{label}: ≥ 0.8x the hand-written loop",
                f"{t['median_ratio']:.2f}x (by CPU {t['median_cpu_ratio']:.2f}x)",
                f"median of {r.get('rounds', '?')} rounds",
                _met(t["goal"]["met"], f"{t['goal']['margin']:+.2f}x"),
            ))  # fmt: skip
    return rows


_TOOLS = (
    ("publish", "publish", "capi-stream publish"),
    ("replay", "replay", "capi-stream replay --mode oneoff"),
    ("dlq", "dlq_republish", "capi-stream dlq republish"),
)


def deliver_lines(dl: Result) -> list[str]:
    lines = [
        f"### Deliver: {dl['events']:,} enriched events over 8 pixels, each contender in its own "
        "process",
        "",
        "| latency | contender | events/s | CPU-s per 1,000 events | vs capi-stream (rate) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, p in dl["throughput"].items():
        capi = p["capi"]["events_per_s"]
        for name, label in (("capi", "capi-stream"), ("floor", "floor (splice + httpx, "
                            "no guarantees)"), ("sdk", "SDK EventRequest loop")):  # fmt: skip
            r = p[name]
            lines.append(
                f"| {key} | {label} ({r['events']:,} events) | {_n(r['events_per_s'])} "
                f"| {r['cpu_s_per_1000_events']:.4f} | {r['events_per_s'] / capi:.2f}x |"
            )
        lines.append(
            f"| {key} | **ratios** | capi-stream {p['rate_vs_sdk']:.1f}x the SDK's rate "
            f"| CPU {p['cpu_vs_floor']:.2f}x the floor's, {p['cpu_vs_sdk']:.2f}x the SDK's | |"
        )
    notes = [
        f"{key}: capi-stream {p['capi']['cpu_s_first_record_to_done_per_1000']:.4f}, floor "
        f"{p['floor'].get('cpu_s_first_record_to_done_per_1000', float('nan')):.4f} "
        f"({p.get('cpu_vs_floor_without_start_up', float('nan')):.2f}x; capi-stream "
        f"{p['capi']['requests']:,} requests, {p['capi']['retries']} retries)"
        for key, p in dl["throughput"].items()
        if "cpu_s_first_record_to_done_per_1000" in p["capi"]
    ]
    if notes:
        head = "CPU-s per 1,000 events from the first record on (start-up left out): "
        lines += ["", head + "; ".join(notes)]
    return [*lines, ""]


def normalize_lines(norm: Result) -> list[str]:
    core = norm["core"]
    c = core["contenders"]
    labels = {
        "capi-stream": "capi-stream (Enricher.process: decode, normalize, hash, validate, "
        "envelope), CPython's GC defaults",
        "capi-stream+gc": "capi-stream, GC tuned as the stage runs it (freeze, gen 0 at 50,000)",
        "sdk": "SDK (UserData/CustomData/Event + normalize(), no Avro)",
        "floor": "floor (fastavro decode, SHA-256 of every value, orjson, envelope encode)",
        "decode": "fastavro decode of the raw record alone (no rule, no hash, no encode)",
    }
    lines = [
        f"### Normalize: {core['events']:,} events, median of {core['rounds']} rounds "
        "(one process, no Kafka)",
        "",
        "| contender | events/s | events per CPU-s | CPU µs per event | vs SDK (wall / CPU) "
        "| vs floor (wall / CPU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def rates(name: str) -> tuple[float, float]:
        return c[name]["median_events_per_s"], c[name]["median_cpu_events_per_s"]

    sdk, floor = rates("sdk"), rates("floor")
    for name, label in labels.items():
        if name in c:
            wall, cpu = rates(name)
            lines.append(
                f"| {label} | {_n(wall)} | {_n(cpu)} "
                f"| {_n(c[name].get('median_cpu_us_per_event'), 1)} "
                f"| {wall / sdk[0]:.2f}x / {cpu / sdk[1]:.2f}x "
                f"| {wall / floor[0]:.2f}x / {cpu / floor[1]:.2f}x |"
            )
    if "decode" in c:
        share = c["decode"]["median_cpu_us_per_event"] / c["sdk"]["median_cpu_us_per_event"]
        lines += [
            "",
            f"The raw record's decode alone costs {c['decode']['median_cpu_us_per_event']:.1f} "
            f"µs per event, {share:.2f} of the SDK's whole normalization "
            f"({c['sdk']['median_cpu_us_per_event']:.1f} µs); the floor, which adds only "
            "hashing and the envelope, reaches "
            f"{core['ratios'].get('floor_vs_sdk_cpu_time', 0):.2f}x the SDK per CPU-second.",
        ]
    if (stage := norm.get("stage")) is not None:
        lines += [
            "",
            f"Stage through Kafka, {stage['events']:,} events, its own process (run() to the "
            "last commit; CPU of every thread):",
            "",
            "| mode | events/s | steady events/s | CPU µs per event | peak RSS | "
            "vs SDK core (rate) | vs floor core (rate) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, m in stage["modes"].items():
            lines.append(
                f"| {label} | {_n(m['median_events_per_s'])} "
                f"| {_n(m['median_steady_events_per_s'])} | {m['median_cpu_us_per_event']:.1f} "
                f"| {_n(m['peak_rss_mb'])} MB | {m.get('vs_sdk_core', 0):.2f}x "
                f"| {m.get('vs_floor_core', 0):.2f}x |"
            )
        if (gct := stage.get("gc_tuning")) is not None:
            lines += [
                "",
                "GC tuning measured (exactly once, the stage as shipped against the same stage "
                "with CPython's collector defaults): CPU per event "
                f"{gct['cpu_per_event_default_vs_tuned']:.2f}x lower tuned (wall-clock rate "
                f"{gct['rate_tuned_vs_default']:.2f}x); peak RSS {_n(gct['peak_rss_mb_tuned'])} "
                f"MB tuned, {_n(gct['peak_rss_mb_default'])} MB default. In the core: "
                f"{core['ratios'].get('gc_tuned_vs_default_cpu_time', 0):.2f}x the events per "
                f"CPU-second (wall clock {core['ratios']['gc_tuned_vs_default']:.2f}x).",
            ]
    return [*lines, ""]


def latency_lines(lat: Result) -> list[str]:
    lines = [
        f"### Latency at {lat['rate']:,.0f} events/s over 8 pixels, simulator at "
        f"{lat['sim_latency_ms']:g} ms, {lat.get('seconds_each', 0):g} s each",
        "",
        "Medians and p99 in ms. Segments measured from outside the stage: produce timestamp → "
        "readable by a probe consumer → the stage sends the request (its httpx calls) → the "
        "simulator has read it → answered (its journal) → the stage has the answer.",
        "",
        "| variant | p50 / p99 produce → accepted (the goal's measure) | raw → enriched "
        "produce (normalize stage) | produce → readable | first event readable → stage sends "
        "| stage sends → simulator has read it | simulator read → answered | answer → stage "
        "| p99 goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, v in lat["variants"].items():
        seg, req = v["segments_ms"], v["request_ms"]

        def pair(d: Mapping[str, Any]) -> str:
            return f"{_n(d['p50'])} / {_n(d['p99'])}"

        g = v["goal"]
        verdict = _met(g["met"], f"{g['margin_ms']:+,.0f}")
        through = "raw_produce_to_enriched_produce" in seg
        measure = seg["produce_to_answered"] if through else v["produce_to_accepted_ms"]
        rate = f" ({v['producer']['achieved_rate']:,.0f}/s)" if through else ""
        lines.append(
            f"| {name}{rate}: {v['why']} | {pair(measure)} ({g.get('measure', '')}) "
            f"| {pair(seg['raw_produce_to_enriched_produce']) if through else '—'} "
            f"| {pair(seg['produce_to_readable'])} "
            f"| {pair(req['first_event_readable_to_stage_sends'])} "
            f"| {pair(req['stage_sends_to_simulator_reads'])} "
            f"| {pair(req['simulator_reads_to_answers'])} "
            f"| {pair(req['simulator_answers_to_stage_has_answer'])} "
            f"| ≤ {v['linger_ms'] + 250:,}: {verdict} |"
        )
    lines.append("")
    for name, v in lat["variants"].items():
        req, b = v["request_ms"], v.get("simulator_bursts") or {}
        late = req["first_event_readable_to_stage_sends"]["p99"] - v["linger_ms"]
        ranks = b.get("answer_beyond_latency_ms_by_rank") or {}
        spread = ""
        if len(ranks) >= 2:
            values = list(ranks.values())
            spread = (
                f"; the last request of a burst is answered {values[-1] - values[0]:,.0f} ms "
                "after the first"
            )
        lines.append(
            f"- {name}: the stage sends a window's request at p99 {late:+,.0f} ms after linger "
            f"(from its first event readable); the simulator answers p99 "
            f"{_n(b.get('answer_beyond_latency_ms', {}).get('p99'))} ms beyond its "
            f"{lat['sim_latency_ms']:g} ms{spread}."
        )
    lines.append("")
    for name, v in lat["variants"].items():
        lines.append(
            f"- {name}: stage CPU {v.get('stage_cpu_share_of_one_core')} of one core, load "
            f"average {v.get('load_average_1m')}, {v['request_events']['requests']} requests of "
            f"{v['request_events']['mean']} events on average; the slowest 1 % spent (mean ms) "
            f"{ {k: x for k, x in v['slowest_1pct_mean_ms'].items() if k != 'events'} }."
        )
        if (nz := v.get("normalizer_stage")) is not None:
            lines.append(
                f"  - {name}: the normalize stage used {nz.get('cpu_share')} of one core "
                f"({nz.get('cpu_us_per_event')} µs CPU per event) in {nz['transactions']:,} "
                f"transactions for {nz['consumed']:,} records."
            )
        if (b := v.get("simulator_bursts")) is not None:
            lines.append(
                f"  - {name}: requests reach the simulator in bursts of "
                f"{b['mean_requests_per_burst']} (spread {b['mean_arrival_spread_ms']} ms); its "
                f"answer beyond the configured latency, by position in the burst (mean ms): "
                f"{b['answer_beyond_latency_ms_by_rank']}; overall p50 / p99 "
                f"{_n(b['answer_beyond_latency_ms']['p50'])} / "
                f"{_n(b['answer_beyond_latency_ms']['p99'])} ms."
            )
    return [*lines, ""]


def breakdown_lines(br: Result) -> list[str]:
    lines = [
        f"### CPU per event by component ({br['events']:,} events per stage; cProfile shares of "
        "the Python threads applied to an unprofiled run's µs; GC and librdkafka's threads "
        "measured directly)",
        "",
    ]
    for stage in ("normalize", "deliver"):
        if stage not in br:
            continue
        b = br[stage]
        lines += [
            f"{stage}: {b['cpu_us_per_event']:.1f} µs CPU per event in all",
            "",
            "| component | µs per event |",
            "| --- | ---: |",
        ]
        for label, us in sorted(b["components_us_per_event"].items(), key=lambda kv: -kv[1]):
            if us >= 0.05:
                lines.append(f"| {label} | {us:.1f} |")
        lines.append("")
    return lines


def workers_lines(wk: Result) -> list[str]:
    lines = [
        "### --workers 2 against one worker (command line, 2 cores; rate from first progress)",
        "",
        "| stage | 1 worker | 2 workers | ratio | CPU-s per 1,000 (1 / 2 workers, with start-up) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for stage in ("normalize", "deliver"):
        if stage in wk:
            w = wk[stage]
            one, two = w["one_worker"], w["two_workers"]
            lines.append(
                f"| {stage} ({one['events']:,} events) | {_n(one['events_per_s'])}/s "
                f"| {_n(two['events_per_s'])}/s | {w['ratio_two_vs_one']:.2f}x "
                f"| {one['cpu_s_per_1000_events_with_start_up']:.4f} / "
                f"{two['cpu_s_per_1000_events_with_start_up']:.4f} |"
            )
    return [*lines, ""]


def outage_lines(out: Result) -> list[str]:
    lines = ["### Outages", ""]
    b = out.get("broker_outage", {})
    if "skipped" in b:
        lines.append(f"- Broker outage skipped: {b['skipped']}.")
    elif b:
        for stage in ("deliver", "normalize"):
            s = b[stage]
            lines.append(
                f"- Broker outage, {stage}: peak RSS {_n(s['peak_rss_mb'])} MB (per process "
                f"{s['peak_rss_mb_per_process']}), restarts {s['restarts']} (exit codes "
                f"{s['exit_codes']}), done {s['seconds_broker_back_to_done']} s after the "
                "broker was back."
            )
        d = b["deliver"]
        lines.append(
            f"- The deliverer's backlog: {d['sim_accepted']:,} accepted, "
            f"{d['sim_duplicates']:,} duplicates at the simulator, {d['committed_events']:,} "
            f"committed; the broker was killed at {b['accepted_when_killed']:,} accepted."
        )
    if (a := out.get("api_outage")) is not None:
        lines.append(
            f"- API outage: peak RSS {_n(a['peak_rss_mb'])} MB; all accepted "
            f"{a['seconds_outage_end_to_all_accepted']} s after it ended."
        )
    return [*lines, ""]


def tools_lines(results: Mapping[str, Result]) -> list[str]:
    lines = []
    for name, key, label in _TOOLS:
        if (r := results.get(name)) is not None and key in r:
            t = r[key]
            tool = t.get("median_tool_rows_per_s", t.get("median_tool_records_per_s"))
            hand = t.get("median_hand_rows_per_s", t.get("median_hand_records_per_s"))
            lines.append(
                f"- {label}: {_n(tool)}/s against {_n(hand)}/s, per-round ratios {t['ratios']}, "
                f"by CPU {t['cpu_ratios']}."
            )
    return ["### Operator tools beside hand-written loops", "", *lines, ""] if lines else []


def render(
    results: Mapping[str, Result],
    total_s: float,
    quick: bool,
    plot_path: Path | None,
    *,
    trees: tuple[str, str] = ("", ""),
    failures: Mapping[str, str] | None = None,
) -> str:
    machine = common.machine_info()
    p = machine["packages"]
    lines = [
        "# capi-stream benchmarks"
        + (" (quick run: reduced inputs, not for the goals)" if quick else ""),
        "",
        f"Command: `{common.command_line()}` · total {total_s:.0f} s · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_mb']:,} MB, load average at the end {machine['load_average_at_start']}, "
        f"Python {machine['python']}, fastavro {p['fastavro']}, confluent-kafka "
        f"{p['confluent-kafka']} (librdkafka {p['librdkafka']}), httpx {p['httpx']}, "
        f"facebook-business {p['facebook-business']}; commit {machine['git_commit']}"
        + (" (stream/ has uncommitted changes)" if machine["stream_dirty"] else "")
        + f"; stream/ tree {trees[0]}"
        + (
            f" at the start and {trees[1]} at the end: **stream/ changed during the run** "
            "(processes started later ran the newer code)"
            if trees[0] != trees[1]
            else ""
        ),
        "",
        "Every ratio compares contenders of the same run on the same inputs; the machine is "
        "shared, so read the ratios, not the rates.",
        "",
        "## Goals",
        "",
        "| goal | measured | beside | result |",
        "| --- | --- | --- | --- |",
        *(f"| {g} | {m} | {b} | {r} |" for g, m, b, r in goal_rows(results)),
        "",
    ]
    for name, why in (failures or {}).items():
        lines.append(f"- **{name} did not finish**: {why}")
    if failures:
        lines.append("")
    lines += ["## Figures", ""]
    if "deliver" in results:
        lines += deliver_lines(results["deliver"])
        if plot_path is not None:
            lines += [f"![deliver throughput]({plot_path.name})", ""]
    if "normalize" in results:
        lines += normalize_lines(results["normalize"])
    if "latency" in results:
        lines += latency_lines(results["latency"])
    if "breakdown" in results:
        lines += breakdown_lines(results["breakdown"])
    if "workers" in results:
        lines += workers_lines(results["workers"])
    if "outage" in results:
        lines += outage_lines(results["outage"])
    lines += tools_lines(results)
    return "\n".join(lines)
