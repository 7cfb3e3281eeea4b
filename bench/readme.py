"""The README's benchmark tables, written from ``bench/results/*.json`` so they never drift.

Two blocks of README.md sit between marker comments: the goals (every goal met or missed, from
:func:`bench.report.goal_rows`) and the headline figures of each benchmark. A full run, a run
of ``--only`` benchmarks and ``--report`` write them again from every JSON result on disk; a
quick run never does (its inputs are smaller). ``tests/unit/test_bench_readme.py`` fails when
README.md and the committed results disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import orjson

from bench import common
from bench.report import Result, goal_rows

START = "<!-- bench:tables: written by `python -m bench` from bench/results/*.json -->"
END = "<!-- /bench:tables -->"
_BLOCK = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)


def load(results_dir: Path | None = None) -> dict[str, Result]:
    """Every benchmark's JSON result in ``results_dir`` (the full run's, by default)."""
    where = results_dir or common.RESULTS
    return {
        name: orjson.loads(path.read_bytes())
        for name in common.BENCHMARKS
        if (path := where / f"{name}.json").exists()
    }


def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def figure_rows(results: Mapping[str, Result]) -> list[tuple[str, str, str, str]]:
    """(benchmark, capi-stream, beside it in the same run, ratio) for the headline figures."""
    rows: list[tuple[str, str, str, str]] = []
    if (dl := results.get("deliver")) is not None:
        for latency, p in dl["throughput"].items():
            capi, floor, sdk = p["capi"], p["floor"], p["sdk"]
            rows.append((
                f"deliver @ {latency}, {capi['events']:,} events, {dl.get('pixels', 8)} pixels",
                f"{_n(capi['events_per_s'])}/s, {capi['cpu_s_per_1000_events']:.4f} CPU-s/1000",
                f"floor {_n(floor['events_per_s'])}/s, {floor['cpu_s_per_1000_events']:.4f}; "
                f"SDK loop {_n(sdk['events_per_s'])}/s, {sdk['cpu_s_per_1000_events']:.4f}",
                f"{p['rate_vs_sdk']:.1f}x SDK rate; CPU {p['cpu_vs_floor']:.2f}x floor",
            ))  # fmt: skip
    if (norm := results.get("normalize")) is not None:
        c = norm["core"]["contenders"]
        ours, sdk, floor = c["capi-stream+gc"], c["sdk"], c["floor"]
        beside = (
            f"SDK {_n(sdk['median_cpu_events_per_s'])}/s ({sdk['median_cpu_us_per_event']:.1f} "
            f"µs); floor {_n(floor['median_cpu_events_per_s'])}/s "
            f"({floor['median_cpu_us_per_event']:.1f} µs)"
        )
        if (decode := c.get("decode")) is not None:
            beside += f"; the raw decode alone {decode['median_cpu_us_per_event']:.1f} µs"
        rows.append((
            f"normalize core, {norm['core']['events']:,} events (per CPU-second)",
            f"{_n(ours['median_cpu_events_per_s'])}/s ({ours['median_cpu_us_per_event']:.1f} µs)",
            beside,
            f"{ours['median_cpu_events_per_s'] / sdk['median_cpu_events_per_s']:.2f}x SDK, "
            f"{ours['median_cpu_events_per_s'] / floor['median_cpu_events_per_s']:.2f}x floor",
        ))  # fmt: skip
        if (stage := norm.get("stage")) is not None:
            modes = stage["modes"]
            eos, alo = modes["exactly_once"], modes["at_least_once"]
            rows.append((
                f"normalize stage through Kafka, {stage['events']:,} events, exactly once",
                f"{_n(eos['median_events_per_s'])}/s, {eos['median_cpu_us_per_event']:.1f} µs "
                f"CPU an event, {_n(eos['peak_rss_mb'])} MB",
                f"at least once {_n(alo['median_events_per_s'])}/s, "
                f"{alo['median_cpu_us_per_event']:.1f} µs",
                "",
            ))  # fmt: skip
    if (wk := results.get("workers")) is not None:
        parts = [(s, wk[s]) for s in ("normalize", "deliver") if s in wk]
        rows.append((
            "`--workers 2` against 1 ("
            + " / ".join(f"{s} {w['one_worker']['events']:,} events" for s, w in parts) + ")",
            ", ".join(f"{s} {_n(w['two_workers']['events_per_s'])}/s" for s, w in parts),
            ", ".join(f"{_n(w['one_worker']['events_per_s'])}/s" for _, w in parts),
            ", ".join(f"{w['ratio_two_vs_one']:.2f}x" for _, w in parts),
        ))  # fmt: skip
    return rows


def tables(results: Mapping[str, Result]) -> str:
    """The README block: the goals, then the figures, between the markers."""
    lines = [START, "", "| goal | measured | beside | result |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in goal_rows(results)]
    lines += [
        "",
        "| benchmark | capi-stream | beside (same run) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in figure_rows(results)]
    return "\n".join([*lines, "", END])


def update(readme: Path, results: Mapping[str, Result]) -> bool:
    """Write the block into ``readme``; False (and nothing written) when it has no markers."""
    text = readme.read_text(encoding="utf-8")
    if _BLOCK.search(text) is None:
        return False
    new = _BLOCK.sub(lambda _: tables(results), text, count=1)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True
