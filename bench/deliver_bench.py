"""Deliver stage end to end (enriched topic → accepted by the simulator), beside the SDK loop
and a floor, in the same run, on the same records.

The simulator (``capi-stream sim``) runs in its own process, so it never shares a GIL with what
is measured; its latency is switched between runs through ``POST /_sim/faults``. Kafka is a real
broker on loopback. The enriched inputs are what the normalize stage writes: seeded raw events
(see :func:`bench.common.raw_events`) passed through ``Enricher.process``, over 8 pixels.

Three contenders, each in its own fresh process (:func:`bench.common.in_child`), so its CPU is
the stage process's alone (every thread: the event loop, the poll thread, librdkafka's):

* ``capi-stream``: the deliver stage with its default settings (linger 1 s, 1,000 events a
  request, 32 requests in flight, 4 per lane), from ``run()`` until the last event is accepted;
* ``floor``: the least a program can do and still deliver: a plain consumer thread that decodes
  each envelope with fastavro and hands batches to an asyncio loop, which splices the events'
  JSON bytes into 1,000-event bodies per pixel and posts them with httpx (32 in flight). No
  offsets committed, no retries, no dead letters, no lanes, no expiry: no guarantees;
* ``sdk``: a plain consumer loop that builds the ``facebook-business`` SDK's ``Event`` objects
  and posts each 1,000 events of a pixel with ``EventRequest(...).execute()`` synchronously,
  committing after each post (only offsets whose events were all posted). It runs on a prefix of
  the topic: its rate is one request at a time, so more events add only time. The SDK posts
  through its own path (``FacebookAdsApi`` → its ``requests.Session``); only the session's
  Graph base URL points at the simulator.

Rates count from the first record read to the last event accepted; CPU counts from the start
of the contender's work (consumer creation, group join) to the last event accepted.

Goals: CPU per event at most 1.5x the floor's; at 500 ms, at least 10x the SDK loop's rate;
at most 0.05 CPU-seconds per 1,000 events.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bench.common import (
    TOKEN,
    SimProcess,
    bench_settings,
    cpu_times,
    create_topics,
    deliverer_class,
    in_child,
    log,
    pixel_ids,
    produce,
    sdk_event,
    stage_names,
    unique,
)

SEED = 20_260_202
PARTITIONS = 6
SDK_GOAL = 10.0
FLOOR_GOAL = 1.5
CPU_GOAL_S_PER_1000 = 0.05
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


#: Chunks made so far in this run, by (start, stop, seed, pixels): a later benchmark asking for
#: more events makes only the chunks it lacks, and every chunk's events are the same each time.
_CHUNKS: dict[tuple[int, int, int, tuple[str, ...]], Pairs] = {}
_NOW = int(time.time())
CHUNK = 25_000


def enriched_pairs(n: int, pixels: Sequence[str], seed: int = SEED) -> Pairs:
    """``n`` enriched (key, value) pairs as the normalize stage writes them (seeded per chunk of
    25,000, built on every CPU: this is input preparation, not a measurement). Kept for the run:
    the latency and outage benchmarks take theirs from the same events."""
    keys = [(a, min(a + CHUNK, n), seed, tuple(pixels)) for a in range(0, n, CHUNK)]
    missing = [k for k in keys if k not in _CHUNKS]
    jobs = [(a, b, seed, _NOW, list(pixels)) for a, b, _, _ in missing]
    workers = min(len(jobs), len(os.sched_getaffinity(0)))
    if workers <= 1:
        parts = [_enriched_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_enriched_chunk, jobs)
    _CHUNKS.update(zip(missing, parts, strict=True))
    return [pair for k in keys for pair in _CHUNKS[k]]


def produce_topic(bootstrap: str, pairs: Pairs, partitions: int = PARTITIONS) -> str:
    """A fresh enriched topic holding ``pairs``."""
    topic = unique("enriched")
    create_topics(bootstrap, [topic], partitions)
    produce(bootstrap, topic, pairs)
    return topic


def deliver_settings(
    bootstrap: str,
    topic: str,
    sim_url: str,
    *,
    deliverer: Mapping[str, Any] | None = None,
    consumer: Mapping[str, Any] | None = None,
) -> Any:
    """The deliver stage's settings on ``topic``, posting to the simulator at ``sim_url``."""
    names = stage_names(enriched=topic, raw=unique("raw-unused"))
    # the stage reads the dead-letter topic's record size limit at start: it must exist
    create_topics(bootstrap, [names["dlq"]], 1)
    return bench_settings(
        bootstrap, names, deliverer={"graph_url": sim_url, **(deliverer or {})}, consumer=consumer
    )


