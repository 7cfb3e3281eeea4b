"""p99 latency from produce to accepted at a steady 5,000 events/s over 8 pixels, and where it goes.

Four processes besides the broker, each on its own interpreter so none shares a GIL:

* the deliver stage (:func:`stage_child`), default settings unless a variant changes some;
* a paced producer of enriched records at ``rate`` per second (idempotent, ``linger.ms`` 5);
* a probe consumer (``fetch.wait.max.ms`` 5) noting when each record became readable;
* the simulator with its request journal (``bench/journal_sim.py``): when each request arrived
  and was answered, and which event ids it carried.

Each event's path is cut into segments measured from outside the stage: its record's produce
timestamp → readable by a consumer (probe) → its request arrives at the simulator (journal) →
answered (journal) → the stage counts it accepted (the stage's own produce-to-accept figures,
which are the goal's measure). Per request, the time from its first event becoming readable to
its arrival shows how long the window stayed open. The goal: p99 ≤ linger + 250 ms.

Variants run the same stage with settings changed from outside (settings objects, librdkafka
passthrough), to test what the segments point at; each reports the same figures.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    SimProcess,
    create_topics,
    deliverer_class,
    log,
    percentile,
    pixel_ids,
    unique,
)
from bench.deliver_bench import PARTITIONS, Pairs, enriched_pairs

SLACK_MS = 250.0
SIM_LATENCY_MS = 50.0

#: Each variant: settings of the deliver stage, librdkafka consumer properties passed through,
#: whether the paced producer is started (idempotent PID, metadata) before the clock starts, and
#: why it is tried.
VARIANTS: dict[str, dict[str, Any]] = {
    "cold_producer": {
        "deliverer": {}, "consumer": {}, "warm_producer": False,
        "why": "as measured before: the paced producer's first records wait for its idempotent "
        "producer id and the topic's metadata",
    },
    "default": {
        "deliverer": {}, "consumer": {}, "warm_producer": True,
        "why": "the settings as shipped; the producer is ready before the first paced record",
    },
    "fetch_wait_50ms": {
        "deliverer": {}, "consumer": {"fetch.wait.max.ms": 50}, "warm_producer": True,
        "why": "the consumer's fetch long-poll (librdkafka default 500 ms) cut to 50 ms",
    },
    "high_priority": {
        "deliverer": {}, "consumer": {}, "warm_producer": True, "nice": -10,
        "why": "the default, with the stage and the simulator at nice -10: what is left of the "
        "excess over linger when the host's other work cannot delay them",
    },
    "linger_500ms": {
        "deliverer": {"linger_ms": 500}, "consumer": {}, "warm_producer": True,
        "why": "half the window: the p99 falls by about as much if the window dominates",
    },
    "pipeline": {
        "deliverer": {}, "consumer": {}, "warm_producer": True, "normalizer": {}, "rate": 2000.0,
        "why": "raw records at 2,000/s (what one normalize process sustains here) through the "
        "normalize stage (exactly once: one transaction per poll batch of up to 500 records or "
        "0.5 s) and the deliver stage; latency from the raw record's produce",
    },
    "pipeline_txn_100": {
        "deliverer": {}, "consumer": {}, "warm_producer": True, "rate": 2000.0,
        "normalizer": {"poll_timeout_s": 0.1, "poll_batch": 100},
        "why": "the same, the normalizer's transaction cut at 100 records or 0.1 s",
    },
}  # fmt: skip


# -- the processes ----------------------------------------------------------------------------


def stage_child(conn: Any, settings: Any, nice: int = 0) -> None:
    """Child: the deliver stage until the parent says stop; then its produce-to-accept figures."""
    from stream.logs import configure

    configure("warning", "json")
    if nice:
        os.nice(nice)  # before any thread starts: each inherits it
    sends = _trace_requests()
    stage = deliverer_class()(settings)
    busy: list[float] = []

    def control() -> None:
        deadline = time.monotonic() + 60
        while not stage.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.send("ready")
        busy.extend((time.perf_counter(), time.process_time()))
        conn.recv()  # "stop"
        busy.extend((time.perf_counter(), time.process_time()))
        stage.stop()

    threading.Thread(target=control, daemon=True).start()
    stats = stage.run()
    conn.send({
        "delivered": stats.delivered, "dead_lettered": stats.dead_lettered,
        "requests": stats.requests, "retries": stats.retries,
        "latencies_s": list(stats.latencies_s),
        "sends": sends,
        # CPU of the stage process over the run, as a share of one core
        "cpu_share": round((busy[3] - busy[1]) / (busy[2] - busy[0]), 3) if busy[3:] else None,
    })  # fmt: skip


def _trace_requests() -> list[tuple[str, float, float]]:
    """Note (pixel, sent, answer received) of every events POST this process makes.

    Wraps ``httpx.AsyncClient.send`` in this child only: the stage's code is not changed, and
    any stage that posts through httpx is traced the same way.
    """
    import httpx

    sends: list[tuple[str, float, float]] = []
    send = httpx.AsyncClient.send

    async def traced(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        began = time.time()
        response = await send(self, request, **kwargs)
        parts = request.url.path.strip("/").split("/")
        if len(parts) >= 2 and parts[-1] == "events":
            sends.append((parts[-2], began, time.time()))
        return response

    httpx.AsyncClient.send = traced  # type: ignore[method-assign]
    return sends


def normalizer_child(conn: Any, settings: Any) -> None:
    """Child: the normalize stage until the parent says stop."""
    from stream.logs import configure
    from stream.normalizer import Normalizer

    configure("warning", "json")
    from bench.normalize_bench import warm_process

    warm_process()  # first-use tables: a one-off that would land on the first measured seconds
    stage = Normalizer(settings)
    busy: list[float] = []

    def control() -> None:
        deadline = time.monotonic() + 60
        while not stage.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.send("ready")
        busy.extend((time.perf_counter(), time.process_time()))
        conn.recv()  # "stop"
        busy.extend((time.perf_counter(), time.process_time()))
        stage.stop()

    threading.Thread(target=control, daemon=True).start()
    stats = stage.run()
    conn.send({
        "consumed": stats.consumed, "transactions": stats.transactions,
        "cpu_share": round((busy[3] - busy[1]) / (busy[2] - busy[0]), 3) if busy[3:] else None,
        "cpu_us_per_event": round((busy[3] - busy[1]) / max(stats.consumed, 1) * 1e6, 1)
        if busy[3:] else None,
    })  # fmt: skip


def paced_producer(
    conn: Any, bootstrap: str, topic: str, path: str, plan: tuple[float, bool]
) -> None:
    """Child: produce the pairs in ``path`` at ``plan``'s rate per second, then report.

    ``plan`` is (rate, warm); ``warm``: first one record to a side topic and the measured
    topic's metadata, so the paced records never wait for the producer's own start (its
    idempotent producer id, a connection).
    """
    from confluent_kafka import Producer

    rate, warm = plan
    with open(path, "rb") as f:
        pairs: Pairs = pickle.load(f)  # noqa: S301 - our own temporary file
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "acks": "all"}
    )
    if warm:
        producer.produce(f"{topic}-warm", b"warm-up")
        if producer.flush(60):
            raise RuntimeError("the warm-up record was not acknowledged")
        producer.list_topics(topic, 30)
    began = time.monotonic()
    sent = worst_behind = 0
    times: list[tuple[int, float]] = []  # (records produced so far, when)
    total = len(pairs)
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        worst_behind = max(worst_behind, due - sent)
        while sent < due:
            key, value = pairs[sent]
            producer.produce(topic, key=key, value=value)
            sent += 1
        times.append((sent, time.time()))
        producer.poll(0)
        time.sleep(0.002)
    elapsed = time.monotonic() - began
    producer.flush(60)
    conn.send({
        "produced": sent, "seconds": round(elapsed, 3),
        "achieved_rate": round(sent / elapsed, 1), "worst_backlog_events": worst_behind,
        "times": times,
    })  # fmt: skip


def probe_consumer(conn: Any, bootstrap: str, topic: str, expected: int) -> None:
    """Child: read ``topic`` as soon as records are readable; (key, produce ms, seen s) each."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("probe"),
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed", "fetch.wait.max.ms": 5,
    })  # fmt: skip
    consumer.subscribe([topic])
    codec = _enriched_codec()
    seen: list[tuple[bytes, str, int, float]] = []
    deadline = time.monotonic() + 600
    conn.send("ready")
    while len(seen) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.02):
            if msg.error() is None:
                at = time.time()
                event_id = codec.decode(msg.value())["event_id"]
                seen.append((msg.key(), event_id, msg.timestamp()[1], at))
    consumer.close()
    conn.send(seen)


