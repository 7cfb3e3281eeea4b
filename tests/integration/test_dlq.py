"""`capi-stream dlq` against the real broker: summary, show (hashes only) and republish."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.dead_letter import MetaErrorFields, dead_letter, dead_letter_headers
from stream.core.records import Record
from tests.factories import raw_event
from tests.integration.helpers import (
    enriched_value,
    run_cli,
    stage_settings,
    topic_records,
)

pytestmark = pytest.mark.integration

EMAIL = "Secret.Person@Example.com"
HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def settings(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> Settings:
    """Settings whose dead-letter topic holds five letters of two stages, as the stages write."""
    names = {"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
             "normalizer_group": unique("norm"), "deliverer_group": unique("deliv")}  # fmt: skip
    s = stage_settings(kafka_bootstrap, names)
    make_topics(s.topics.raw, s.topics.enriched, s.topics.dlq, partitions=1)
    now = time.time()
    raw = AvroCodec(schemas.load("conversion_event"))
    user_data = raw_event()["user_data"] | {"em": [EMAIL]}
    letters: list[tuple[Record, dict[str, Any]]] = []

    def add(stage: Any, reason: str, topic: str, key: bytes, value: bytes, **extra: Any) -> None:
        record = Record(topic, 0, len(letters), key, value, (("capi.pixel_id", b"P2"),)
                        if stage == "deliver" else (("trace", b"t-1"),))  # fmt: skip
        letter = dead_letter(stage=stage, reason=reason, message="m", record=record,
                             now_ms=int(now * 1000), **extra)  # fmt: skip
        letters.append((record, letter))

    for i in range(2):
        event = raw_event(event_id=f"n-{i}", event_time=int(now), user_data=user_data)
        add("normalize", "purchase_without_currency", s.topics.raw, f"n-{i}".encode(),
            raw.encode(event), pixel_id="P1", event_id=f"n-{i}")  # fmt: skip
    add("normalize", "decode_corrupt", s.topics.raw, b"c-1", b"\x00\x01")
    meta = MetaErrorFields(code=100, message="Invalid parameter")
    add("deliver", "rejected_by_meta", s.topics.enriched, b"d-1",
        enriched_value("d-1", "P2", now, user_data=user_data), event_id="d-1",
        event_name="Purchase", meta_error=meta)  # fmt: skip
    add("deliver", "expired", s.topics.enriched, b"d-2",
        enriched_value("d-2", "P2", now - 8 * 86_400))  # fmt: skip
    codec = AvroCodec(schemas.load("dead_letter"))
    from confluent_kafka import Producer

    producer = Producer(dict(s.producer_config()))
    for record, letter in letters:
        producer.produce(s.topics.dlq, key=record.key, value=codec.encode(letter),
                         headers=dead_letter_headers(letter))  # fmt: skip
    assert producer.flush(30) == 0
    return s


def test_summary_counts_by_stage_reason_and_pixel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counts group by stage, reason and pixel; deliver letters get the pixel of their event."""
    code = run_cli(monkeypatch, settings, "dlq", "summary", "--json", "--no-progress")
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["total"] == 5
    groups = {(g["stage"], g["reason"], g["pixel_id"]): g["count"] for g in summary["groups"]}
    assert groups == {
        ("normalize", "purchase_without_currency", "P1"): 2,
        ("normalize", "decode_corrupt", "-"): 1,
        ("deliver", "rejected_by_meta", "P2"): 1,
        ("deliver", "expired", "P2"): 1,
    }


def test_show_prints_hashes_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw originals show as length and SHA-256; enriched ones show hashed user data only."""
    code = run_cli(monkeypatch, settings, "dlq", "show", "--json", "--no-progress")
    out = capsys.readouterr().out
    shown = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert len(shown) == 5
    assert EMAIL.lower() not in out.lower()
    assert "203.0.113.7" not in out  # client_ip_address: personal data, never hashed
    by_reason = {s["reason"]: s for s in shown}
    original = by_reason["purchase_without_currency"]["original_value"]
    assert set(original) == {"bytes", "sha256"}
    user_data = by_reason["rejected_by_meta"]["original_value"]["event"]["user_data"]
    assert all(HEX64.fullmatch(v) for v in user_data["em"])
    assert user_data["client_ip_address"] == "<redacted>"
    assert by_reason["purchase_without_currency"]["headers"] == {"trace": "<3 bytes>"}
    assert all(set(s["original_key"]) == {"bytes", "sha256"} for s in shown)  # keys may be PII


def test_show_unsafe_raw_reveals_the_original_event(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--unsafe-show-raw decodes a normalize-stage original, customer data included."""
    code = run_cli(monkeypatch, settings, "dlq", "show", "--reason", "purchase_without_currency",
                "--limit", "1", "--json", "--unsafe-show-raw", "--no-progress")  # fmt: skip
    [line] = capsys.readouterr().out.splitlines()
    assert code == 0
    assert json.loads(line)["original_value"]["user_data"]["em"] == [EMAIL]
    assert json.loads(line)["original_key"] == "n-0"


