"""Run every benchmark, each beside its baseline, and write the results and a report.

    .venv/bin/python -m bench            # full run, about 9 minutes on 2 cores
    .venv/bin/python -m bench --quick    # smaller inputs, about 2-3 minutes: a smoke run
    .venv/bin/python -m bench --only publish   # the operator tools beside hand-written loops

Writes ``bench/results/normalize.json``, ``bench/results/deliver.json``,
``bench/results/publish.json`` (publish, replay and dlq republish, ``bench/publish_bench.py``),
``bench/results/REPORT.md`` (a Markdown table with each goal met or missed) and, when matplotlib
is installed, ``bench/results/deliver_throughput.png``. A quick run writes the same files under
``bench/results/quick/`` so it never overwrites the figures of a full run. ``KAFKA_BOOTSTRAP``
runs against an existing broker instead of starting one. The simulator benchmark
(``bench/sim_bench.py``) stays separate.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import RESULTS, kafka_broker, log, write_result

#: Run in this order; each is ``bench/NAME_bench.py`` with ``run(bootstrap, **plan[NAME])``.
BENCHMARKS = ("normalize", "deliver", "publish")
FULL = {
    "normalize": {"events": 100_000, "rounds": 3, "stage_repeats": 2},
    "deliver": {
        "events": 100_000,
        "baseline_events": 24_000,
        "latencies": (50.0, 200.0, 500.0),
        "single_pixel_events": 50_000,
        "steady_seconds": 20.0,
        "steady_single": True,
        "backlog": 200_000,
        "outage_s": 60.0,
    },
    "publish": {"rows": 50_000, "rounds": 5},
}
QUICK = {
    "normalize": {"events": 30_000, "rounds": 1, "stage_repeats": 1},
    "deliver": {
        "events": 30_000,
        "baseline_events": 8_000,
        "latencies": (50.0, 500.0),
        "single_pixel_events": 16_000,
        "steady_seconds": 8.0,
        "steady_single": False,
        "backlog": 50_000,
        "outage_s": 15.0,
    },
    "publish": {"rows": 20_000, "rounds": 2},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (~2-3 min), smoke run")
    parser.add_argument(
        "--only",
        choices=BENCHMARKS,
        default=None,
        help="run one benchmark; its report goes to REPORT-NAME.md, beside the full run's",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    from stream.logs import configure

    configure("warning", "json")  # the stages run in this process: only their problems show
    out_dir = RESULTS / "quick" if args.quick else RESULTS
    common.RESULTS = out_dir  # write_result writes here
    began = time.perf_counter()
    tree_at_start = common.stream_tree_hash()
    results: dict[str, dict[str, Any]] = {}
    with kafka_broker() as bootstrap:
        for name in BENCHMARKS:
            if args.only not in (None, name):
                continue
            bench = importlib.import_module(f"bench.{name}_bench")
            t = time.perf_counter()
            data = bench.run(bootstrap, **plan[name])
            data["seconds"] = round(time.perf_counter() - t, 1)
            data["quick"] = args.quick
            results[name] = data
            log(f"wrote {write_result(name, data)}")
    total = time.perf_counter() - began
    plot_path = None
    if "deliver" in results:
        from bench import plot

        plot_path = plot.plot(results["deliver"], out_dir / "deliver_throughput.png")
        log(f"wrote {plot_path}" if plot_path else "no plot: matplotlib is not installed")
    tree_at_end = common.stream_tree_hash()
    report = render_report(results, total, args.quick, plot_path, (tree_at_start, tree_at_end))
    out_dir.mkdir(parents=True, exist_ok=True)
    # one benchmark alone leaves the report of the full run as it is
    report_path = out_dir / ("REPORT.md" if args.only is None else f"REPORT-{args.only}.md")
    report_path.write_text(report, encoding="utf-8")
    log(f"wrote {report_path} ({total:.0f}s in all)")
    print(report)
    return 0


# -- the report -------------------------------------------------------------------------------


def _n(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _met(goal: dict[str, Any]) -> str:
    return "**met**" if goal["met"] else "**missed**"


def render_report(
    results: dict[str, dict[str, Any]],
    total_s: float,
    quick: bool,
    plot_path: Path | None,
    trees: tuple[str, str] = ("", ""),
) -> str:
    machine = common.machine_info()
    lines = [
        "# capi-stream benchmarks"
        + (" (quick run: reduced inputs, not for the goals)" if quick else ""),
        "",
        f"Command: `{common.command_line()}` · total {total_s:.0f} s · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_mb']:,} MB, Python {machine['python']}, "
        f"fastavro {machine['packages']['fastavro']}, "
        f"confluent-kafka {machine['packages']['confluent-kafka']} "
        f"(librdkafka {machine['packages']['librdkafka']}), "
        f"facebook-business {machine['packages']['facebook-business']}; "
        f"commit {machine['git_commit']}"
        + (" (stream/ has uncommitted changes)" if machine["stream_dirty"] else "")
        + f"; stream/ tree {trees[0]}"
        + (
            f" at the start and {trees[1]} at the end: **stream/ changed during the run**, so "
            "figures measured in this process (normalize, deliver throughput and latency) ran "
            "the code of the start, while processes started later (the simulator, the outage "
            "deliverer) ran newer code"
            if trees[0] != trees[1]
            else ""
        ),
        "",
        "Every ratio compares two contenders of the same run on the same inputs. Rates are "
        "events per second; medians where a figure was repeated.",
        "",
        "| benchmark | capi-stream | baseline | ratio | goal | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    notes: list[str] = []
    if (norm := results.get("normalize")) is not None:
        core = norm["core"]
        c = core["contenders"]
        r = core["ratios"]
        g = norm["goals"]
        n_events = core["events"]
        rounds = core["rounds"]
        lines.append(
            f"| normalize core, {n_events:,} events, median of {rounds} "
            f"(Enricher.process: Avro decode, normalize, hash, validate, Avro encode) "
            f"| {_n(c['capi-stream']['median_events_per_s'])}/s "
            f"| SDK (UserData + Event.normalize, no Avro) {_n(c['sdk']['median_events_per_s'])}/s "
            f"| {r['capi_vs_sdk']:.2f}x | ≥ 1.5x | {_met(g['core_vs_sdk'])} "
            f"({g['core_vs_sdk']['margin']:+.2f}x) |"
        )
        lines.append(
            f"| normalize core vs floor | {_n(c['capi-stream']['median_events_per_s'])}/s "
            f"| floor (fastavro decode + sha256 + encode, no validation) "
            f"{_n(c['floor']['median_events_per_s'])}/s "
            f"| {r['capi_vs_floor']:.2f}x | ≥ 0.70x | {_met(g['core_vs_floor'])} "
            f"({g['core_vs_floor']['margin']:+.2f}x) |"
        )
        lines.append(
            f"| floor vs SDK (for scale) | — | floor {_n(c['floor']['median_events_per_s'])}/s "
            f"vs SDK {_n(c['sdk']['median_events_per_s'])}/s | {r['floor_vs_sdk']:.2f}x | — | — |"
        )
        for mode, m in (norm.get("stage") or {}).get("modes", {}).items():
            lines.append(
                f"| normalize stage through Kafka, {mode}, {n_events:,} events "
                f"(run() to last commit; steady {_n(m['median_steady_events_per_s'])}/s) "
                f"| {_n(m['median_events_per_s'])}/s "
                f"| SDK core {_n(c['sdk']['median_events_per_s'])}/s · "
                f"floor core {_n(c['floor']['median_events_per_s'])}/s "
                f"| {m['vs_sdk_core']:.2f}x SDK · {m['vs_floor_core']:.2f}x floor | (context) | — |"
            )
        notes.append(
            f"Normalize core per-round ratios vs SDK: {r['capi_vs_sdk_per_round']}; vs floor: "
            f"{r['capi_vs_floor_per_round']}. By CPU time: {r['capi_vs_sdk_cpu_time']:.2f}x SDK, "
            f"{r['capi_vs_floor_cpu_time']:.2f}x floor. capi-stream outcomes: "
            f"{c['capi-stream']['outcomes']}; SDK errors: {c['sdk']['sdk_errors'] or 'none'}. "
            f"Median µs per event: capi-stream {c['capi-stream']['median_us_per_event']}, "
            f"SDK {c['sdk']['median_us_per_event']}, floor {c['floor']['median_us_per_event']}."
        )
    if (dl := results.get("deliver")) is not None:
        for key, point in dl["throughput"].items():
            base = point["sdk_baseline"]
            for label, name, ratio in (
                ("8 pixels", "capi_8_pixels", "ratio_8_pixels_vs_baseline"),
                ("1 pixel", "capi_1_pixel", "ratio_1_pixel_vs_baseline"),
            ):
                run = point[name]
                goal = "≥ 10x" if key == "500ms" else "—"
                result = "—"
                if key == "500ms":
                    result = (
                        "**met**" if point[ratio] >= 10 else "**missed**"
                    ) + f" ({point[ratio] - 10:+.2f}x)"
                lines.append(
                    f"| deliver end to end @ {key} simulated latency, {label}, "
                    f"{run['events']:,} events | {_n(run['events_per_s'])}/s "
                    f"| SDK EventRequest loop {_n(base['events_per_s'])}/s "
                    f"({base['events']:,} events, 8 pixels) | {point[ratio]:.2f}x | {goal} "
                    f"| {result} |"
                )
        for label, lat in dl["latency_5k"].items():
            g = lat["goal"]
            lines.append(
                f"| deliver p99 latency, produce → accepted, 5k events/s, "
                f"{label.replace('_', ' ')}, {lat['sim_latency_ms']:g} ms simulated latency "
                f"(p50 {lat['latency_ms']['p50']:,.0f} ms, "
                f"{lat['latency_ms']['samples']:,} events) "
                f"| {lat['latency_ms']['p99']:,.0f} ms | — | — "
                f"| ≤ linger + 250 = {lat['linger_ms'] + 250:,} ms "
                f"| {_met(g)} ({g['margin_ms']:+,.0f} ms) |"
            )
        o = dl["outage"]
        g = o["goal"]
        lines.append(
            f"| deliver peak RSS (VmHWM), {o['outage_seconds']:g} s outage, "
            f"{o['backlog_events']:,}-event backlog; all accepted and committed after: "
            f"{'yes' if o['all_delivered_and_committed'] else 'NO'} "
            f"| {o['peak_rss_mb_vmhwm']:,.0f} MB | — | — | ≤ 300 MB "
            f"| {_met(g)} ({g['margin_mb']:+,.0f} MB) |"
        )
        notes.append(
            "Deliver: capi-stream runs with the default deliverer settings (linger 1000 ms, "
            "1,000 events a request, 32 requests in flight, 4 per lane); the baseline posts one "
            "1,000-event request of one pixel at a time, so its rate does not depend on the pixel "
            "count. The outage run caps retry backoff at 5 s (default 60 s) so it ends soon after "
            f"the outage; it took {o['seconds_outage_end_to_all_accepted']} s after the outage "
            f"to deliver the backlog ({o['sim_duplicates']} duplicates at the simulator); "
            f"the deliverer's own summary: {o['deliverer_summary']}; its settings: "
            f"{o.get('deliverer_settings')}. Its log: "
            f"`{o.get('deliverer_log', 'n/a')}`."
        )
        if plot_path is not None:
            notes.append(f"Plot: `{plot_path.name}` (throughput vs simulated latency).")
    if (pub := results.get("publish")) is not None:
        lines += _publish_rows(pub)
        notes.append(
            "Tools vs hand-written loops: each round runs both sides on fresh topics of the same "
            "broker, the order alternating; per-round ratios: "
            + "; ".join(f"{name} {pub[name]['ratios']}" for name in _TOOLS)
            + "; by CPU time of the process: "
            + "; ".join(f"{name} {pub[name]['cpu_ratios']}" for name in _TOOLS)
            + ". The tools run through their CLI entry in this process (settings from "
            "CAPI_STREAM_* variables, the cluster check and offset lookups included); the "
            "publish loop's first records are compared byte for byte with the tool's."
        )
    lines += ["", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


_TOOLS = {
    "publish": ("capi-stream publish, {rows:,} CSV rows (Meta's offline columns)",
                "csv → dict → fastavro → idempotent produce"),
    "replay": ("capi-stream replay --mode oneoff, {rows:,} raw records",
               "consume → produce with the provenance header"),
    "dlq_republish": ("capi-stream dlq republish, {rows:,} dead letters",
                      "consume → decode the letter → produce its original"),
}  # fmt: skip


def _publish_rows(pub: dict[str, Any]) -> list[str]:
    rows = []
    for name, (label, loop) in _TOOLS.items():
        r = pub[name]
        g = r["goal"]
        rows.append(
            f"| {label.format(rows=pub['rows'])}, median of {pub['rounds']} "
            f"| {_n(r['median_tool_rows_per_s'])}/s "
            f"| hand-written loop ({loop}) {_n(r['median_hand_rows_per_s'])}/s "
            f"| {r['median_ratio']:.2f}x (by CPU {r['median_cpu_ratio']:.2f}x) "
            f"| ≥ {g['ratio']:.1f}x | {_met(g)} ({g['margin']:+.2f}x) |"
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
