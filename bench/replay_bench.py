"""``capi-stream replay --mode oneoff`` beside a hand-written copy loop, in the same run.

    .venv/bin/python -m bench.replay_bench              # 50,000 records, 5 rounds
    .venv/bin/python -m bench.replay_bench --quick      # 20,000 records, 3 rounds

The baseline is the loop anyone would write first: confluent-kafka consume (batches of 500) →
produce each record again with a provenance header, idempotent, ``acks=all``, the producer
settings the tool uses. The tool does more per record: it reads each event's time (and, when
the time alone does not decide, its source) to skip events past Meta's age limit, counts
outcomes per partition and tracks the oldest copied record for its 48-hour warning. Both read
the same range of the same topic of realistic raw events; the rounds alternate (hand-written,
tool, tool, hand-written, …) so a noisy neighbour slows both alike. The tool runs in this process
through its CLI entry, settings from ``CAPI_STREAM_*`` variables as a user gives them; each side
writes to its own topic, and the first round's copies of both are compared with the source.

Writes ``bench/results/replay.json`` (``quick/replay.json`` with ``--quick``). Goal: the tool's
median rate ≥ 0.8x the loop's. ``KAFKA_BOOTSTRAP`` uses an existing broker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from bench import common
from bench.common import alternating_pair, create_topics, log, unique

GOAL = 0.8
SOURCE_HEADER = "capi.replay.source"


def producer_config(bootstrap: str) -> dict[str, Any]:
    """The tools' own producer settings (idempotent, ``acks=all``, linger, lz4), no logger."""
    from stream.config import Settings

    config = Settings(bootstrap_servers=bootstrap).producer_config()
    return {k: v for k, v in config.items() if k != "logger"}


def fill_raw_topic(bootstrap: str, topic: str, rows: int, now: int) -> None:
    """``rows`` raw events (2,000 distinct, realistic, of the last two days) on partition 0."""
    from stream import schemas
    from stream.core.codec import AvroCodec

    codec = AvroCodec(schemas.load("conversion_event"))
    events = common.raw_events(2_000, seed=7, now=now, pixels=common.pixel_ids(4))
    values = [codec.encode(e) for e in events]
    create_topics(bootstrap, [topic], 1)
    common.produce(bootstrap, topic, ((b"k%d" % i, values[i % len(values)]) for i in range(rows)))


def hand_copy(bootstrap: str, source: str, target: str, records: int) -> int:
    """The baseline: consume ``records`` records and produce each with a provenance header."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("copy"),
                         "enable.auto.commit": False})  # fmt: skip
    producer = Producer(producer_config(bootstrap))
    consumer.assign([TopicPartition(source, 0, 0)])  # as the tool does: no group to join
    copied = 0
    try:
        while copied < records:
            for msg in consumer.consume(500, 0.1):
                if msg.error():
                    continue
                where = f"{source}[{msg.partition()}]@{msg.offset()}".encode()
                headers = [*(msg.headers() or ()), (SOURCE_HEADER, where)]
                while True:
                    try:
                        producer.produce(target, msg.value(), msg.key(), headers=headers)
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
                copied += 1
                if copied == records:
                    break
    finally:
        consumer.close()
    if producer.flush(120):
        raise RuntimeError("the copy loop left records unacknowledged")
    return copied


@contextlib.contextmanager
def tool_env(bootstrap: str, **topics: str) -> Iterator[None]:
    """The tool's settings as a user gives them: ``CAPI_STREAM_*`` variables."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CAPI_STREAM_")}
    for k in saved:
        del os.environ[k]
    os.environ["CAPI_STREAM_BOOTSTRAP_SERVERS"] = bootstrap
    os.environ["CAPI_STREAM_TOPICS"] = orjson.dumps(topics).decode()
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("CAPI_STREAM_")]:
            del os.environ[k]
        os.environ.update(saved)


