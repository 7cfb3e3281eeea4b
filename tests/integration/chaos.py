"""Shared machinery of the fault tests that run both stages as processes (cluster and chaos).

A :class:`Supervised` stage is restarted the way ``--workers``, systemd or Kubernetes would
restart it; a :class:`SteadyPublisher` keeps raw events coming at a fixed rate through broker
faults; :func:`outcomes` and the checks below read every topic back and state each invariant of
issue 10 as one assertion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as RdTopicPartition

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.records import Record
from stream.sim import Simulator
from tests.factories import raw_event
from tests.integration.helpers import read_all, start_stage, started_lines, stop_code

#: Raw PII the publisher puts in every event (raw_event's defaults) and forms it may take.
PII = ("john_smith@gmail.com", "John_Smith@Gmail.com", "6505551212", "650) 555-1212", "555-1212")


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             tick: Callable[[], None] | None = None) -> float:  # fmt: skip
    """Wait until ``condition()`` holds (calling ``tick`` between tries); the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        if tick is not None:
            tick()
        time.sleep(0.2)
    return time.monotonic() - began


@dataclass
class Supervised:
    """One stage process, restarted when it exits, as a process supervisor would.

    ``exits`` records every exit the test did not cause (the return code), ``kills`` the
    SIGKILLs the test sent; the log collects every generation's stdout and stderr.
    """

    command: list[str]
    settings: Settings
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)
    _starts_logged: int = 0  # the log's ``started`` lines when the running process began

    def start(self) -> None:
        self._starts_logged = started_lines(self.log)
        self.proc = start_stage(self.command, self.settings, self.log)
        self.starts += 1

    def ensure(self) -> None:
        """Restart the process if it exited by itself (a crash, or a watchdog's exit 3)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.start()

    def kill9(self) -> None:
        """SIGKILL the running process (if it is running) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1
        elif self.proc is not None:
            self.exits.append(self.proc.returncode)
        self.proc = None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the return code (SIGKILL after ``timeout``: then -9)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(30)
        self.proc = None
        return stop_code(rc, self.log, self._starts_logged)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class SteadyPublisher:
    """Produces raw events at ``rate`` per second from a thread until :meth:`finish`.

    Every ``garbage_every``-th record is undecodable bytes (a normalize dead letter). The
    producer is idempotent with unlimited retries, so a broker outage delays records but
    neither loses nor doubles them; :meth:`finish` waits for every acknowledgement.
    """

    def __init__(self, bootstrap: str, topic: str, pixels: tuple[str, ...], *, rate: float,
                 prefix: str, garbage_every: int = 25) -> None:  # fmt: skip
        self._producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
            "message.timeout.ms": 600_000, "log_level": 0,
        })  # fmt: skip
        self._topic = topic
        self._pixels = pixels
        self._rate = rate
        self._prefix = prefix
        self._garbage_every = garbage_every
        self._codec = AvroCodec(schemas.load("conversion_event"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.sent = 0
        self.failed = 0
        self.event_ids: list[str] = []

    def start(self) -> SteadyPublisher:
        self._thread.start()
        return self

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def _run(self) -> None:
        began = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - began) * self._rate)
            while i < due:
                self._produce(i)
                i += 1
            self._producer.poll(0.05)
        self.sent = i

    def _produce(self, i: int) -> None:
        if i % self._garbage_every == 0:
            value = b"\xff\x00garbage " + PII[0].encode()
        else:
            event_id = f"{self._prefix}-{i}"
            self.event_ids.append(event_id)
            value = self._codec.encode(raw_event(
                event_id=event_id, event_time=int(time.time()) - 30,
                pixel_id=self._pixels[i % len(self._pixels)],
            ))  # fmt: skip
        self._producer.produce(self._topic, key=f"k{i}".encode(), value=value,
                               on_delivery=self._on_delivery)  # fmt: skip

    def finish(self, timeout: float = 120.0) -> int:
        """Stop producing and wait until the broker acknowledged everything; the count sent."""
        if self._stop.is_set():
            return self.sent
        self._stop.set()
        self._thread.join(30)
        left = self._producer.flush(timeout)
        assert left == 0, f"{left} records unacknowledged"
        assert self.failed == 0, f"{self.failed} records failed"
        return self.sent


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int] | None:
    """The group's committed offset per partition; None while the coordinator does not answer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        parts = consumer.committed([RdTopicPartition(topic, p) for p in range(partitions)], 5)
        return {p.partition: max(p.offset, 0) for p in parts}
    except KafkaException:
        return None  # a coordinator moving (broker or leader loss) times this call out
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    offsets = committed(bootstrap, group, topic, partitions)
    return -1 if offsets is None else sum(offsets.values())


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The high watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets",
                         "log_level": 0})  # fmt: skip
    try:
        return {p: consumer.get_watermark_offsets(RdTopicPartition(topic, p), 10)[1]
                for p in range(partitions)}  # fmt: skip
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Everything both stages wrote (read_committed), decoded."""

    enriched: list[Record]
    #: (raw partition, raw offset) -> how many outputs (enriched + normalize dead letters)
    sources: Counter[tuple[int, int]]
    #: (enriched partition, offset) -> event_id
    enriched_ids: dict[tuple[int, int], str]
    #: deliver-stage dead letters: event_id -> reason
    deliver_letters: dict[str, str]
    letter_texts: list[str]
    reasons: Counter[tuple[str, str]]


