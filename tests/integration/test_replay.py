"""`capi-stream replay` against the real broker: one-off copies and group rewinds."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.kafka.offsets_admin import OffsetsAdmin
from stream.kafka.range_copy import SOURCE_HEADER
from tests.factories import raw_event
from tests.integration.helpers import (
    enriched_value,
    produce,
    run_cli,
    stage_settings,
    topic_records,
)

pytestmark = pytest.mark.integration

EIGHT_DAYS_S = 8 * 86_400


def _settings(bootstrap: str, unique: Callable[[str], str]) -> Settings:
    names = {"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
             "normalizer_group": unique("norm"), "deliverer_group": unique("deliv")}  # fmt: skip
    return stage_settings(bootstrap, names)


def test_oneoff_copies_sendable_events_of_one_pixel_with_provenance(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Copies of P1's fresh events go back on the topic; expired and P2's are only counted."""
    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=2)
    now = time.time()
    start = int(now) - 2
    fresh = [(f"p1-{i}".encode(), enriched_value(f"p1-{i}", "P1", now)) for i in range(4)]
    others = [(f"p2-{i}".encode(), enriched_value(f"p2-{i}", "P2", now)) for i in range(2)]
    stale = [(f"old-{i}".encode(), enriched_value(f"old-{i}", "P1", now - EIGHT_DAYS_S))
             for i in range(2)]  # fmt: skip
    produce(kafka_bootstrap, topic, [*fresh, *others, *stale])

    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--from", str(start),
                "--pixel", "P1", "--no-progress")  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 0, err
    assert "copied 4 records" in out
    assert "skipped 2 past Meta's age limit, 2 of other pixels" in out
    records = topic_records(settings, topic)
    copies = [r for r in records if any(k == SOURCE_HEADER for k, _ in r.headers)]
    assert len(records) == 12
    assert sorted((c.key, c.value) for c in copies) == sorted(fresh)
    for copy in copies:
        source = dict(copy.headers)[SOURCE_HEADER] or b""
        assert source.decode().startswith(f"{topic}[")
        original = next(r for r in records if f"[{r.partition}]@{r.offset}".encode() in source)
        assert (original.key, original.value) == (copy.key, copy.value)


def test_oneoff_dry_run_by_offsets_counts_and_copies_nothing(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--offsets 1-3 --dry-run reports three copies for partition 0 and writes nothing."""
    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=1)
    now = time.time()
    produce(kafka_bootstrap, topic, [(None, enriched_value(f"e-{i}", "P1", now)) for i in range(5)])

    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--partition", "0",
                "--offsets", "1-3", "--dry-run", "--no-progress")  # fmt: skip
    out, _ = capsys.readouterr()

    assert code == 0
    assert out.splitlines()[0] == f"{topic}[0] offsets 1..3: 3 would be copied"
    assert out.splitlines()[1].startswith(f"would copy 3 records onto {topic}; would skip 0 past")
    assert OffsetsAdmin(settings).bounds(topic, [0]) == {0: (0, 5)}


def _produce_written_at(bootstrap: str, topic: str, items: list[tuple[bytes, int]]) -> None:
    """Produce (value, write time in ms) pairs: records as if written at those times."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value, written_ms in items:
        producer.produce(topic, value=value, timestamp=written_ms)
    assert producer.flush(30) == 0


def test_the_dedup_warning_names_the_oldest_copied_record(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Records written 3 days ago warn once, naming their age; Meta's 48 hours are the reason."""
    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=1)
    now = time.time()
    three_days_ago_ms = int((now - 3 * 86_400) * 1000)
    _produce_written_at(kafka_bootstrap, topic, [
        (enriched_value("old-1", "P1", now), three_days_ago_ms),
        (enriched_value("new-1", "P1", now), int(now * 1000)),
    ])  # fmt: skip

    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--from", "4d",
                   "--dry-run", "--no-progress")  # fmt: skip
    err = capsys.readouterr().err

    assert code == 0
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: the oldest record that would be copied was written "
                              "3 days ago")  # fmt: skip
    assert "48 hours" in warning


