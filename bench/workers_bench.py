"""``--workers 2`` against one worker, both stages, through the command line, on this machine.

Each stage runs as ``capi-stream normalize|deliver --workers N`` (settings as ``CAPI_STREAM_*``
variables, the way an operator starts it) over the same backlog: N = 1, then N = 2, with a fresh
group (and fresh outputs) each time. Progress is watched from outside: the normalize stage's
committed offsets on the raw topic, the simulator's accepted count for the deliver stage. The
rate counts from the last look that saw no progress to the last event done (start-up and the
group join are left out); CPU is every process of the run (the supervisor and its workers, start-up
included), from ``RUSAGE_CHILDREN``. The ratio is rate(2) / rate(1): with two cores and a broker
and a simulator beside them, the second worker gains only what the first left idle.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    TOKEN,
    SimProcess,
    bench_settings,
    create_topics,
    log,
    pixel_ids,
    produce,
    stage_names,
)

PARTITIONS = 6


def _env(settings: Any) -> dict[str, str]:
    from tests.integration.helpers import stage_env

    env = stage_env(settings)
    env["CAPI_STREAM_ACCESS_TOKEN"] = TOKEN
    env["PYTHONPATH"] = str(ROOT)
    env["CAPI_STREAM_OBSERVABILITY__LOG_LEVEL"] = "warning"
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(
    stage: str, workers: int, settings: Any, total: int, progress: Callable[[], int]
) -> dict[str, Any]:
    """``capi-stream STAGE --workers N`` until ``progress()`` reaches ``total``; its figures."""
    log_path = Path(tempfile.mkstemp(prefix=f"capi-bench-{stage}-w{workers}-", suffix=".log")[1])
    cpu0 = _children_cpu()
    started = time.perf_counter()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", stage, "--workers", str(workers)],
            cwd=ROOT, env=_env(settings), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    idle_until = started  # the last time no progress was seen: the work began after it
    first = done_at = None
    try:
        deadline = started + 300
        while time.perf_counter() < deadline and proc.poll() is None:
            count = progress()
            now = time.perf_counter()
            if count == 0:
                idle_until = now
            elif first is None:
                first = now
            if count >= total:
                done_at = now
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if done_at is None or first is None:
        raise RuntimeError(f"{stage} --workers {workers} did not finish; see {log_path}")
    cpu_s = _children_cpu() - cpu0
    return {
        "workers": workers,
        "events": total,
        # from the last look that saw no progress: a slight underestimate, never a division by 0
        "events_per_s": round(total / (done_at - idle_until)),
        "seconds_start_to_first_progress": round(first - started, 2),
        "seconds_work": round(done_at - idle_until, 2),
        "cpu_s_all_processes": round(cpu_s, 2),
        "cpu_s_per_1000_events_with_start_up": round(cpu_s / total * 1000, 4),
        "exit_code": proc.returncode,
        "log": str(log_path),
    }


def _committed(bootstrap: str, group: str, topic: str) -> Callable[[], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def count() -> int:
        try:
            return sum(max(p.offset, 0) for p in consumer.committed(parts, 10))
        except Exception:  # noqa: BLE001 - the group may not exist yet: no progress
            return 0

    return count


def run(bootstrap: str, *, events: int, deliver_events: int) -> dict[str, Any]:
    from bench import deliver_bench, normalize_bench

    data: dict[str, Any] = {"events": events, "deliver_events": deliver_events}
    inputs = normalize_bench.make_inputs(events)
    names = stage_names()
    create_topics(bootstrap, [names["raw"]], PARTITIONS)
    produce(bootstrap, names["raw"], ((None, r.value) for r in inputs.records))
    # the raw topic's end offsets (idempotent producer: no markers) = the records
    runs: dict[str, dict[int, Any]] = {"normalize": {}, "deliver": {}}
    for workers in (1, 2):
        mine = stage_names(raw=names["raw"])
        create_topics(bootstrap, [mine["enriched"], mine["dlq"]], PARTITIONS)
        settings = bench_settings(bootstrap, mine)
        progress = _committed(bootstrap, mine["normalizer_group"], names["raw"])
        runs["normalize"][workers] = run_cli("normalize", workers, settings, events, progress)
        log(f"workers: normalize x{workers}: {runs['normalize'][workers]['events_per_s']:,}/s")
    topic = deliver_bench.produce_topic(
        bootstrap, deliver_bench.enriched_pairs(deliver_events, pixel_ids(8))
    )
    sim = SimProcess(latency_ms=50.0).start()
    try:
        for workers in (1, 2):
            sim.reset()
            settings = deliver_bench.deliver_settings(bootstrap, topic, sim.url)
            runs["deliver"][workers] = run_cli(
                "deliver", workers, settings, deliver_events, lambda: sim.stats()["accepted"]
            )
            log(f"workers: deliver x{workers}: {runs['deliver'][workers]['events_per_s']:,}/s")
    finally:
        sim.stop()
    for stage, by_workers in runs.items():
        one, two = by_workers[1], by_workers[2]
        data[stage] = {
            "one_worker": one,
            "two_workers": two,
            "ratio_two_vs_one": round(two["events_per_s"] / one["events_per_s"], 3),
        }
    return data
