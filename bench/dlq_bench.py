"""``capi-stream dlq republish`` beside a hand-written republish loop, in the same run.

    .venv/bin/python -m bench.dlq_bench                 # 50,000 dead letters, 5 rounds
    .venv/bin/python -m bench.dlq_bench --quick         # 20,000 dead letters, 3 rounds

The dead-letter topic holds one normalize-stage letter per raw event (reason
``missing_pixel_id``: the fix is a default pixel, after which the same bytes pass), with the
record headers the stage writes. The baseline reads each letter, decodes it with fastavro and
produces its original with the original headers and the four ``capi.dlq.*`` provenance headers,
idempotent, ``acks=all``, the producer settings the tool uses. The tool also checks the stage,
reason, truncation and each event's age (Meta's limit) and counts outcomes. Rounds alternate;
each writes to a fresh topic; the first round's outputs of both are compared.

Writes ``bench/results/dlq.json`` (``quick/dlq.json`` with ``--quick``). Goal: the tool's median
rate ≥ 0.8x the loop's. ``KAFKA_BOOTSTRAP`` uses an existing broker.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterator
from typing import Any

from bench import common
from bench.common import create_topics, log, unique
from bench.replay_bench import GOAL, cli, fill_raw_topic, pair, producer_config, records, tool_env

REASON = "missing_pixel_id"


def fill_dlq(bootstrap: str, source: str, dlq: str, rows: int) -> None:
    """One normalize-stage dead letter per record of ``source``, as the stage writes it."""
    from confluent_kafka import Producer

    from stream import schemas
    from stream.config import Settings
    from stream.core.codec import AvroCodec
    from stream.core.dead_letter import dead_letter, dead_letter_headers
    from stream.kafka.range_reader import read_ranges

    codec, now_ms = AvroCodec(schemas.load("dead_letter")), int(time.time() * 1000)
    create_topics(bootstrap, [dlq], 1)
    producer = Producer(producer_config(bootstrap))

    def letters() -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        settings = Settings(bootstrap_servers=bootstrap)
        for record in read_ranges(settings, source, {0: (0, rows)}):
            why = "no pixel_id and no default pixel"
            letter = dead_letter(stage="normalize", reason=REASON, record=record,
                                 now_ms=now_ms, message=why)  # fmt: skip
            yield record.key, codec.encode(letter), dead_letter_headers(letter)

    for n, (key, value, headers) in enumerate(letters()):
        while True:
            try:
                producer.produce(dlq, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"{dlq}: some letters were not acknowledged")


def hand_republish(bootstrap: str, dlq: str, target: str, count: int) -> int:
    """The baseline: decode each letter and produce its original with provenance headers."""
    import fastavro
    from confluent_kafka import Consumer, Producer, TopicPartition

    from stream import schemas

    schema = fastavro.parse_schema(schemas.load("dead_letter"))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("republish"),
                         "enable.auto.commit": False})  # fmt: skip
    producer = Producer(producer_config(bootstrap))
    consumer.assign([TopicPartition(dlq, 0, 0)])
    done = 0
    try:
        while done < count:
            for msg in consumer.consume(500, 0.1):
                if msg.error():
                    continue
                letter: Any = fastavro.schemaless_reader(io.BytesIO(msg.value()), schema, None)
                src = letter["source"]
                headers = [(h["key"], h["value"]) for h in letter["headers"]]
                headers += [
                    ("capi.dlq.reason", letter["reason"].encode()),
                    ("capi.dlq.source", f"{dlq}[{msg.partition()}]@{msg.offset()}".encode()),
                    ("capi.dlq.original",
                     f"{src['topic']}[{src['partition']}]@{src['offset']}".encode()),
                    ("capi.dlq.attempts", b"%d" % letter["attempts"]),
                ]  # fmt: skip
                while True:
                    try:
                        producer.produce(target, letter["original_value"],
                                         letter["original_key"], headers=headers)  # fmt: skip
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
                done += 1
                if done == count:
                    break
    finally:
        consumer.close()
    if producer.flush(120):
        raise RuntimeError("the republish loop left records unacknowledged")
    return done


def run(bootstrap: str, *, rows: int = 50_000, rounds: int = 5) -> dict[str, Any]:
    """The dlq republish pair; the JSON result."""
    source, dlq = unique("dlq-src"), unique("dlq")
    fill_raw_topic(bootstrap, source, rows, int(time.time()))
    fill_dlq(bootstrap, source, dlq, rows)
    hand_republish(bootstrap, dlq, unique("warm"), min(rows, 2_000))
    targets: dict[str, list[str]] = {"hand": [], "tool": []}

    def fresh(side: str) -> str:
        topic = unique(f"republish-{side}")
        create_topics(bootstrap, [topic], 1)
        targets[side].append(topic)
        return topic

    def hand() -> int:
        return hand_republish(bootstrap, dlq, fresh("hand"), rows)

    def tool() -> int:
        with tool_env(bootstrap, raw=fresh("tool"), dlq=dlq):
            out = cli("dlq", "republish", "--to", "raw", "--reason", REASON)
        if f"republished {rows:,} dead letters" not in out.replace(f"{rows} ", f"{rows:,} "):
            raise RuntimeError(f"dlq republish did not republish every letter: {out}")
        return rows

    # the tool runs in this process: its first run would also time the imports of the package
    warm = unique("unused-raw")  # republish checks its target topic exists before reading
    create_topics(bootstrap, [warm], 1)
    with tool_env(bootstrap, raw=warm, dlq=dlq):
        cli("dlq", "republish", "--to", "raw", "--reason", REASON, "--limit", "100", "--dry-run")
    result: dict[str, Any] = {"rows": rows, "rounds": rounds, "reason": REASON}
    result["dlq_republish"] = pair("dlq republish", rounds, hand, tool)
    sample = min(rows, 2_000)
    by_hand = records(bootstrap, targets["hand"][0], 0, sample)
    by_tool = records(bootstrap, targets["tool"][0], 0, sample)
    original = [(k, v) for k, v, _ in records(bootstrap, source, 0, sample)]
    same = original == [(k, v) for k, v, _ in by_tool] == [(k, v) for k, v, _ in by_hand]
    same_headers = [h for _, _, h in by_tool] == [h for _, _, h in by_hand]
    result["dlq_republish"]["outputs_identical"] = same and same_headers
    if not (same and same_headers):
        raise RuntimeError("the tool's and the loop's republished records differ")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlq_bench",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="20,000 letters, 3 rounds")
    args = parser.parse_args(argv)
    from stream.logs import configure

    configure("warning", "json")
    if args.quick:
        common.RESULTS = common.RESULTS / "quick"
    with common.kafka_broker() as bootstrap:
        plan = {"rows": 20_000, "rounds": 3} if args.quick else {}
        data = run(bootstrap, **plan)
    data["quick"] = args.quick
    log(f"wrote {common.write_result('dlq', data)}")
    r = data["dlq_republish"]
    print(f"dlq republish: {r['median_ratio']:.2f}x the hand-written loop "
          f"(by CPU {r['median_cpu_ratio']:.2f}x; goal {GOAL}x "
          f"{'met' if r['goal']['met'] else 'missed'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
