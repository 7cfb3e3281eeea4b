"""Peak memory of the stages through outages, each stage facing a backlog, as its own process.

* **Broker outage**: the run's Kafka broker is SIGKILLed for ``outage_s`` and started again on
  the same data and ports (:meth:`tests.brokers.provision.KafkaBroker.kill` / ``restart``),
  while ``capi-stream deliver`` works through a backlog of ``backlog`` enriched events and
  ``capi-stream normalize`` through ``backlog`` raw records. A stage that exits meanwhile (its
  watchdog ends a librdkafka call stuck past its deadline, or the broker fenced a static member
  whose session expired) is started again, as ``--workers`` or a container supervisor would.
  Afterwards every event must be accepted (deliver) and every record committed (normalize).
* **API outage** (optional): ``capi-stream deliver`` faces the backlog while the simulator
  answers 503 to everything for ``api_outage_s``; retries back off at most 5 s (default 60 s)
  so the run ends soon after.

Peak RSS is the largest VmHWM of each stage's processes (``/proc/PID/status``, sampled every
0.1 s). Goal: at most 300 MB. Needs the broker this run started (``KAFKA_BOOTSTRAP`` skips the
broker outage).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import (
    ROOT,
    RssSampler,
    SimProcess,
    bench_settings,
    create_topics,
    log,
    pixel_ids,
    produce,
    stage_names,
)

RSS_GOAL_MB = 300.0
PARTITIONS = 6


class Supervised:
    """One stage's process, started again whenever it exits, its memory sampled throughout."""

    def __init__(self, stage: str, settings: Any) -> None:
        from bench.workers_bench import _env

        self.stage = stage
        self.env = _env(settings)
        self.log_path = Path(tempfile.mkstemp(prefix=f"capi-bench-{stage}-", suffix=".log")[1])
        self.exits: list[int] = []
        self.peaks: list[float] = []
        self._start()

    def _start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", self.stage],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.sampler = RssSampler(self.proc.pid, 0.1).start()

    def check(self) -> None:
        """Start it again if it exited."""
        code = self.proc.poll()
        if code is not None:
            self._close_sampler()
            self.exits.append(code)
            self._start()

    def _close_sampler(self) -> None:
        self.sampler.stop()
        peak = max(
            (x for x in (self.sampler.hwm_mb, self.sampler.peak_sampled_mb) if x is not None),
            default=0.0,
        )
        self.peaks.append(peak)

    def stop(self) -> dict[str, Any]:
        self.sampler.sample()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._close_sampler()
        text = self.log_path.read_text(errors="replace")
        return {
            "peak_rss_mb": round(max(self.peaks), 1),
            "peak_rss_mb_per_process": [round(p, 1) for p in self.peaks],
            "restarts": len(self.exits),
            "exit_codes": self.exits,
            "last_exit_code": self.proc.returncode,
            "summary": _summary(text),
            "log": str(self.log_path),
        }


def _summary(log_text: str) -> dict[str, int]:
    """The counts the stage logged last (its closing or stopped line)."""
    found: dict[str, int] = {}
    for name in ("consumed", "delivered", "dead_lettered", "dead", "transactions", "aborted"):
        match = re.findall(rf'"{name}":\s*(\d+)', log_text) or re.findall(
            rf"\b{name}[ =](\d+)", log_text
        )
        if match:
            found[name] = int(match[-1])
    return found


def _committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 30)
        return sum(max(p.offset, 0) for p in parts)
    except Exception:  # noqa: BLE001 - the broker may be down: nothing committed we can see
        return 0
    finally:
        consumer.close()


def _goal(peak: float) -> dict[str, Any]:
    return {
        "goal": f"peak RSS <= {RSS_GOAL_MB:g} MB",
        "measured_mb": peak,
        "met": peak <= RSS_GOAL_MB,
        "margin_mb": round(RSS_GOAL_MB - peak, 1),
    }