# -- capi-stream ------------------------------------------------------------------------------


class DoneSensor:
    """Notes the first record read and the ``expected``-th event settled, then stops the stage.

    The stage calls it; no thread polls the stage for progress.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.settled = 0
        self.marks: dict[str, float] = {}
        self.cpu_at: dict[str, float] = {}
        self.stage: Any = None

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:  # noqa: ARG002
        if name == "consumed" and "first" not in self.marks:
            self.marks["first"], self.cpu_at["first"] = cpu_times()
        elif name in ("events_posted", "dead_lettered"):
            self.settled += int(value)
            if self.settled >= self.expected and "done" not in self.marks:
                self.marks["done"], self.cpu_at["done"] = cpu_times()
                self.stage.stop()

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""


def capi_child(settings: Any, expected: int) -> dict[str, Any]:
    """Child process: the deliver stage until ``expected`` events are settled."""
    sensor = DoneSensor(expected)
    stage = deliverer_class()(settings, sensor=sensor)
    sensor.stage = stage
    timer = threading.Timer(300, stage.stop)  # never hang the whole run
    timer.start()
    start, cpu_start = cpu_times()
    try:
        stats = stage.run()
    finally:
        timer.cancel()
    ended, cpu_end = cpu_times()
    if "done" not in sensor.marks:
        raise RuntimeError(f"capi-stream settled {sensor.settled} of {expected}")
    window = sensor.marks["done"] - sensor.marks["first"]
    cpu_s = sensor.cpu_at["done"] - cpu_start
    return {
        "events": expected,
        "delivered": stats.delivered,
        "dead_lettered": stats.dead_lettered,
        "requests": stats.requests,
        "retries": stats.retries,
        "events_per_s": round(expected / window),
        "cpu_s": round(cpu_s, 3),
        "cpu_s_per_1000_events": round(cpu_s / expected * 1000, 4),
        "cpu_s_first_record_to_done_per_1000": round(
            (sensor.cpu_at["done"] - sensor.cpu_at["first"]) / expected * 1000, 4
        ),
        "cpu_s_drain_and_close": round(cpu_end - sensor.cpu_at["done"], 3),
        "seconds_first_record_to_last_accept": round(window, 3),
        "seconds_start_to_first_record": round(sensor.marks["first"] - start, 3),
        "seconds_drain_and_close": round(ended - sensor.marks["done"], 3),
    }


# -- the floor --------------------------------------------------------------------------------


def floor_child(bootstrap: str, topic: str, sim_url: str, expected: int) -> dict[str, Any]:
    """Child process: consume, splice 1,000 events per pixel into a body, POST; nothing else."""
    import asyncio
    import io

    import fastavro
    import httpx
    from confluent_kafka import Consumer

    from stream import schemas

    start, cpu_start = cpu_times()
    schema = fastavro.parse_schema(schemas.load("capi_event"))
    reader = fastavro.schemaless_reader
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("floor"),
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })  # fmt: skip
    consumer.subscribe([topic])
    marks: dict[str, float] = {}
    cpu_at: dict[str, float] = {}
    counts = {"consumed": 0, "posted": 0, "requests": 0}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32), timeout=60
        )
        slots = asyncio.Semaphore(32)
        buffers: dict[str, list[bytes]] = {}
        tasks: set[asyncio.Task[None]] = set()
        suffix = b'],"access_token":' + orjson.dumps(TOKEN) + b"}"
        headers = {"Content-Type": "application/json"}

        async def post(pixel: str, events: list[bytes]) -> None:
            body = b'{"data":[' + b",".join(events) + suffix
            async with slots:
                answer = await client.post(f"{sim_url}/v25.0/{pixel}/events", content=body,
                                           headers=headers)  # fmt: skip
            if answer.status_code != 200:
                raise RuntimeError(f"the floor's request got HTTP {answer.status_code}")
            counts["posted"] += orjson.loads(answer.content)["events_received"]
            counts["requests"] += 1
            if counts["posted"] >= expected:
                marks["done"], cpu_at["done"] = cpu_times()
                done.set()

        def send(pixel: str, events: list[bytes]) -> None:
            task = loop.create_task(post(pixel, events))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def ingest(items: list[tuple[str, bytes]], last: bool) -> None:
            for pixel, event in items:
                buf = buffers.get(pixel)
                if buf is None:
                    buf = buffers[pixel] = []
                buf.append(event)
                if len(buf) == BATCH:
                    send(pixel, buf)
                    buffers[pixel] = []
            if last:
                for pixel, buf in buffers.items():
                    if buf:
                        send(pixel, buf)
                buffers.clear()

        def poll() -> None:
            consumed = 0
            while consumed < expected:
                messages = consumer.consume(1000, 0.1)
                items = []
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    record = reader(io.BytesIO(msg.value()), schema, None)
                    items.append((record["pixel_id"], record["event_json"]))
                if items and "first" not in marks:
                    marks["first"], cpu_at["first"] = cpu_times()
                if items:
                    consumed += len(items)
                    loop.call_soon_threadsafe(ingest, items, consumed >= expected)
            counts["consumed"] = consumed

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        await asyncio.wait_for(done.wait(), 300)
        for task in list(tasks):
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await client.aclose()
        poller.join(10)

    try:
        asyncio.run(main())
    finally:
        consumer.close()
    cpu_s = cpu_at["done"] - cpu_start
    window = marks["done"] - marks["first"]
    return {
        "events": expected,
        "delivered": counts["posted"],
        "requests": counts["requests"],
        "events_per_s": round(expected / window),
        "cpu_s": round(cpu_s, 3),
        "cpu_s_per_1000_events": round(cpu_s / expected * 1000, 4),
        "cpu_s_first_record_to_done_per_1000": round(
            (cpu_at["done"] - cpu_at["first"]) / expected * 1000, 4
        ),
        "seconds_first_record_to_last_accept": round(window, 3),
        "seconds_start_to_first_record": round(marks["first"] - start, 3),
    }


# -- the SDK loop -----------------------------------------------------------------------------


def sdk_child(bootstrap: str, topic: str, sim_url: str, limit: int) -> dict[str, Any]:
    """Child process: SDK ``EventRequest`` per 1,000 events of a pixel, commit after each."""
    import io

    import fastavro
    from confluent_kafka import Consumer, TopicPartition
    from facebook_business.adobjects.serverside.event_request import EventRequest
    from facebook_business.api import FacebookAdsApi

    from stream import schemas

    start, cpu_start = cpu_times()
    api = FacebookAdsApi.init(access_token=TOKEN, api_version="v25.0")
    # the SDK's own synchronous path; only its session's Graph base URL is the simulator's
    api._session.GRAPH = sim_url
    schema = fastavro.parse_schema(schemas.load("capi_event"))
    custom_fields = _custom_data_fields()
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("sdk-baseline"),
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })  # fmt: skip
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
        done, cpu_done = cpu_times()
    finally:
        consumer.close()
    assert first is not None
    return {
        "events": posted,
        "requests": requests,
        "events_per_s": round(posted / (done - first)),
        "cpu_s": round(cpu_done - cpu_start, 3),
        "cpu_s_per_1000_events": round((cpu_done - cpu_start) / posted * 1000, 4),
        "seconds_first_record_to_last_accept": round(done - first, 3),
        "median_post_ms": round(sorted(post_seconds)[len(post_seconds) // 2] * 1000, 1),
    }


def _custom_data_fields() -> frozenset[str]:
    """The standard fields of custom_data (capi_event.v1.avsc's CustomData)."""
    from stream import schemas

    event = schemas.load("capi_event.v1")["fields"][0]["type"]
    custom = next(f for f in event["fields"] if f["name"] == "custom_data")["type"][1]
    return frozenset(f["name"] for f in custom["fields"]) - {"custom_properties"}


# -- one latency point ------------------------------------------------------------------------


def _checked(sim: SimProcess, result: dict[str, Any], expected: int) -> dict[str, Any]:
    stats = sim.stats()
    result["sim_accepted"] = stats["accepted"]
    result["sim_duplicates"] = stats["duplicates"]
    result["sim_requests"] = stats["requests"]
    if stats["accepted"] < expected:
        raise RuntimeError(f"the simulator accepted {stats['accepted']} of {expected}")
    return result


def run_point(
    bootstrap: str, sim: SimProcess, topic: str, events: int, sdk_events: int
) -> dict[str, Any]:
    """The three contenders at the simulator's current latency."""
    point: dict[str, Any] = {}
    sim.reset()
    settings = deliver_settings(bootstrap, topic, sim.url)
    point["capi"] = _checked(sim, in_child(capi_child, settings, events), events)
    sim.reset()
    point["floor"] = _checked(sim, in_child(floor_child, bootstrap, topic, sim.url, events), events)
    sim.reset()
    point["sdk"] = _checked(
        sim, in_child(sdk_child, bootstrap, topic, sim.url, sdk_events), sdk_events
    )
    capi, floor, sdk = point["capi"], point["floor"], point["sdk"]
    point["rate_vs_sdk"] = round(capi["events_per_s"] / sdk["events_per_s"], 2)
    point["rate_vs_floor"] = round(capi["events_per_s"] / floor["events_per_s"], 3)
    point["cpu_vs_floor"] = round(capi["cpu_s_per_1000_events"] / floor["cpu_s_per_1000_events"], 3)
    point["cpu_vs_sdk"] = round(capi["cpu_s_per_1000_events"] / sdk["cpu_s_per_1000_events"], 3)
    steady = "cpu_s_first_record_to_done_per_1000"
    point["cpu_vs_floor_without_start_up"] = round(capi[steady] / floor[steady], 3)
    return point


def goals(throughput: Mapping[str, Any]) -> dict[str, Any]:
    """Met or missed, with the margin, for each goal of the deliver stage."""
    out: dict[str, Any] = {}
    worst_floor = max(p["cpu_vs_floor"] for p in throughput.values())
    out["cpu_vs_floor"] = {
        "goal": f"CPU per event <= {FLOOR_GOAL}x the floor's (at every latency)",
        "measured": worst_floor,
        "met": worst_floor <= FLOOR_GOAL,
        "margin": round(FLOOR_GOAL - worst_floor, 3),
    }
    worst_cpu = max(p["capi"]["cpu_s_per_1000_events"] for p in throughput.values())
    out["cpu_per_1000"] = {
        "goal": f"<= {CPU_GOAL_S_PER_1000} CPU-s per 1,000 events (at every latency)",
        "measured": worst_cpu,
        "met": worst_cpu <= CPU_GOAL_S_PER_1000,
        "margin": round(CPU_GOAL_S_PER_1000 - worst_cpu, 4),
    }
    if (at500 := throughput.get("500ms")) is not None:
        ratio = at500["rate_vs_sdk"]
        out["rate_vs_sdk_500ms"] = {
            "goal": f">= {SDK_GOAL:g}x the SDK loop's rate at 500 ms",
            "measured": ratio,
            "met": ratio >= SDK_GOAL,
            "margin": round(ratio - SDK_GOAL, 2),
        }
    return out


def run(
    bootstrap: str, *, events: int, sdk_events: int, latencies: Sequence[float]
) -> dict[str, Any]:
    pixels = pixel_ids(8)
    log(f"deliver: normalizing {events:,} events over 8 pixels")
    topic = produce_topic(bootstrap, enriched_pairs(events, pixels))
    log(f"deliver: produced {events:,} enriched events")
    sim = SimProcess(latency_ms=latencies[0]).start()
    data: dict[str, Any] = {"seed": SEED, "events": events, "pixels": 8, "throughput": {}}
    try:
        for latency in latencies:
            sim.set_latency(latency)
            sim.latency_ms = latency
            point = run_point(bootstrap, sim, topic, events, sdk_events)
            data["throughput"][f"{latency:g}ms"] = point
            log(
                f"deliver @{latency:g} ms: capi-stream {point['capi']['events_per_s']:,}/s "
                f"({point['capi']['cpu_s_per_1000_events']} CPU-s/1000), floor "
                f"{point['floor']['events_per_s']:,}/s "
                f"({point['floor']['cpu_s_per_1000_events']}), SDK "
                f"{point['sdk']['events_per_s']:,}/s ({point['sdk']['cpu_s_per_1000_events']})"
            )
    finally:
        sim.stop()
    data["goals"] = goals(data["throughput"])
    return data


if __name__ == "__main__":  # pragma: no cover - run through `python -m bench`
    print("run `python -m bench --only deliver` (see bench/__main__.py)", file=sys.stderr)
    os._exit(2)
