"""``capi-stream publish`` beside a hand-written loop, in the same run, against the same broker.

The pair runs in alternating rounds (hand-written, tool, hand-written, …) so a noisy neighbour
slows both sides alike; every figure is a median and the goal a ratio (≥ 0.8x). Replay and
dlq republish have their own pairs (``bench/replay_bench.py``, ``bench/dlq_bench.py``).

The loop reads the same CSV of Meta's offline-events columns, builds the raw schema's dict,
encodes it with fastavro and produces it idempotently (``acks=all``, the same producer
settings). The first records of both topics are compared byte for byte, so the loop cannot win
by doing less.

The tool runs in this process through its CLI entry (``stream.cli.main``), settings from the
environment as a user would give them; each round writes to fresh topics.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench import common
from bench.common import (
    CURRENCIES,
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    alternating_pair,
    create_topics,
    log,
    unique,
)

#: Meta's offline-events upload columns (its template repeats ``email`` and ``phone``).
OFFLINE_COLUMNS = (
    "event_id", "email", "email", "phone", "phone", "fn", "ln", "zip", "ct", "st", "country",
    "dob", "gen", "extern_id", "event_name", "event_time", "value", "currency", "order_id",
)  # fmt: skip
_CITIES = (
    ("Menlo Park", "CA", "94025"), ("Austin", "TX", "73301"), ("Paris", "", "75001"),
    ("Berlin", "", "10115"), ("Seattle", "WA", "98101"), ("London", "", "SW1A 1AA"),
)  # fmt: skip
_COUNTRY = {"CA": "US", "TX": "US", "WA": "US", "75001": "FR", "10115": "DE", "SW1A 1AA": "GB"}
GOAL = 0.8


def write_offline_csv(path: Path, rows: int, seed: int, now: int) -> None:
    """``rows`` offline purchases; about a third of customers come back (same e-mail, phone)."""
    r = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(OFFLINE_COLUMNS)
        for i in range(rows):
            who = r.randrange(rows * 2 // 3 + 1)  # a returning customer now and then
            first, last = FIRST_NAMES[who % len(FIRST_NAMES)], LAST_NAMES[who % len(LAST_NAMES)]
            email = f"{common._ascii(first)}.{common._ascii(last)}.{who}@{DOMAINS[who % 10]}"
            second = f"{common._ascii(last)}{who}@{DOMAINS[(who + 3) % 10]}" if i % 3 else ""
            city, state, zip_code = _CITIES[who % len(_CITIES)]
            country = _COUNTRY.get(state or zip_code, "US")
            phone = common._phone(random.Random(who), who)
            writer.writerow((
                f"offline-{seed}-{i}", email, second, phone, "" if i % 4 else phone[::-1][:10],
                first, last, zip_code, city, state, country,
                f"{1950 + who % 50}-{1 + who % 12:02d}-{1 + who % 28:02d}", "fm"[who % 2],
                f"crm-{who}", "Purchase", str(now - r.randrange(2 * 86_400)),
                f"{r.randrange(100, 100_000) / 100:.2f}", r.choice(CURRENCIES), f"order-{i}",
            ))  # fmt: skip


def hand_publish(topic: str, path: Path, producer_config: dict[str, Any]) -> int:
    """The ten-line loop: csv → the raw schema's dict → fastavro → idempotent produce."""
    import fastavro
    from confluent_kafka import Producer

    from stream import schemas

    schema, producer, count = fastavro.parse_schema(schemas.load("conversion_event")), None, 0
    producer = Producer(producer_config)
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)
        for c in rows:
            ud = {"em": [v for v in c[1:3] if v], "ph": [v for v in c[3:5] if v],
                  "fn": [c[5]], "ln": [c[6]], "zp": [c[7]], "ct": [c[8]],
                  "st": [c[9]] if c[9] else [], "country": [c[10]], "db": [c[11]],
                  "ge": [c[12]], "external_id": [c[13]]}  # fmt: skip
            custom = {"value": float(c[16]), "currency": c[17], "order_id": c[18]}
            event = {"event_id": c[0], "event_name": c[14], "event_time": int(c[15]),
                     "action_source": "physical_store", "user_data": ud,
                     "custom_data": custom}  # fmt: skip
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, event)
            while True:
                try:
                    producer.produce(topic, buf.getvalue(), c[0].encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            count += 1
    if producer.flush(120):
        raise RuntimeError("the hand-written loop left records unacknowledged")
    return count


@contextlib.contextmanager
def _env(bootstrap: str, raw: str, dlq: str) -> Iterator[None]:
    """The tool's settings as a user gives them: ``CAPI_STREAM_*`` variables."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CAPI_STREAM_")}
    for k in saved:
        del os.environ[k]
    os.environ["CAPI_STREAM_BOOTSTRAP_SERVERS"] = bootstrap
    os.environ["CAPI_STREAM_TOPICS"] = orjson.dumps({"raw": raw, "dlq": dlq}).decode()
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("CAPI_STREAM_")]:
            del os.environ[k]
        os.environ.update(saved)


def _cli(*argv: str) -> None:
    from stream.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, "--no-progress"])
    if code != 0:
        raise RuntimeError(f"capi-stream {' '.join(argv)} exited {code}")


def _values(bootstrap: str, topic: str, n: int) -> list[tuple[bytes | None, bytes | None]]:
    from stream.config import Settings
    from stream.kafka.range_reader import read_ranges

    settings = Settings(bootstrap_servers=bootstrap)
    return [(r.key, r.value) for r in read_ranges(settings, topic, {0: (0, n)})]


def run(bootstrap: str, *, rows: int = 50_000, rounds: int = 3) -> dict[str, Any]:
    """All three pairs; the JSON result (ratios, rates, the check that both sides agree)."""
    import tempfile
    import time

    from stream.config import Settings

    now = int(time.time())
    path = Path(tempfile.mkdtemp(prefix="capi-bench-publish-")) / "offline.csv"
    write_offline_csv(path, rows, seed=11, now=now)
    log(f"publish bench: {rows:,} CSV rows, {path.stat().st_size / 1e6:.1f} MB")
    producer_config = {k: v for k, v in Settings(bootstrap_servers=bootstrap).producer_config()
                       .items() if k != "logger"}  # fmt: skip
    made: defaultdict[str, list[str]] = defaultdict(list)

    def fresh(side: str) -> str:
        topic = unique(f"publish-{side}")
        create_topics(bootstrap, [topic], 1)
        made[side].append(topic)
        return topic

    def tool_publish() -> int:
        topic = fresh("tool")
        with _env(bootstrap, topic, unique("unused-dlq")):
            _cli("publish", str(path), "--key", "event_id")
        return rows

    def hand() -> int:
        return hand_publish(fresh("hand"), path, producer_config)

    results: dict[str, Any] = {"rows": rows, "rounds": rounds}
    # a fresh broker first loads its coordinators: warm it up outside the measured rounds
    warm = path.with_name("warm.csv")
    write_offline_csv(warm, 500, seed=12, now=now)
    hand_publish(fresh("warm"), warm, producer_config)
    results["publish"] = alternating_pair(
        "publish", rounds, hand, tool_publish, goal=GOAL, unit="rows"
    )
    sample = min(rows, 2_000)
    hand_values = _values(bootstrap, made["hand"][0], sample)
    same = hand_values == _values(bootstrap, made["tool"][0], sample)
    results["publish"]["first_records_identical"] = same
    if not same:
        raise RuntimeError("the hand-written loop and capi-stream publish wrote different records")

    return results