def _enriched_codec() -> Any:
    from stream import schemas
    from stream.core.codec import AvroCodec

    return AvroCodec(schemas.load("capi_event"))


class _Child:
    """A spawned child talking over one duplex pipe."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    def recv(self, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise RuntimeError(f"a benchmark process said nothing in {timeout_s:g} s")
        return self.conn.recv()

    def close(self) -> None:
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)


# -- one variant ------------------------------------------------------------------------------


def raw_pairs(n: int, pixels: Sequence[str]) -> Pairs:
    """``n`` raw records keyed ``k0``, ``k1``, …: the normalize stage keeps the key, so the
    probe can tell which raw record an enriched one came from."""
    from bench.common import raw_events
    from stream import schemas
    from stream.core.codec import AvroCodec

    codec = AvroCodec(schemas.load("conversion_event"))
    events = raw_events(n, 20_260_303, int(time.time()), pixels)
    return [(f"k{i}".encode(), codec.encode(e)) for i, e in enumerate(events)]


def run_variant(
    bootstrap: str, sim: SimProcess, pairs: Pairs, *, rate: float, spec: Mapping[str, Any]
) -> dict[str, Any]:
    """One steady run; ``pairs`` are enriched records, or raw ones when ``spec`` has a
    ``normalizer`` (then the normalize stage runs too and latency counts from the raw record)."""
    from bench.common import bench_settings, stage_names

    count = len(pairs)
    pipeline = "normalizer" in spec
    names = stage_names()
    create_topics(bootstrap, [names["raw"], names["enriched"]], PARTITIONS)
    create_topics(bootstrap, [names["dlq"], f"{names['raw']}-warm"], 1)
    sim.reset()
    settings = bench_settings(
        bootstrap, names, normalizer=spec.get("normalizer"),
        deliverer={"graph_url": sim.url, **spec["deliverer"]}, consumer=spec["consumer"],
    )  # fmt: skip
    linger_ms = settings.deliverer.linger_ms
    into = names["raw"] if pipeline else names["enriched"]
    nice = spec.get("nice", 0)
    if nice:
        _renice(sim, nice)
    children = {"stage": _Child(stage_child, settings, nice)}
    if pipeline:
        children["normalizer"] = _Child(normalizer_child, settings)
    children["probe"] = _Child(probe_consumer, bootstrap, names["enriched"], count)
    load_before = os.getloadavg()[0]
    try:
        for child in children.values():
            child.recv(90)
        time.sleep(1.0)  # the probe's group join: it must read from the first record on
        with tempfile.NamedTemporaryFile(prefix="capi-bench-", suffix=".pkl", delete=False) as f:
            pickle.dump(pairs, f)
        producer = _Child(paced_producer, bootstrap, into, f.name, (rate, spec["warm_producer"]))
        report = producer.recv(count / rate + 120)
        producer.close()
        Path(f.name).unlink(missing_ok=True)
        deadline = time.monotonic() + 60
        while sim.stats()["accepted"] < report["produced"] and time.monotonic() < deadline:
            time.sleep(0.2)
        load_after = os.getloadavg()[0]
        for child in children.values():
            if child is not children["probe"]:
                child.conn.send("stop")
        result = children["stage"].recv(120)
        normalizer = children["normalizer"].recv(120) if pipeline else None
        seen = children["probe"].recv(60)
    finally:
        for child in children.values():
            child.close()
        if nice:
            _renice(sim, 0)
    origin: dict[bytes, float] | None = None
    if pipeline:
        # record i was produced at the first report time when more than i had been sent
        origin, times, k = {}, report.pop("times"), 0
        for sent, at in times:
            while k < sent:
                origin[f"k{k}".encode()] = at
                k += 1
    else:
        report.pop("times")
    journal = sim.read_journal()
    out = breakdown(seen, journal, result["latencies_s"], origin, result["sends"])
    out["simulator_bursts"] = bursts(journal, SIM_LATENCY_MS / 1000)
    # the stage counts from the enriched record; through the normalizer the raw record's
    # produce is the start, and the simulator's answer (a few ms before the stage's) the end
    measure = "produce_to_answered" if pipeline else None
    p99 = out["segments_ms"][measure]["p99"] if measure else out["produce_to_accepted_ms"]["p99"]
    goal = linger_ms + SLACK_MS
    out.update({
        "producer": report, "delivered": result["delivered"], "requests": result["requests"],
        "retries": result["retries"], "linger_ms": linger_ms,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "normalizer_stage": normalizer,
        "stage_cpu_share_of_one_core": result.get("cpu_share"),
        "goal": {
            "goal": f"p99 <= linger + {SLACK_MS:g} ms = {goal:g} ms",
            "measure": "raw produce → answered" if pipeline else "produce → accepted (stage)",
            "measured_ms": p99, "met": p99 <= goal, "margin_ms": round(goal - p99, 1),
        },
    })  # fmt: skip
    return out


def _renice(sim: SimProcess, value: int) -> None:
    """Every thread of the simulator's process to ``value`` (Linux nice is per thread)."""
    assert sim.proc is not None
    for task in Path(f"/proc/{sim.proc.pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), value)
        except (OSError, ValueError):
            continue


def _dist(values: Sequence[float]) -> dict[str, float | int | None]:
    ms = [v * 1000 for v in values]
    return {
        "p50": round(percentile(ms, 50), 1),
        "p90": round(percentile(ms, 90), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(max(ms), 1) if ms else None,
        "samples": len(ms),
    }


def breakdown(
    seen: Sequence[tuple[bytes, str, int, float]],
    journal: Sequence[Sequence[Any]],
    accepted_latencies_s: Sequence[float],
    origin: Mapping[bytes, float] | None = None,
    sends: Sequence[tuple[str, float, float]] = (),
) -> dict[str, Any]:
    """Each event's path in segments, and the requests' windows (see the module docstring).

    ``origin`` maps a record key to its raw record's produce time (through the normalizer);
    without it the path starts at the enriched record's produce.
    """
    # event_id -> (start, enriched record produced, readable)
    readable: dict[str, tuple[float, float, float]] = {}
    for key, event_id, created_ms, at in seen:
        created = created_ms / 1000
        start = origin.get(key, created) if origin is not None else created
        readable[event_id] = (start, created, at)
    arrival: dict[str, tuple[float, float]] = {}  # first request carrying each event
    windows: list[float] = []
    sizes: list[int] = []
    # the k-th request the stage sent for a pixel is the k-th the simulator logged for it
    # (one window a second per pixel: they do not overtake each other)
    by_pixel: dict[str, list[tuple[float, float]]] = {}
    for pixel, began, received in sorted(sends, key=lambda x: x[1]):
        by_pixel.setdefault(pixel, []).append((began, received))
    seen_of: dict[str, int] = {}
    client: list[tuple[float, float, float, float]] = []  # (sent, arrived, answered, received)
    windows_to_send: list[float] = []
    for pixel, arrived, answered, sent, ids in sorted(journal, key=lambda row: row[1]):
        firsts = [readable[i][2] for i in ids if i in readable]
        k = seen_of[pixel] = seen_of.get(pixel, -1) + 1
        mine = by_pixel.get(pixel, [])
        if firsts:
            windows.append(arrived - min(firsts))
            sizes.append(sent)
            if k < len(mine):
                windows_to_send.append(mine[k][0] - min(firsts))
        if k < len(mine):
            client.append((mine[k][0], arrived, answered, mine[k][1]))
        for event_id in ids:
            arrival.setdefault(event_id, (arrived, answered))
    # (start, enriched produced, readable, arrived, answered)
    rows = [(*readable[i], *arrival[i]) for i in readable if i in arrival]
    total = [r[4] - r[0] for r in rows]
    cut = percentile(total, 99)
    tail = [r for r, t in zip(rows, total, strict=True) if t >= cut]
    spans = {
        "raw_produce_to_enriched_produce": (0, 1),
        "produce_to_readable": (1, 2),
        "readable_to_request_arrived": (2, 3),
        "request_arrived_to_answered": (3, 4),
    }
    if origin is None:
        del spans["raw_produce_to_enriched_produce"]

    def mean_ms(values: Sequence[float]) -> float:
        return round(sum(values) / len(values) * 1000, 1) if values else float("nan")

    first = min((r[0] for r in rows), default=0.0)
    by_second: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        by_second.setdefault(int(r[0] - first), []).append((r[2] - r[1], r[4] - r[0]))
    return {
        "produce_to_accepted_ms": _dist(accepted_latencies_s),
        "segments_ms": {
            **{name: _dist([r[b] - r[a] for r in rows]) for name, (a, b) in spans.items()},
            "produce_to_answered": _dist(total),
        },
        "slowest_1pct_mean_ms": {
            "events": len(tail),
            **{name: mean_ms([r[b] - r[a] for r in tail]) for name, (a, b) in spans.items()},
        },
        "request_window_ms": _dist(windows),
        # per request, from the stage's side (its httpx calls) and the simulator's (journal)
        "request_ms": {
            "first_event_readable_to_stage_sends": _dist(windows_to_send),
            "stage_sends_to_simulator_reads": _dist([a - s for s, a, _, _ in client]),
            "simulator_reads_to_answers": _dist([b - a for _, a, b, _ in client]),
            "simulator_answers_to_stage_has_answer": _dist([r - b for _, _, b, r in client]),
            "requests_matched": len(client),
        },
        "request_events": {
            "mean": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "requests": len(sizes),
        },
        # the same path by the second of the run its record was produced in
        "p99_ms_by_second_produced": {
            second: {
                "produce_to_readable": round(percentile([a for a, _ in v], 99) * 1000, 1),
                "produce_to_answered": round(percentile([b for _, b in v], 99) * 1000, 1),
            }
            for second, v in sorted(by_second.items())
        },
        "produce_to_answered_after_first_2s_ms": _dist(
            [r[4] - r[0] for r in rows if r[0] - first >= 2]
        ),
        "events_traced": len(rows),
    }


def bursts(
    journal: Sequence[Sequence[Any]], latency_s: float, gap_s: float = 0.1
) -> dict[str, Any]:
    """How the simulator answered requests that came together.

    Requests arriving within ``gap_s`` of the previous one form a burst (the 8 lanes' windows,
    opened by the same poll batch, close together). The simulator is one asyncio thread: if it
    answers a burst's k-th request later the larger k is, it works through them one by one.
    """
    rows = sorted((arrived, answered) for _, arrived, answered, _, _ in journal)
    groups: list[list[tuple[float, float]]] = []
    for arrived, answered in rows:
        if groups and arrived - groups[-1][-1][0] <= gap_s:
            groups[-1].append((arrived, answered))
        else:
            groups.append([(arrived, answered)])
    by_rank: dict[int, list[float]] = {}
    for group in groups:
        for rank, (arrived, answered) in enumerate(group):
            by_rank.setdefault(rank, []).append(answered - arrived - latency_s)
    spread = [g[-1][0] - g[0][0] for g in groups]
    return {
        "bursts": len(groups),
        "mean_requests_per_burst": round(len(rows) / len(groups), 2) if groups else None,
        "mean_arrival_spread_ms": round(sum(spread) / len(spread) * 1000, 1) if spread else None,
        # the simulator's time beyond its configured latency, by position in the burst
        "answer_beyond_latency_ms_by_rank": {
            rank: round(sum(v) / len(v) * 1000, 1) for rank, v in sorted(by_rank.items())
        },
        "answer_beyond_latency_ms": _dist(
            [answered - arrived - latency_s for arrived, answered in rows]
        ),
    }


def run(bootstrap: str, *, rate: float, seconds: float, variants: Sequence[str]) -> dict[str, Any]:
    count = int(rate * seconds)
    pairs = enriched_pairs(count, pixel_ids(8))
    raw: Pairs | None = None
    sim = SimProcess(latency_ms=SIM_LATENCY_MS, journal=True).start()
    data: dict[str, Any] = {
        "rate": rate, "seconds_each": seconds, "pixels": 8, "sim_latency_ms": SIM_LATENCY_MS,
        "variants": {},
    }  # fmt: skip
    try:
        for name in variants:
            spec = VARIANTS[name]
            inputs = pairs
            own_rate = spec.get("rate", rate)
            if "normalizer" in spec:
                need = int(own_rate * seconds)
                if raw is None or len(raw) < need:
                    raw = raw_pairs(need, pixel_ids(8))
                inputs = raw[:need]
            result = run_variant(bootstrap, sim, inputs, rate=own_rate, spec=spec)
            result.update(spec)
            data["variants"][name] = result
            seg = result["segments_ms"]
            log(
                f"latency {name}: p99 {result['goal']['measured_ms']:,} ms "
                f"({result['goal']['measure']}); readable "
                f"p99 {seg['produce_to_readable']['p99']}, readable→request "
                f"p99 {seg['readable_to_request_arrived']['p99']}, window "
                f"p99 {result['request_window_ms']['p99']}"
            )
    finally:
        sim.stop()
    data["goal"] = data["variants"]["default"]["goal"] if "default" in data["variants"] else None
    return data