def test_a_range_of_recent_records_gets_no_dedup_warning(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--from 3d over records written now: the range starts early, but nothing copied is old."""
    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=1)
    produce(kafka_bootstrap, topic, [(None, enriched_value("e-1", "P1", time.time()))])

    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--from", "3d",
                   "--no-progress")  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 0
    assert "copied 1 record onto" in out  # singular
    assert "warning" not in err


def test_a_bad_from_lists_the_accepted_forms(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--from yesterday exits 2 with one line naming the option and every accepted form."""
    settings = _settings(kafka_bootstrap, unique)
    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--from", "yesterday")
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith("capi-stream replay: --from 'yesterday' is not a time; give ISO 8601")
    assert "Unix seconds" in line
    assert "a time ago (90m, 36h, 2d)" in line


def test_progress_counts_records_and_ends_at_100_percent_over_transaction_markers(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three one-record transactions take six offsets: the bar ends at 100 % with 3 records."""
    from confluent_kafka import Producer

    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": unique("txn")})  # fmt: skip
    producer.init_transactions(30)
    for i in range(3):
        producer.begin_transaction()
        producer.produce(topic, value=enriched_value(f"t-{i}", "P1", time.time()))
        producer.commit_transaction(30)

    code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--partition", "0",
                   "--offsets", "0-", "--dry-run")  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 0
    assert f"{topic}[0] offsets 0..5: 3 would be copied" in out
    last = [line for line in err.splitlines() if line.startswith("replay")][-1]
    assert "100%" in last
    assert "3 records" in last


def _raw_topic_with_group_at_end(settings: Settings, bootstrap: str) -> None:
    """Raw topic: 2 expired events, then 3 fresh ones; the normalizer group committed at 5."""
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    events = [raw_event(event_id=f"old-{i}", event_time=now - EIGHT_DAYS_S) for i in range(2)]
    events += [raw_event(event_id=f"new-{i}", event_time=now) for i in range(3)]
    produce(bootstrap, settings.topics.raw, [(None, codec.encode(e)) for e in events])
    OffsetsAdmin(settings).move_group(settings.normalizer.group_id, settings.topics.raw, {0: 5})


def test_group_mode_rewinds_to_the_first_sendable_event(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stopped normalizer's group moves back past the expired events that lead the range."""
    settings = _settings(kafka_bootstrap, unique)
    make_topics(settings.topics.raw, partitions=1)
    _raw_topic_with_group_at_end(settings, kafka_bootstrap)

    code = run_cli(monkeypatch, settings, "replay", "--stage", "normalize", "--mode", "group",
                "--partition", "0", "--offsets", "0-", "--no-progress")  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 0, err
    assert f"{settings.topics.raw}[0]: 5 -> 2" in out
    assert "2 expired" in out
    admin = OffsetsAdmin(settings)
    assert admin.committed(settings.normalizer.group_id, settings.topics.raw, [0]) == {0: 2}


def test_group_mode_dry_run_moves_nothing(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run prints the move per partition and leaves the committed offset alone."""
    settings = _settings(kafka_bootstrap, unique)
    make_topics(settings.topics.raw, partitions=1)
    _raw_topic_with_group_at_end(settings, kafka_bootstrap)

    code = run_cli(monkeypatch, settings, "replay", "--stage", "normalize", "--mode", "group",
                "--from", str(int(time.time()) - 60), "--dry-run", "--no-progress")  # fmt: skip

    assert code == 0
    assert "would move group" in capsys.readouterr().out
    admin = OffsetsAdmin(settings)
    assert admin.committed(settings.normalizer.group_id, settings.topics.raw, [0]) == {0: 5}


def test_group_mode_refuses_while_the_stage_runs(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a member in the deliverer group, group mode exits 1 and names the members."""
    settings = _settings(kafka_bootstrap, unique)
    topic = settings.topics.enriched
    make_topics(topic, partitions=1)
    member = Consumer(dict(settings.consumer_config(settings.deliverer.group_id)))
    member.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the member never joined"
        code = run_cli(monkeypatch, settings, "replay", "--stage", "deliver", "--mode", "group",
                    "--from", "1h", "--no-progress")  # fmt: skip
    finally:
        member.close()
    assert code == 1
    assert "has 1 active member (" in capsys.readouterr().err
