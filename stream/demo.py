"""``capi-stream demo``: the whole pipeline on one machine, in about a minute.

Starts an embedded broker (or uses ``--bootstrap``, ``CAPI_STREAM_BOOTSTRAP_SERVERS`` or
``KAFKA_BOOTSTRAP``), the CAPI simulator with a little
latency, some transient errors and one poison event, creates the topics, publishes a realistic
sample, runs the normalize and deliver stages, shows live progress (the project's progress line:
events settled end to end, accepted by Meta or dead-lettered) and prints a summary, with the
faults the simulator injected counted there rather than logged one by one. Everything it
started is stopped before it returns.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TextIO

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.sensors import MemorySensor
from stream.deliver.stage import Deliverer
from stream.embedded import EmbeddedBroker
from stream.kafka.admin import create_topics
from stream.kafka.producer import StageProducer
from stream.normalizer import Normalizer
from stream.progress import Progress
from stream.sample import sample
from stream.sim import FaultConfig, Latency, PoisonRule, SimConfig, Simulator

DEMO_TOKEN = "demo-access-token"  # noqa: S105 - the simulator's own, never a real token
#: Meta rejects this one event in the demo, so the summary shows bad-event isolation.
POISONED_EVENT_ID = "demo-1001"
CORRUPT_RECORDS = 3


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo saw, for the summary and for tests."""

    published: int
    enriched: int
    dead_by_reason: dict[str, int]
    delivered: int
    accepted_by_simulator: int
    duplicates_at_simulator: int
    batches: int
    requests: int
    retries: int
    #: the faults the simulator injected, by kind (``http_503``, ``code_2``, ...)
    faults: dict[str, int]
    p50_s: float | None
    p99_s: float | None
    seconds: float
    #: per pixel: the customer keys the enriched events carry and the local match-key score
    match_keys: tuple[str, ...] = ()


def run_demo(
    events: int = 3000, seed: int = 42, out: TextIO = sys.stdout, bootstrap: str | None = None
) -> DemoResult:
    """Run the demo end to end and return what happened: on ``bootstrap``, else
    ``KAFKA_BOOTSTRAP``, else on an embedded broker it starts."""
    began = time.monotonic()
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP")
    broker = None if bootstrap else EmbeddedBroker()
    faults = FaultConfig(
        seed=seed, latency=Latency(kind="uniform", min_ms=20, max_ms=80),
        # transient failures only: an injected throttle reports the app's usage at 100%, and
        # the deliverer then rightly waits a minute, which a demo should not
        rates={"http_503": 0.1, "code_2": 0.05}, retry_after_seconds=1,
        poison=(PoisonRule(field="event_id", op="equals", value=POISONED_EVENT_ID),),
    )  # fmt: skip
    sim = Simulator(SimConfig(tokens={DEMO_TOKEN: frozenset({"*"})}, faults=faults))
    try:
        if broker is not None:
            print("starting the embedded broker (tansu) ...", file=out)
            bootstrap = broker.start().bootstrap
        sim.start()
        print(f"broker {bootstrap} | CAPI simulator {sim.url}", file=out)
        settings = _settings(str(bootstrap), sim.url)
        create_topics(settings)
        published = _publish(settings, events, seed)
        print(f"published {published} raw events to {settings.topics.raw}", file=out)
        return _run_stages(settings, sim, published, began, out)
    finally:
        sim.stop()
        if broker is not None:
            broker.stop()