def outcomes(bootstrap: str, names: dict[str, str], raw_count: int) -> Outcomes:
    """Read the enriched and dead-letter topics back and decode every record."""
    enriched_codec = AvroCodec(schemas.load("capi_event"))
    dlq_codec = AvroCodec(schemas.load("dead_letter"))
    enriched = read_all(bootstrap, names["enriched"], idle_s=2.0)
    dead = read_all(bootstrap, names["dlq"], idle_s=2.0)
    sources: Counter[tuple[int, int]] = Counter()
    ids: dict[tuple[int, int], str] = {}
    for rec in enriched:
        value = enriched_codec.decode(rec.value or b"")
        sources[(value["source"]["partition"], value["source"]["offset"])] += 1
        ids[(rec.partition, rec.offset)] = value["event_id"]
    letters: dict[str, str] = {}
    texts: list[str] = []
    reasons: Counter[tuple[str, str]] = Counter()
    for rec in dead:
        letter = dlq_codec.decode(rec.value or b"")
        reasons[(letter["stage"], letter["reason"])] += 1
        if letter["stage"] == "normalize":
            sources[(letter["source"]["partition"], letter["source"]["offset"])] += 1
        else:
            letters[letter["event_id"] or ""] = letter["reason"]
        shown = {k: v for k, v in letter.items() if k not in ("original_value", "original_key")}
        texts.append(json.dumps(shown, default=repr))
        texts.append(repr(rec.headers))
    del raw_count
    return Outcomes(enriched, sources, ids, letters, texts, reasons)


def assert_exactly_once(out: Outcomes, raw_ends: dict[int, int]) -> None:
    """Each raw record (every offset below the end of each partition) has exactly one output."""
    expected = {(p, o) for p, end in raw_ends.items() for o in range(end)}
    doubled = {k: n for k, n in out.sources.items() if n > 1}
    missing = expected - out.sources.keys()
    assert not doubled, f"{len(doubled)} raw records with two outputs, e.g. {list(doubled)[:5]}"
    assert not missing, f"{len(missing)} raw records with no output, e.g. {sorted(missing)[:5]}"
    assert out.sources.keys() == expected


def undelivered(out: Outcomes, sim: Simulator, event_name: str = "Purchase") -> set[str]:
    """Enriched events neither accepted by the simulator nor dead-lettered with a reason."""
    received = sim.stats().received
    return {
        e for e in out.enriched_ids.values()
        if (event_name, e) not in received and not out.deliver_letters.get(e)
    }  # fmt: skip


def data_ends(out: Outcomes, partitions: int) -> dict[int, int]:
    """Per enriched partition, one past the last data record (transaction markers excluded)."""
    ends = dict.fromkeys(range(partitions), 0)
    for p, o in out.enriched_ids:
        ends[p] = max(ends[p], o + 1)
    return ends


def leaks(forbidden: Iterable[str], where: str, texts: Iterable[str]) -> list[str]:
    """Each forbidden string found in ``texts`` (case-insensitively), with some context."""
    secrets = [s for s in forbidden if s]
    found = []
    for text in texts:
        low = text.lower()
        for secret in secrets:
            at = low.find(secret.lower())
            if at >= 0:
                found.append(f"{where}: {secret!r} in …{text[max(0, at - 80) : at + 80]}…")
    return found
