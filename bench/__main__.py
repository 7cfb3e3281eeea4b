"""Run every benchmark, each beside its baseline, and write the results and a report.

    .venv/bin/python -m bench            # full run, about 15 minutes on 2 cores
    .venv/bin/python -m bench --quick    # smaller inputs, a few minutes: a smoke run for CI
    .venv/bin/python -m bench --only deliver   # one benchmark (repeatable: --only a --only b)

Benchmarks (``bench/NAME_bench.py``, each ``run(bootstrap, **plan[NAME])``):

* ``normalize``: the normalize core beside the SDK's normalizer and a floor; the stage through
  Kafka in its own process (CPU per event, peak RSS, the collector tuning measured);
* ``deliver``: the deliver stage beside the SDK loop and a floor at 50 and 500 ms;
* ``latency``: p99 produce → accepted at 5,000 events/s over 8 pixels, cut into segments;
* ``breakdown``: µs per event per component of both stages' hot paths (cProfile);
* ``workers``: ``--workers 2`` against one worker, both stages;
* ``publish``, ``replay``, ``dlq``: the operator tools beside hand-written loops;
* ``outage``: peak RSS of both stages through a 60 s broker outage with a 200,000 backlog
  (last: it kills the run's broker).

Writes ``bench/results/NAME.json`` per benchmark, ``bench/results/REPORT.md`` (every goal met
or missed with its margin, and the tables) and, when matplotlib is installed,
``bench/results/deliver_throughput.png``; README.md's benchmark tables are written again from
every JSON result (:mod:`bench.readme`). A quick run writes under ``bench/results/quick/`` so
it never overwrites the figures of a full run; ``--only`` writes ``REPORT-NAME.md`` and leaves
the full run's report. ``KAFKA_BOOTSTRAP`` runs against an existing broker instead of starting
one (the broker outage is then skipped). The simulator's own benchmark
(``bench/sim_bench.py``) stays separate.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import BENCHMARKS, RESULTS, kafka_broker, log, write_result

FULL: dict[str, dict[str, Any]] = {
    "normalize": {"events": 60_000, "rounds": 3, "stage_repeats": 1},
    "deliver": {"events": 100_000, "sdk_events": 24_000, "latencies": (50.0, 500.0)},
    "latency": {
        "rate": 5000.0, "seconds": 15.0,
        "variants": (
            "default", "fetch_wait_50ms", "pipeline", "pipeline_txn_100",
        ),
    },
    "breakdown": {"events": 20_000},
    # long enough that the second worker's join and the rebalance are not most of the run
    "workers": {"events": 150_000, "deliver_events": 200_000},
    "publish": {"rows": 30_000, "rounds": 3},
    "replay": {"rows": 20_000, "rounds": 3},
    "dlq": {"rows": 20_000, "rounds": 3},
    "outage": {"backlog": 200_000, "outage_s": 60.0, "api_outage_s": 0.0},
}  # fmt: skip
QUICK: dict[str, dict[str, Any]] = {
    "normalize": {"events": 10_000, "rounds": 1, "stage_repeats": 1},
    "deliver": {"events": 16_000, "sdk_events": 8_000, "latencies": (50.0, 500.0)},
    "latency": {"rate": 5000.0, "seconds": 6.0, "variants": ("default",)},
    "breakdown": {"events": 5_000},
    "workers": {"events": 15_000, "deliver_events": 16_000},
    "publish": {"rows": 5_000, "rounds": 1},
    "replay": {"rows": 5_000, "rounds": 1},
    "dlq": {"rows": 5_000, "rounds": 1},
    "outage": {"backlog": 30_000, "outage_s": 10.0, "api_outage_s": 0.0},
}  # fmt: skip


def available() -> list[str]:
    """The benchmarks whose module exists (another part of the project may add one later)."""
    return [n for n in BENCHMARKS if importlib.util.find_spec(f"bench.{n}_bench") is not None]


def _accepted(fn: Any, plan: dict[str, Any]) -> dict[str, Any]:
    """Only the plan's keys the benchmark's ``run`` takes."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return plan
    return {k: v for k, v in plan.items() if k in params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        default=None,
        help="run this benchmark only (repeatable); the report goes to REPORT-NAME.md",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: write REPORT.md again from the JSON results already there",
    )
    args = parser.parse_args(argv)
    if args.report:
        return rerender(RESULTS / "quick" if args.quick else RESULTS)
    plan = QUICK if args.quick else FULL
    from stream.logs import configure

    configure("warning", "json")  # the stages run in this process: only their problems show
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the simulator's admin calls
    out_dir = RESULTS / "quick" if args.quick else RESULTS
    common.RESULTS = out_dir  # write_result writes here
    began = time.perf_counter()
    tree_at_start = common.stream_tree_hash()
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    names = [n for n in available() if args.only is None or n in args.only]
    with kafka_broker() as bootstrap:
        for name in names:
            bench = importlib.import_module(f"bench.{name}_bench")
            t = time.perf_counter()
            try:
                data = bench.run(bootstrap, **_accepted(bench.run, plan[name]))
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not lose the rest
                failures[name] = f"{type(exc).__name__}: {exc}"
                log(f"{name} FAILED: {failures[name]}")
                continue
            data["seconds"] = round(time.perf_counter() - t, 1)
            data["quick"] = args.quick
            results[name] = data
            log(f"wrote {write_result(name, data)} ({data['seconds']:.0f}s)")
    total = time.perf_counter() - began
    plot_path = None
    if "deliver" in results:
        from bench import plot

        plot_path = plot.plot(results["deliver"], out_dir / "deliver_throughput.png")
        log(f"wrote {plot_path}" if plot_path else "no plot: matplotlib is not installed")
    tree_at_end = common.stream_tree_hash()
    from bench.report import render

    report = render(
        results, total, args.quick, plot_path, trees=(tree_at_start, tree_at_end),
        failures=failures,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    # one benchmark alone leaves the report of the full run as it is
    name = "REPORT.md" if args.only is None else f"REPORT-{'-'.join(args.only)}.md"
    report_path = out_dir / name
    report_path.write_text(report, encoding="utf-8")
    log(f"wrote {report_path} ({total:.0f}s in all)")
    if not args.quick:
        _write_readme()
    print(report)
    return 1 if failures else 0


def _write_readme() -> None:
    """README.md's tables again, from every full-run JSON result on disk (see bench.readme)."""
    from bench import readme

    path = common.ROOT / "README.md"
    if readme.update(path, readme.load()):
        log(f"wrote the tables of {path}")


def rerender(out_dir: Path) -> int:
    """REPORT.md from ``out_dir``'s JSON results (after a change to the report's layout)."""
    from bench.readme import load
    from bench.report import render

    results = load(out_dir)
    total = sum(r.get("seconds", 0) for r in results.values())
    plot = out_dir / "deliver_throughput.png"
    report = render(results, total, "quick" in out_dir.name, plot if plot.exists() else None)
    (out_dir / "REPORT.md").write_text(report, encoding="utf-8")
    if "quick" not in out_dir.name:
        _write_readme()
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