def _settings(bootstrap: str, sim_url: str) -> Settings:
    run = uuid.uuid4().hex[:6]  # fresh topics and groups: a rerun on a real cluster starts clean
    return Settings(
        bootstrap_servers=bootstrap,
        topics={"raw": f"demo.{run}.raw", "enriched": f"demo.{run}.enriched",
                "dlq": f"demo.{run}.dlq", "partitions": 3},
        normalizer={"group_id": f"demo-{run}-normalizer", "transactional_id": f"demo-{run}"},
        deliverer={"group_id": f"demo-{run}-deliverer", "graph_url": sim_url, "linger_ms": 500,
                   "commit_interval_s": 1.0, "retry_base_s": 0.2, "retry_max_s": 2.0},
        # the embedded broker completes a group join after about half the session timeout
        consumer={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
        access_token=DEMO_TOKEN,
        observability={"log_level": "warning"},
    )  # fmt: skip


def _publish(settings: Settings, events: int, seed: int) -> int:
    codec = AvroCodec(schemas.load("conversion_event"))
    producer = StageProducer(settings.producer_config(), transactional=False)
    for event in sample(events, int(time.time()), seed=seed):
        key = (event["event_id"] or "").encode() or None
        producer.produce(settings.topics.raw, key, codec.encode(event))
    for i in range(CORRUPT_RECORDS):  # a producer with a broken serializer
        producer.produce(settings.topics.raw, f"corrupt-{i}".encode(), b"\x00\xde\xad\xbe\xef")
    producer.flush()
    return events + CORRUPT_RECORDS


def _run_stages(
    settings: Settings, sim: Simulator, published: int, began: float, out: TextIO
) -> DemoResult:
    n_sensor, d_sensor = MemorySensor(), MemorySensor()
    normalizer = Normalizer(settings, sensor=n_sensor)
    deliverer = Deliverer(settings, sensor=d_sensor)
    threads = [
        threading.Thread(target=normalizer.run, name="normalize", daemon=True),
        threading.Thread(target=deliverer.run, name="deliver", daemon=True),
    ]
    print("waiting for the consumer groups to join (the normalize and deliver stages) ...",
          file=out, flush=True)  # fmt: skip
    started = time.monotonic()
    for thread in threads:
        thread.start()
    deadline = started + 300
    joined: set[str] = set()
    try:
        with Progress("demo", published, unit="events", stream=out, log_interval_s=2.0) as bar:
            while time.monotonic() < deadline:
                time.sleep(0.2)
                n, d = normalizer.stats, deliverer.stats
                for stage, consumed in (("normalize", n.consumed), ("deliver", d.consumed)):
                    if consumed and stage not in joined:
                        joined.add(stage)
                        bar.echo(f"{stage} stage joined its group and is reading "
                                 f"({time.monotonic() - started:.1f} s)")  # fmt: skip
                # every record ends once: dead-lettered by either stage, or accepted by Meta
                bar.update(n.dead_lettered + d.delivered + d.dead_lettered)
                settled = d.delivered + d.dead_lettered
                if n.consumed >= published and settled >= n.enriched and d.consumed >= n.enriched:
                    break
    finally:
        normalizer.stop()
        deliverer.stop()
        for thread in threads:
            thread.join(60)
    return _result(
        normalizer,
        deliverer,
        sim,
        n_sensor=n_sensor,
        d_sensor=d_sensor,
        published=published,
        began=began,
        match_keys=_match_keys(settings),
    )


def _match_keys(settings: Settings) -> tuple[str, ...]:
    """What ``capi-stream quality report`` would count locally, from the enriched topic."""
    from stream.quality.local import read_local
    from stream.quality.report import pixel_lines

    return tuple(pixel_lines(read_local(settings, now_s=time.time()).coverage))


def _result(
    normalizer: Normalizer, deliverer: Deliverer, sim: Simulator, *, n_sensor: MemorySensor,
    d_sensor: MemorySensor, published: int, began: float, match_keys: tuple[str, ...] = (),
) -> DemoResult:  # fmt: skip
    dead: Counter[str] = Counter()
    for sensor in (n_sensor, d_sensor):
        for (name, labels), value in sensor.counters.items():
            if name == "dead_lettered":
                dead[dict(labels).get("reason", "?")] += int(value)
    latencies = sorted(deliverer.stats.latencies_s)
    stats = sim.stats()
    return DemoResult(
        published=published, enriched=normalizer.stats.enriched, dead_by_reason=dict(dead),
        delivered=deliverer.stats.delivered, accepted_by_simulator=stats.accepted,
        duplicates_at_simulator=stats.duplicates, batches=deliverer.stats.batches,
        requests=deliverer.stats.requests, retries=deliverer.stats.retries,
        faults=dict(stats.faults),
        p50_s=statistics.median(latencies) if latencies else None,
        p99_s=latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
        seconds=time.monotonic() - began, match_keys=match_keys,
    )  # fmt: skip


def summary(result: DemoResult) -> str:
    """The text the demo prints at the end."""
    lines = [
        "",
        "capi-stream demo: summary",
        f"  published           {result.published} raw records",
        f"  enriched            {result.enriched} (normalized, SHA-256 hashed, validated)",
        f"  dead-lettered       {sum(result.dead_by_reason.values())}",
    ]
    for reason, count in sorted(result.dead_by_reason.items()):
        lines.append(f"    {reason:<28}{count}")
    p50 = f"{result.p50_s * 1000:.0f} ms" if result.p50_s is not None else "n/a"
    p99 = f"{result.p99_s * 1000:.0f} ms" if result.p99_s is not None else "n/a"
    lines += [
        f"  delivered           {result.delivered} (simulator accepted "
        f"{result.accepted_by_simulator}, duplicates {result.duplicates_at_simulator})",
        f"  batches / requests  {result.batches} / {result.requests} ({result.retries} retried)",
        "  match keys          per pixel (local score: an estimate, not Meta's EMQ)",
        *(f"    {line}" for line in result.match_keys),
        f"  injected faults     {_faults(result.faults)}",
        f"  latency             p50 {p50}, p99 {p99} (enriched record to Meta's answer)",
        f"  took                {result.seconds:.1f} s",
        "",
        "next: README.md (configuration, operations), `capi-stream --help`,",
        "      `capi-stream sim` to try your own producer against the simulator.",
    ]
    return "\n".join(lines)


def _faults(faults: dict[str, int]) -> str:
    """``12 (http_503 9, code_2 3): answered with errors, each retried``."""
    total = sum(faults.values())
    if not total:
        return "none"
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items(), key=lambda i: -i[1]))
    return f"{total} ({kinds}): transient answers the deliverer retried"