def test_republish_to_raw_keeps_bytes_and_adds_provenance(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chosen normalize-stage letters go back to raw byte for byte, with capi.dlq headers."""
    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw",
                "--reason", "purchase_without_currency", "--force", "--no-progress")  # fmt: skip
    assert code == 0
    assert "republished 2 dead letters" in capsys.readouterr().out
    letters = {r.key: r for r in topic_records(settings, settings.topics.dlq)}
    codec = AvroCodec(schemas.load("dead_letter"))
    for record in topic_records(settings, settings.topics.raw):
        headers = dict(record.headers)
        dead = letters[record.key]
        assert record.value == codec.decode(dead.value or b"")["original_value"]
        assert headers["capi.dlq.reason"] == b"purchase_without_currency"
        assert headers["capi.dlq.source"] == f"{dead.topic}[0]@{dead.offset}".encode()
        original = f"{settings.topics.raw}[0]@{int(record.key[2:])}"  # as the fixture numbered
        assert headers["capi.dlq.original"] == original.encode()
        assert headers["capi.dlq.attempts"] == b"1"
        assert headers["trace"] == b"t-1"


def test_republish_skips_expired_events(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An enriched event past Meta's age limit is counted and not republished."""
    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "enriched", "--reason",
                "expired", "--reason", "rejected_by_meta", "--force", "--no-progress")  # fmt: skip
    assert code == 0
    assert "republished 1 dead letter to" in capsys.readouterr().out
    [record] = topic_records(settings, settings.topics.enriched)
    assert record.key == b"d-1"


def test_republish_needs_a_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Republishing every dead letter is refused: --reason chooses what was fixed."""
    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw", "--dry-run")
    assert code == 2
    assert "--reason" in capsys.readouterr().err


def test_republishing_a_data_error_needs_force(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reason in the event's own data would fail again: exit 2, nothing published."""
    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw",
                   "--reason", "purchase_without_currency", "--no-progress")  # fmt: skip
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith("capi-stream dlq republish: purchase_without_currency is an error in "
                           "the events' own data")  # fmt: skip
    assert "--force" in line
    assert topic_records(settings, settings.topics.raw) == []


