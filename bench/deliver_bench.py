"""Deliver stage end to end (enriched topic → accepted by the simulator), beside the SDK baseline.

The simulator (``capi-stream sim``) runs in its own process, so it never shares a GIL with what
is measured; its latency is switched between runs through ``POST /_sim/faults``. Kafka is a real
broker on loopback. The enriched inputs are what the normalize stage writes: seeded raw events
(see :func:`bench.common.raw_events`) passed through ``Enricher.process``.

Three measurements:

1. **Throughput at a simulated API latency** (50 and 500 ms; 200 ms too in a full run). For
   capi-stream: ``Deliverer(settings).run()`` in this process with the default deliverer settings
   (linger 1 s, 1,000 events a request, 32 requests in flight, 4 per lane), on 8 pixels (real
   multi-pixel traffic) and on a single pixel. The rate counts from the first record consumed to
   the last event accepted. The baseline: a plain confluent-kafka consumer loop over the same
   8-pixel topic that builds the SDK's ``Event`` objects, posts each 1,000 events of a pixel with
   ``EventRequest(...).execute()`` synchronously, and commits after each post (only offsets whose
   events are all posted). It runs on a prefix of the topic (a whole number of 1,000-event
   requests per pixel): its rate is one request at a time, so more events add only time.
   The SDK posts through its own synchronous path (``FacebookAdsApi`` → ``AdsPixel.create_event``
   → its ``requests.Session``); only the session's Graph base URL points at the simulator.
2. **p99 latency at 5,000 events/s**: a separate process produces enriched events at a steady
   5,000/s while the deliverer runs (50 ms simulated latency); an event's latency is the
   deliverer's ``stats.latencies_s``: Meta's (the simulator's) answer minus the enriched
   record's produce timestamp. Goal: p99 at most linger + 250 ms.
3. **Peak RSS through an outage**: ``capi-stream deliver`` as its own process (settings as
   ``CAPI_STREAM_*`` variables) facing a 200,000-event backlog while the simulator answers 503
   to everything for 60 s; VmHWM from ``/proc/PID/status``; then every event must be accepted
   and committed. Goal: at most 300 MB.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    ROOT,
    TOKEN,
    RssSampler,
    SimProcess,
    create_topics,
    log,
    percentile,
    pixel_ids,
    proc_status_mb,
    produce,
    sdk_event,
    unique,
)

SEED = 20_260_202
PARTITIONS = 6
THROUGHPUT_GOAL = 10.0
RSS_GOAL_MB = 300.0
LATENCY_SLACK_MS = 250.0
BATCH = 1000

Pairs = list[tuple[bytes | None, bytes]]


# -- inputs -----------------------------------------------------------------------------------


def _enriched_chunk(job: tuple[int, int, int, int, list[str]]) -> Pairs:
    """Events ``start``..``stop`` through ``Enricher.process`` (a worker process's share)."""
    import random

    from bench.common import raw_event
    from stream import schemas
    from stream.core.codec import AvroCodec
    from stream.core.enrich import Enricher
    from stream.core.normalize import NormalizeOptions
    from stream.core.records import Record

    start, stop, seed, now, pixels = job
    rnd = random.Random(f"{seed}:{start}")
    raw = AvroCodec(schemas.load("conversion_event"))
    enricher = Enricher(
        raw,
        AvroCodec(schemas.load("capi_event")),
        AvroCodec(schemas.load("dead_letter")),
        NormalizeOptions(),
    )
    pairs: Pairs = []
    for i in range(start, stop):
        event = raw_event(rnd, i, now, pixels)
        out = enricher.process(Record("raw", 0, i, None, raw.encode(event)), float(now))
        if out.destination == "enriched":
            pairs.append((out.key, out.value))
    return pairs


def enriched_pairs(n: int, pixels: Sequence[str], seed: int = SEED) -> Pairs:
    """``n`` enriched (key, value) pairs as the normalize stage writes them (seeded per chunk of
    25,000, built on every CPU: this is input preparation, not a measurement)."""
    now = int(time.time())
    chunk = 25_000
    jobs = [(a, min(a + chunk, n), seed, now, list(pixels)) for a in range(0, n, chunk)]
    workers = min(len(jobs), len(os.sched_getaffinity(0)))
    if workers <= 1:
        return [pair for job in jobs for pair in _enriched_chunk(job)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_enriched_chunk, jobs)
    return [pair for part in parts for pair in part]


def _produce(bootstrap: str, pairs: Pairs) -> str:
    topic = unique("enriched")
    create_topics(bootstrap, [topic], PARTITIONS)
    produce(bootstrap, topic, pairs)
    return topic


def _settings(bootstrap: str, topic: str, sim_url: str, **deliverer: Any) -> Any:
    from tests.integration.helpers import stage_settings

    names = {
        "raw": unique("raw-unused"),
        "enriched": topic,
        "dlq": unique("dlq"),
        "normalizer_group": unique("norm-unused"),
        "deliverer_group": unique("deliv"),
    }
    # the stage reads the dead-letter topic's record size limit at start: it must exist
    create_topics(bootstrap, [names["dlq"]], 1)
    return stage_settings(
        bootstrap, names, access_token=TOKEN, deliverer={"graph_url": sim_url, **deliverer}
    )


# -- capi-stream, in this process ------------------------------------------------------------


class _DoneSensor:
    """Notes when the ``expected``-th event is settled and stops the stage (no polling thread)."""

    def __init__(self, expected: int, marks: dict[str, float]) -> None:
        self.expected = expected
        self.marks = marks
        self.settled = 0
        self.stage: Any = None

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:  # noqa: ARG002
        if name in ("events_posted", "dead_lettered"):
            self.settled += int(value)
            if self.settled >= self.expected and "done" not in self.marks:
                self.marks["done"] = time.perf_counter()
                self.stage.stop()

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""


def run_capi(bootstrap: str, topic: str, sim: SimProcess, expected: int) -> dict[str, Any]:
    """One deliverer over ``topic`` until every event is accepted; the stage then drains."""
    from stream.deliverer import Deliverer

    sim.reset()
    settings = _settings(bootstrap, topic, sim.url)
    marks: dict[str, float] = {}
    sensor = _DoneSensor(expected, marks)
    stage = Deliverer(settings, sensor=sensor)
    sensor.stage = stage
    stop = threading.Event()

    def first_record() -> None:
        # only until the first record: the end is noted by the sensor, not by polling
        while not stop.is_set() and not stage.stats.consumed:
            time.sleep(0.01)
        marks.setdefault("first", time.perf_counter())

    watcher = threading.Thread(target=first_record, daemon=True)
    timer = threading.Timer(300, stage.stop)  # never hang the whole run
    start = time.perf_counter()
    cpu_start = time.process_time()  # this process: the stage's loop, poll thread, librdkafka
    watcher.start()
    timer.start()
    try:
        stats = stage.run()
    finally:
        stop.set()
        timer.cancel()
    ended = time.perf_counter()
    cpu_s = time.process_time() - cpu_start
    sim_stats = sim.stats()
    if "done" not in marks:
        raise RuntimeError(f"capi-stream delivered {stats.delivered} of {expected}")
    window = marks["done"] - marks["first"]
    lat = stats.latencies_s
    return {
        "events": expected,
        "delivered": stats.delivered,
        "dead_lettered": stats.dead_lettered,
        "requests": stats.requests,
        "retries": stats.retries,
        "events_per_s": round(expected / window),
        # start-up, delivery, drain and commit; the simulator runs in its own process
        "cpu_s_per_1000_events": round(cpu_s / expected * 1000, 4),
        "events_per_s_from_start": round(expected / (marks["done"] - start)),
        "seconds_first_record_to_last_accept": round(window, 3),
        "seconds_start_to_first_record": round(marks["first"] - start, 3),
        "seconds_drain_and_commit": round(ended - marks["done"], 3),
        "sim_accepted": sim_stats["accepted"],
        "sim_duplicates": sim_stats["duplicates"],
        "sim_requests": sim_stats["requests"],
        "latency_p50_ms": round(percentile(lat, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(lat, 99) * 1000, 1),
    }


# -- the SDK baseline -------------------------------------------------------------------------


def run_baseline(bootstrap: str, topic: str, sim: SimProcess, limit: int) -> dict[str, Any]:
    """A plain consumer loop: SDK ``EventRequest`` per 1,000 events of a pixel, commit after."""
    import io

    import fastavro
    from confluent_kafka import Consumer, TopicPartition
    from facebook_business.adobjects.serverside.event_request import EventRequest
    from facebook_business.api import FacebookAdsApi

    from stream import schemas

    sim.reset()
    api = FacebookAdsApi.init(access_token=TOKEN, api_version="v25.0")
    # the SDK's own synchronous path; only its session's Graph base URL is the simulator's
    api._session.GRAPH = sim.url
    schema = fastavro.parse_schema(schemas.load("capi_event"))
    custom_fields = _custom_data_fields()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("sdk-baseline"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    buffers: dict[str, list[tuple[tuple[str, int], int, Any]]] = {}
    next_offset: dict[tuple[str, int], int] = {}
    consumed = posted = requests = 0
    first: float | None = None
    post_seconds: list[float] = []

    def post(pixel: str) -> None:
        nonlocal posted, requests
        items = buffers.pop(pixel, [])
        if not items:
            return
        began = time.perf_counter()
        response = EventRequest(pixel_id=pixel, events=[e for _, _, e in items]).execute()
        post_seconds.append(time.perf_counter() - began)
        if response.events_received != len(items):
            raise RuntimeError(f"the SDK's request got events_received={response.events_received}")
        posted += len(items)
        requests += 1
        # commit per partition up to the first offset still waiting in some pixel's buffer
        held: dict[tuple[str, int], int] = {}
        for waiting in buffers.values():
            for tp, offset, _ in waiting:
                held[tp] = min(held.get(tp, offset), offset)
        commit = [
            TopicPartition(t, p, held.get((t, p), nxt)) for (t, p), nxt in next_offset.items()
        ]
        consumer.commit(offsets=commit, asynchronous=False)

    start = time.perf_counter()
    try:
        while consumed < limit:
            msg = consumer.poll(1.0)
            if msg is None:
                if time.perf_counter() - start > 300:
                    raise RuntimeError("the baseline consumer got no records")
                continue
            if msg.error() is not None:
                continue
            if first is None:
                first = time.perf_counter()
            record = fastavro.schemaless_reader(io.BytesIO(msg.value()), schema, None)
            tp = (msg.topic(), msg.partition())
            next_offset[tp] = msg.offset() + 1
            # the SDK user's input: the event as data (its custom properties in their own map)
            event = orjson.loads(record["event_json"])
            if (custom := event.get("custom_data")) is not None:
                props = {k: v for k, v in custom.items() if k not in custom_fields}
                event["custom_data"] = {k: v for k, v in custom.items() if k in custom_fields}
                event["custom_data"]["custom_properties"] = props
            buffers.setdefault(record["pixel_id"], []).append((tp, msg.offset(), sdk_event(event)))
            consumed += 1
            if len(buffers[record["pixel_id"]]) >= BATCH:
                post(record["pixel_id"])
        for pixel in list(buffers):
            post(pixel)
        done = time.perf_counter()
    finally:
        consumer.close()
    sim_stats = sim.stats()
    assert first is not None
    return {
        "events": posted,
        "requests": requests,
        "events_per_s": round(posted / (done - first)),
        "events_per_s_from_start": round(posted / (done - start)),
        "seconds_first_record_to_last_accept": round(done - first, 3),
        "median_post_ms": round(sorted(post_seconds)[len(post_seconds) // 2] * 1000, 1),
        "sim_accepted": sim_stats["accepted"],
    }


# -- p99 latency at a steady rate -------------------------------------------------------------


def _paced_producer(bootstrap: str, topic: str, path: str, rate: float, conn: Any) -> None:
    """Child process: produce the pairs in ``path`` at ``rate`` per second, then report."""
    from confluent_kafka import Producer

    with open(path, "rb") as f:
        pairs: Pairs = pickle.load(f)  # noqa: S301 - our own temporary file
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "acks": "all"}
    )
    began = time.monotonic()
    sent = 0
    worst_behind = 0
    total = len(pairs)
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        worst_behind = max(worst_behind, due - sent)
        while sent < due:
            key, value = pairs[sent]
            producer.produce(topic, key=key, value=value)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    elapsed = time.monotonic() - began
    producer.flush(60)
    conn.send(
        {
            "produced": sent,
            "seconds": round(elapsed, 3),
            "achieved_rate": round(sent / elapsed, 1),
            "worst_backlog_events": worst_behind,
        }
    )
    conn.close()


def run_latency(
    bootstrap: str, sim: SimProcess, pairs: Pairs, *, rate: float, seconds: float, label: str
) -> dict[str, Any]:
    """The deliverer runs; another process produces at ``rate``/s for ``seconds``."""
    from stream.deliverer import Deliverer

    count = int(rate * seconds)
    if count > len(pairs):
        raise ValueError(f"need {count} events, have {len(pairs)}")
    topic = unique("enriched-steady")
    create_topics(bootstrap, [topic], PARTITIONS)
    sim.reset()
    settings = _settings(bootstrap, topic, sim.url)
    linger_ms = settings.deliverer.linger_ms
    stage = Deliverer(settings)
    runner = threading.Thread(target=stage.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while not stage.ready():
        if time.monotonic() > deadline:
            stage.stop()
            raise RuntimeError("the deliverer got no partitions")
        time.sleep(0.05)
    with tempfile.NamedTemporaryFile(prefix="capi-bench-", suffix=".pkl", delete=False) as f:
        pickle.dump(pairs[:count], f)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    producer = ctx.Process(target=_paced_producer, args=(bootstrap, topic, f.name, rate, child))
    producer.start()
    report = parent.recv()
    producer.join(30)
    Path(f.name).unlink(missing_ok=True)
    deadline = time.monotonic() + 120
    while stage.stats.delivered + stage.stats.dead_lettered < report["produced"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stage.stop()
    runner.join(60)
    lat_ms = [x * 1000 for x in stage.stats.latencies_s]
    goal = linger_ms + LATENCY_SLACK_MS
    p99 = percentile(lat_ms, 99)
    sim_stats = sim.stats()
    return {
        "pixels": label,
        "target_rate": rate,
        "producer": report,
        "delivered": stage.stats.delivered,
        "dead_lettered": stage.stats.dead_lettered,
        "requests": stage.stats.requests,
        "sim_accepted": sim_stats["accepted"],
        "sim_latency_ms": sim.latency_ms,
        "linger_ms": linger_ms,
        "latency_ms": {
            "p50": round(percentile(lat_ms, 50), 1),
            "p90": round(percentile(lat_ms, 90), 1),
            "p99": round(p99, 1),
            "max": round(max(lat_ms), 1) if lat_ms else None,
            "samples": len(lat_ms),
        },
        "goal": {
            "goal": f"p99 <= linger + {LATENCY_SLACK_MS:g} ms = {goal:g} ms",
            "measured_ms": round(p99, 1),
            "met": p99 <= goal,
            "margin_ms": round(goal - p99, 1),
        },
    }


# -- peak RSS through an outage ---------------------------------------------------------------


def _committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 30)
        return sum(max(p.offset, 0) for p in parts)
    finally:
        consumer.close()


def _child_settings(env: dict[str, str]) -> dict[str, Any]:
    """The deliverer settings a ``capi-stream`` process started with ``env`` gets (its own
    import of stream/, which may be newer than this process's)."""
    code = (
        "import json; from stream.config import Settings; d = Settings().deliverer; "
        "print(json.dumps({k: getattr(d, k) for k in ('max_pending', 'resume_pending', "
        "'retry_max_s', 'max_in_flight', 'max_in_flight_per_lane', 'linger_ms')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _summary(log_text: str) -> dict[str, int]:
    """The counts the deliverer printed on exit (either of the CLI's two summary shapes)."""
    import re

    found: dict[str, int] = {}
    for name in (
        "consumed",
        "delivered",
        "dead_lettered",
        "dead-lettered",
        "requests",
        "retries",
        "max_pending",
    ):
        match = re.findall(rf"\b{name}[ =](\d+)", log_text)
        if match:
            found[name.replace("-", "_")] = int(match[-1])
    return found


def run_outage(bootstrap: str, sim: SimProcess, pairs: Pairs, outage_s: float) -> dict[str, Any]:
    """``capi-stream deliver`` (own process) facing a backlog while the API is down."""
    from tests.integration.helpers import stage_env

    backlog = len(pairs)
    began = time.perf_counter()
    topic = _produce(bootstrap, pairs)
    log(f"outage: produced a {backlog:,}-event backlog in {time.perf_counter() - began:.1f}s")
    sim.reset()
    # retries back off at most 5 s (default 60) so the run ends soon after the outage
    settings = _settings(bootstrap, topic, sim.url, retry_max_s=5.0)
    env = stage_env(settings)
    env["CAPI_STREAM_ACCESS_TOKEN"] = TOKEN  # the dump masks secrets
    env["PYTHONPATH"] = str(ROOT)
    log_path = Path(tempfile.mkstemp(prefix="capi-bench-deliver-", suffix=".log")[1])
    effective = _child_settings(env)
    sim.set_faults(outage_seconds=outage_s, latency={"kind": "fixed", "ms": sim.latency_ms})
    outage_began = time.perf_counter()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "deliver"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sampler = RssSampler(proc.pid, 0.1).start()
    accepted = 0
    rss_at_outage_end = None
    all_accepted_at = None
    try:
        deadline = outage_began + outage_s + 240
        while time.perf_counter() < deadline and proc.poll() is None:
            if rss_at_outage_end is None and time.perf_counter() - outage_began >= outage_s:
                rss_at_outage_end = proc_status_mb(proc.pid, "VmRSS")
            accepted = sim.stats()["accepted"]
            if accepted >= backlog:
                all_accepted_at = time.perf_counter()
                break
            time.sleep(0.5)
        time.sleep(3)  # a commit interval or so, so that the last offsets are committed
        sampler.sample()
        hwm = proc_status_mb(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        sampler.stop()
    summary = _summary(log_path.read_text(errors="replace"))
    committed = _committed(bootstrap, settings.deliverer.group_id, topic)
    sim_stats = sim.stats()
    sim.set_latency(sim.latency_ms)  # clears the outage
    peak = max(x for x in (hwm, sampler.hwm_mb, sampler.peak_sampled_mb) if x is not None)
    timeline = [(round(t, 1), round(mb, 1)) for t, mb in sampler.samples[::10]]
    return {
        "backlog_events": backlog,
        "outage_seconds": outage_s,
        "sim_accepted": sim_stats["accepted"],
        "sim_duplicates": sim_stats["duplicates"],
        "sim_requests": sim_stats["requests"],
        "sim_faults": sim_stats["faults"],
        "committed_events": committed,
        "all_delivered_and_committed": sim_stats["accepted"] >= backlog and committed >= backlog,
        "seconds_outage_end_to_all_accepted": round(all_accepted_at - outage_began - outage_s, 1)
        if all_accepted_at
        else None,
        "peak_rss_mb_vmhwm": round(peak, 1),
        "rss_mb_at_outage_end": round(rss_at_outage_end, 1) if rss_at_outage_end else None,
        "rss_timeline_s_mb": timeline,
        "deliverer_exit_code": proc.returncode,
        "deliverer_summary": summary,
        "deliverer_log": str(log_path),
        "deliverer_settings": effective,
        "goal": {
            "goal": f"peak RSS <= {RSS_GOAL_MB:g} MB",
            "measured_mb": round(peak, 1),
            "met": peak <= RSS_GOAL_MB and sim_stats["accepted"] >= backlog,
            "margin_mb": round(RSS_GOAL_MB - peak, 1),
        },
    }


def _custom_data_fields() -> frozenset[str]:
    """The standard fields of custom_data (capi_event.v1.avsc's CustomData)."""
    from stream import schemas

    event = schemas.load("capi_event.v1")["fields"][0]["type"]
    custom = next(f for f in event["fields"] if f["name"] == "custom_data")["type"][1]
    return frozenset(f["name"] for f in custom["fields"]) - {"custom_properties"}


# -- the whole benchmark ----------------------------------------------------------------------


def run(
    bootstrap: str,
    *,
    events: int,
    baseline_events: int,
    latencies: Sequence[float],
    single_pixel_events: int,
    steady_seconds: float,
    steady_single: bool,
    backlog: int,
    outage_s: float,
) -> dict[str, Any]:
    from stream.logs import configure

    configure("warning", "json")  # the in-process deliverer logs only problems
    pixels8, pixel1 = pixel_ids(8), pixel_ids(1)
    log(f"deliver: normalizing {max(events, backlog):,} + {single_pixel_events:,} events")
    many = enriched_pairs(max(events, backlog), pixels8)
    single = enriched_pairs(single_pixel_events, pixel1, seed=SEED + 1)
    topic8 = _produce(bootstrap, many[:events])
    topic1 = _produce(bootstrap, single)
    log(f"deliver: produced {events:,} (8 pixels) and {len(single):,} (1 pixel) enriched events")
    sim = SimProcess(latency_ms=latencies[0]).start()
    data: dict[str, Any] = {
        "seed": SEED,
        "events_8_pixels": events,
        "events_1_pixel": len(single),
        "throughput": {},
    }
    try:
        for latency in latencies:
            sim.set_latency(latency)
            sim.latency_ms = latency
            point: dict[str, Any] = {}
            point["capi_8_pixels"] = run_capi(bootstrap, topic8, sim, events)
            log(
                f"deliver @{latency:g} ms: capi-stream 8 pixels "
                f"{point['capi_8_pixels']['events_per_s']:,} events/s"
            )
            point["capi_1_pixel"] = run_capi(bootstrap, topic1, sim, len(single))
            log(
                f"deliver @{latency:g} ms: capi-stream 1 pixel "
                f"{point['capi_1_pixel']['events_per_s']:,} events/s"
            )
            point["sdk_baseline"] = run_baseline(bootstrap, topic8, sim, baseline_events)
            log(
                f"deliver @{latency:g} ms: SDK baseline "
                f"{point['sdk_baseline']['events_per_s']:,} events/s"
            )
            base = point["sdk_baseline"]["events_per_s"]
            point["ratio_8_pixels_vs_baseline"] = round(
                point["capi_8_pixels"]["events_per_s"] / base, 2
            )
            point["ratio_1_pixel_vs_baseline"] = round(
                point["capi_1_pixel"]["events_per_s"] / base, 2
            )
            data["throughput"][f"{latency:g}ms"] = point
        steady_latency = 50.0
        sim.set_latency(steady_latency)
        sim.latency_ms = steady_latency
        data["latency_5k"] = {}
        data["latency_5k"]["8_pixels"] = run_latency(
            bootstrap, sim, many, rate=5000, seconds=steady_seconds, label="8"
        )
        log(
            f"deliver p99 @5k/s, 8 pixels: {data['latency_5k']['8_pixels']['latency_ms']['p99']} ms"
        )
        if steady_single:
            seconds = min(steady_seconds, len(single) / 5000)
            data["latency_5k"]["1_pixel"] = run_latency(
                bootstrap, sim, single, rate=5000, seconds=seconds, label="1"
            )
            log(
                f"deliver p99 @5k/s, 1 pixel: "
                f"{data['latency_5k']['1_pixel']['latency_ms']['p99']} ms"
            )
        data["outage"] = run_outage(bootstrap, sim, many[:backlog], outage_s)
        log(
            f"deliver outage: peak RSS {data['outage']['peak_rss_mb_vmhwm']} MB, all delivered: "
            f"{data['outage']['all_delivered_and_committed']}"
        )
    finally:
        sim.stop()
    at500 = data["throughput"].get("500ms")
    goals: dict[str, Any] = {}
    if at500:
        ratio = at500["ratio_8_pixels_vs_baseline"]
        goals["throughput_500ms_vs_baseline"] = {
            "goal": f">= {THROUGHPUT_GOAL:g}x the SDK baseline at 500 ms (8 pixels)",
            "measured": ratio,
            "met": ratio >= THROUGHPUT_GOAL,
            "margin": round(ratio - THROUGHPUT_GOAL, 2),
            "single_pixel_measured": at500["ratio_1_pixel_vs_baseline"],
            "single_pixel_met": at500["ratio_1_pixel_vs_baseline"] >= THROUGHPUT_GOAL,
        }
    goals["p99_latency_5k"] = data["latency_5k"]["8_pixels"]["goal"]
    goals["peak_rss_outage"] = data["outage"]["goal"]
    data["goals"] = goals
    return data


if __name__ == "__main__":  # pragma: no cover - run through `python -m bench`
    print("run `python -m bench` (see bench/__main__.py)", file=sys.stderr)
    os._exit(2)