def cli(*argv: str) -> str:
    """``capi-stream ARGV --no-progress`` in this process; its standard output."""
    from stream.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--no-progress"])
    if code != 0:
        raise RuntimeError(f"capi-stream {' '.join(argv)} exited {code}")
    return out.getvalue()


def records(bootstrap: str, topic: str, start: int, count: int) -> list[tuple[Any, ...]]:
    """``(key, value, headers)`` of ``count`` records of partition 0 from ``start``."""
    from stream.config import Settings
    from stream.kafka.range_reader import read_ranges

    settings = Settings(bootstrap_servers=bootstrap)
    found = read_ranges(settings, topic, {0: (start, start + count)})
    return [(r.key, r.value, r.headers) for r in found]


def pair(
    name: str, rounds: int, hand: Callable[[], int], tool: Callable[[], int]
) -> dict[str, Any]:
    """Alternating rounds of both sides against this module's goal (records)."""
    return alternating_pair(name, rounds, hand, tool, goal=GOAL)


def run(bootstrap: str, *, rows: int = 50_000, rounds: int = 5) -> dict[str, Any]:
    """The replay pair; the JSON result."""
    source = unique("replay-src")
    fill_raw_topic(bootstrap, source, rows, int(time.time()))
    hand_copy(bootstrap, source, unique("warm"), min(rows, 2_000))  # the broker's coordinators
    hand_topics: list[str] = []

    def hand() -> int:
        target = unique("replay-hand")
        create_topics(bootstrap, [target], 1)
        hand_topics.append(target)
        return hand_copy(bootstrap, source, target, rows)

    def tool() -> int:
        # replay copies onto its own input; every round replays the same range [0, rows)
        with tool_env(bootstrap, raw=source, dlq=unique("unused-dlq")):
            out = cli("replay", "--stage", "normalize", "--partition", "0",
                      "--offsets", f"0-{rows - 1}")  # fmt: skip
        if f"copied {rows:,} records" not in out.replace(f"{rows} ", f"{rows:,} "):
            raise RuntimeError(f"replay did not copy every record: {out}")
        return rows

    # the tool runs in this process: its first run would also time the imports of the package
    with tool_env(bootstrap, raw=source, dlq=unique("unused-dlq")):
        cli("replay", "--stage", "normalize", "--partition", "0", "--offsets", "0-99", "--dry-run")
    result: dict[str, Any] = {"rows": rows, "rounds": rounds}
    result["replay"] = pair("replay", rounds, hand, tool)
    sample = min(rows, 2_000)
    original = [(k, v) for k, v, _ in records(bootstrap, source, 0, sample)]
    by_tool = records(bootstrap, source, rows, sample)  # the first round's copies
    by_hand = records(bootstrap, hand_topics[0], 0, sample)
    same = original == [(k, v) for k, v, _ in by_tool] == [(k, v) for k, v, _ in by_hand]
    named = all(dict(h)[SOURCE_HEADER] == f"{source}[0]@{i}".encode()
                for i, (_, _, h) in enumerate(by_tool))  # fmt: skip
    result["replay"]["copies_identical"] = same and named
    if not (same and named):
        raise RuntimeError("the copies differ from the source records or lack their header")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_bench",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="20,000 records, 3 rounds")
    args = parser.parse_args(argv)
    from stream.logs import configure

    configure("warning", "json")
    if args.quick:
        common.RESULTS = common.RESULTS / "quick"
    with common.kafka_broker() as bootstrap:
        plan = {"rows": 20_000, "rounds": 3} if args.quick else {}
        data = run(bootstrap, **plan)
    data["quick"] = args.quick
    log(f"wrote {common.write_result('replay', data)}")
    r = data["replay"]
    print(f"replay --mode oneoff: {r['median_ratio']:.2f}x the hand-written loop "
          f"(by CPU {r['median_cpu_ratio']:.2f}x; goal {GOAL}x "
          f"{'met' if r['goal']['met'] else 'missed'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