def test_republish_to_a_topic_that_does_not_exist_is_one_line_exit_2(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target topic is checked before any letter is read: one line naming it and
    ``capi-stream topics create``, exit 2 (not a delivery error per letter)."""
    missing = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"raw": settings.topics.raw + "-gone"})}
    )
    code = run_cli(monkeypatch, missing, "dlq", "republish", "--to", "raw",
                   "--reason", "decode_corrupt", "--no-progress")  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        f"capi-stream: topic {missing.topics.raw} does not exist: create it with "
        "`capi-stream topics create`"
    ]


def test_an_unknown_reason_lists_the_known_ones(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in --reason exits 2 and names every reason the stages write."""
    code = run_cli(monkeypatch, settings, "dlq", "summary", "--reason", "purchase_no_currency")
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith("capi-stream dlq summary: unknown reason purchase_no_currency; the "
                           "reasons are: ")  # fmt: skip
    for known in ("purchase_without_currency", "rejected_by_meta", "decode_corrupt", "expired"):
        assert known in line


def test_summary_counts_distinct_events_beside_letters(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Republished letters that fail again are more letters of the same events."""
    run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw", "--reason",
            "purchase_without_currency", "--force", "--no-progress")  # fmt: skip
    _dead_letter_again(settings)
    capsys.readouterr()

    code = run_cli(monkeypatch, settings, "dlq", "summary", "--reason",
                   "purchase_without_currency", "--no-progress")  # fmt: skip
    lines = capsys.readouterr().out.splitlines()

    assert code == 0
    assert lines[0].split() == ["stage", "reason", "pixel", "letters", "events"]
    assert lines[1].split() == ["normalize", "purchase_without_currency", "P1", "4", "2"]
    assert lines[-1].startswith(f"4 dead letters of 2 distinct events in {settings.topics.dlq}")


def _dead_letter_again(settings: Settings) -> None:
    """What the normalize stage does with the republished records: dead-letter them again."""
    from confluent_kafka import Producer

    codec = AvroCodec(schemas.load("dead_letter"))
    producer = Producer(dict(settings.producer_config()))
    for record in topic_records(settings, settings.topics.raw):
        letter = dead_letter(stage="normalize", reason="purchase_without_currency", message="m",
                             record=record, now_ms=int(time.time() * 1000), pixel_id="P1",
                             event_id=(record.key or b"").decode())  # fmt: skip
        producer.produce(settings.topics.dlq, key=record.key, value=codec.encode(letter),
                         headers=dead_letter_headers(letter))  # fmt: skip
    assert producer.flush(30) == 0


def test_show_prints_a_compact_table(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One header line, then one line per letter: time, stage, reason, pixel, event, message."""
    code = run_cli(monkeypatch, settings, "dlq", "show", "--stage", "deliver", "--no-progress")
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert code == 0
    assert lines[0].split() == ["time", "(UTC)", "stage", "reason", "pixel", "event", "event",
                                "id", "message"]  # fmt: skip
    rejected = next(line for line in lines if "rejected_by_meta" in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  deliver ", rejected)
    assert rejected.split()[4:] == ["P2", "Purchase", "d-1", "Invalid", "parameter"]
    assert len(lines) == 3
    assert EMAIL.lower() not in captured.out.lower()
    assert captured.err.strip() == "2 dead letters shown"


def test_since_and_until_select_letters_by_when_they_were_written(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--until 1h leaves out the letters written just now; --since 1h keeps only them."""
    code = run_cli(monkeypatch, settings, "dlq", "summary", "--until", "1h", "--json",
                   "--no-progress")  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0
    code = run_cli(monkeypatch, settings, "dlq", "summary", "--since", "1h", "--json",
                   "--no-progress")  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["total"] == 5
    code = run_cli(monkeypatch, settings, "dlq", "show", "--since", "last week")
    assert code == 2
    assert "--since 'last week' is not a time" in capsys.readouterr().err


def test_republish_progress_counts_records(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress line ends at 100 % and counts the five letters read."""
    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "enriched",
                   "--reason", "expired", "--force", "--dry-run")  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("would republish 0 dead letters to ")
    assert "1 past meta age limit" in captured.out
    last = [line for line in captured.err.splitlines() if line.startswith("dlq")][-1]
    assert "100%" in last
    assert "5 records" in last


def test_republish_filters_by_pixel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--pixel keeps only that pixel's letters: P9 has none, P2 has the rejected one."""
    argv = ("dlq", "republish", "--to", "enriched", "--reason", "rejected_by_meta", "--force",
            "--dry-run", "--no-progress")  # fmt: skip
    assert run_cli(monkeypatch, settings, *argv, "--pixel", "P9") == 0
    assert capsys.readouterr().out.startswith("would republish 0 dead letters")
    assert run_cli(monkeypatch, settings, *argv, "--pixel", "P2") == 0
    assert capsys.readouterr().out.startswith("would republish 1 dead letter to")


@pytest.fixture
def registry_settings(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
) -> Settings:
    """Settings of the Confluent wire format (the test registry), raw and dlq topics made."""
    names = {"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
             "normalizer_group": unique("norm"), "deliverer_group": unique("deliv")}  # fmt: skip
    settings = stage_settings(kafka_bootstrap, names, schema_registry_url=schema_registry_url)
    make_topics(settings.topics.raw, settings.topics.dlq, partitions=1)
    return settings


def test_republish_in_the_confluent_wire_format(
    registry_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Letters written with the registry's ids are read and their originals republished
    byte for byte; one of another stage is counted, not sent."""
    from confluent_kafka import Producer

    from stream.kafka.serde import build_codecs

    settings = registry_settings
    codecs = build_codecs(settings)
    original = codecs.raw.encode(raw_event(event_id="c-1", event_time=int(time.time())))
    producer = Producer(dict(settings.producer_config()))
    for stage in ("normalize", "deliver"):
        record = Record(settings.topics.raw, 0, 7, b"c-1", original, ())
        letter = dead_letter(stage=stage, reason="missing_pixel_id", message="m", record=record,
                             now_ms=int(time.time() * 1000))  # fmt: skip
        producer.produce(settings.topics.dlq, key=b"c-1", value=codecs.dlq.encode(letter),
                         headers=dead_letter_headers(letter))  # fmt: skip
    assert producer.flush(30) == 0
    codecs.close()

    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw", "--reason",
                   "missing_pixel_id", "--no-progress")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("republished 1 dead letter to ")
    assert "1 of the other stage" in out
    [record] = topic_records(settings, settings.topics.raw)
    assert (record.key, record.value) == (b"c-1", original)