def broker_outage(
    bootstrap: str, enriched: list[tuple[bytes | None, bytes]], raw: list[bytes], outage_s: float
) -> dict[str, Any]:
    """Both stages through a SIGKILLed broker, each with its backlog."""
    broker = common.BROKER
    names = stage_names()
    create_topics(bootstrap, [names["raw"], names["enriched"]], PARTITIONS)
    create_topics(bootstrap, [names["dlq"]], 1)
    deliver_topic = common.unique("enriched-backlog")
    create_topics(bootstrap, [deliver_topic], PARTITIONS)
    began = time.perf_counter()
    produce(bootstrap, names["raw"], ((None, v) for v in raw))
    produce(bootstrap, deliver_topic, enriched)
    log(f"broker outage: backlogs of {len(raw):,} raw and {len(enriched):,} enriched records "
        f"in {time.perf_counter() - began:.0f}s")  # fmt: skip
    sim = SimProcess(latency_ms=50.0).start()
    normalize_settings = bench_settings(bootstrap, names)
    deliver_names = stage_names(enriched=deliver_topic, dlq=names["dlq"])
    deliver_settings = bench_settings(
        bootstrap, deliver_names, deliverer={"graph_url": sim.url, "retry_max_s": 5.0}
    )
    stages = {
        "normalize": Supervised("normalize", normalize_settings),
        "deliver": Supervised("deliver", deliver_settings),
    }
    marks: dict[str, float] = {}
    result: dict[str, Any] = {"outage_seconds": outage_s, "backlog_events": len(enriched)}
    try:
        # the outage starts once both stages are well into their backlogs
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            for s in stages.values():
                s.check()
            if sim.stats()["accepted"] >= len(enriched) // 5:
                break
            time.sleep(0.25)
        result["accepted_when_killed"] = sim.stats()["accepted"]
        broker.kill()
        marks["killed"] = time.perf_counter()
        log(f"broker outage: broker killed ({result['accepted_when_killed']:,} accepted)")
        while time.perf_counter() - marks["killed"] < outage_s:
            for s in stages.values():
                s.check()
            time.sleep(0.25)
        broker.restart()
        common.wait_for_metadata(bootstrap)
        marks["back"] = time.perf_counter()
        log(f"broker outage: broker back after {marks['back'] - marks['killed']:.0f}s")
        deadline = marks["back"] + 240
        done = {"normalize": False, "deliver": False}
        while time.perf_counter() < deadline and not all(done.values()):
            for s in stages.values():
                s.check()
            if not done["deliver"] and sim.stats()["accepted"] >= len(enriched):
                done["deliver"] = True
                marks["deliver_done"] = time.perf_counter()
            if not done["normalize"] and _committed(
                bootstrap, names["normalizer_group"], names["raw"]
            ) >= len(raw):
                done["normalize"] = True
                marks["normalize_done"] = time.perf_counter()
            time.sleep(0.5)
        time.sleep(3)  # a commit interval or so: the deliverer's last offsets
    finally:
        reports = {name: s.stop() for name, s in stages.items()}
        sim_stats = sim.stats()
        sim.stop()
    delivered_committed = _committed(bootstrap, deliver_names["deliverer_group"], deliver_topic)
    for name, report in reports.items():
        finished = marks.get(f"{name}_done")
        report["seconds_broker_back_to_done"] = (
            round(finished - marks["back"], 1) if finished and "back" in marks else None
        )
        report["goal"] = _goal(report["peak_rss_mb"])
        result[name] = report
    result["deliver"]["sim_accepted"] = sim_stats["accepted"]
    result["deliver"]["sim_duplicates"] = sim_stats["duplicates"]
    result["deliver"]["committed_events"] = delivered_committed
    result["deliver"]["all_delivered_and_committed"] = sim_stats["accepted"] >= len(
        enriched
    ) and delivered_committed >= len(enriched)
    result["normalize"]["all_committed"] = "normalize_done" in marks
    result["goal"] = _goal(
        max(result["deliver"]["peak_rss_mb"], result["normalize"]["peak_rss_mb"])
    )
    result["goal"]["met"] = (
        result["goal"]["met"]
        and result["deliver"]["all_delivered_and_committed"]
        and result["normalize"]["all_committed"]
    )
    return result


def api_outage(
    bootstrap: str, enriched: list[tuple[bytes | None, bytes]], outage_s: float
) -> dict[str, Any]:
    """``capi-stream deliver`` facing the backlog while the simulator answers 503."""
    topic = common.unique("enriched-backlog")
    create_topics(bootstrap, [topic], PARTITIONS)
    produce(bootstrap, topic, enriched)
    sim = SimProcess(latency_ms=50.0).start()
    names = stage_names(enriched=topic)
    create_topics(bootstrap, [names["dlq"]], 1)
    settings = bench_settings(
        bootstrap, names, deliverer={"graph_url": sim.url, "retry_max_s": 5.0}
    )
    sim.set_faults(outage_seconds=outage_s, latency={"kind": "fixed", "ms": 50.0})
    began = time.perf_counter()
    stage = Supervised("deliver", settings)
    done_at = None
    try:
        deadline = began + outage_s + 240
        while time.perf_counter() < deadline:
            stage.check()
            if sim.stats()["accepted"] >= len(enriched):
                done_at = time.perf_counter()
                break
            time.sleep(0.5)
        time.sleep(3)
    finally:
        report = stage.stop()
        sim_stats = sim.stats()
        sim.stop()
    committed = _committed(bootstrap, names["deliverer_group"], topic)
    report.update({
        "outage_seconds": outage_s, "backlog_events": len(enriched),
        "seconds_outage_end_to_all_accepted": round(done_at - began - outage_s, 1)
        if done_at else None,
        "sim_accepted": sim_stats["accepted"], "sim_duplicates": sim_stats["duplicates"],
        "committed_events": committed,
        "all_delivered_and_committed": sim_stats["accepted"] >= len(enriched)
        and committed >= len(enriched),
    })  # fmt: skip
    report["goal"] = _goal(report["peak_rss_mb"])
    report["goal"]["met"] = report["goal"]["met"] and report["all_delivered_and_committed"]
    return report


def run(bootstrap: str, *, backlog: int, outage_s: float, api_outage_s: float) -> dict[str, Any]:
    from bench import deliver_bench, normalize_bench

    enriched = deliver_bench.enriched_pairs(backlog, pixel_ids(8))
    data: dict[str, Any] = {"backlog": backlog}
    if api_outage_s:
        data["api_outage"] = api_outage(bootstrap, enriched, api_outage_s)
        log(f"api outage: deliver peak RSS {data['api_outage']['peak_rss_mb']} MB")
    if common.BROKER is None:
        data["broker_outage"] = {"skipped": "KAFKA_BOOTSTRAP: the broker is not this run's"}
        return data
    # the raw backlog: the normalize benchmark's events, repeated up to ``backlog`` records
    records = normalize_bench.make_inputs(min(backlog, 50_000)).records
    raw = [records[i % len(records)].value for i in range(backlog)]
    data["broker_outage"] = broker_outage(bootstrap, enriched, raw, outage_s)
    b = data["broker_outage"]
    log(f"broker outage: peak RSS deliver {b['deliver']['peak_rss_mb']} MB, normalize "
        f"{b['normalize']['peak_rss_mb']} MB; restarts {b['deliver']['restarts']}, "
        f"{b['normalize']['restarts']}")  # fmt: skip
    return data
