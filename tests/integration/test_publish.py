"""`capi-stream publish` and `Publisher` against the real broker (and registry)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stream.config import Settings
from stream.core.errors import EncodeError
from stream.kafka.offsets_admin import OffsetsAdmin
from stream.kafka.serde import build_codecs
from stream.publish import Publisher
from tests.factories import raw_event
from tests.integration.helpers import run_cli, stage_settings, topic_records

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, unique: Callable[[str], str], **extra: object) -> Settings:
    names = {"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
             "normalizer_group": unique("norm"), "deliverer_group": unique("deliv")}  # fmt: skip
    return stage_settings(bootstrap, names, **extra)


@pytest.fixture
def settings(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> Settings:
    """Schemaless settings for this test, with its raw topic (one partition) created."""
    s = _settings(kafka_bootstrap, unique)
    make_topics(s.topics.raw, partitions=1)
    return s


def test_csv_rows_are_published_and_bad_lines_named(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Good CSV rows land as raw events; bad ones are named by line and field, exit 1."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    csv = tmp_path / "offline.csv"
    csv.write_text(
        "event_id,email,email,phone,fn,zip,country,event_name,event_time,value,currency\n"
        f"o-1,a@x.com,b@x.com,+1 650 555 1212,Mary,94035,US,Purchase,{when},12.5,USD\n"
        f"o-2,c@x.com,,,,,,Purchase,{when},3,EUR\n"
        f"o-3,secret@x.com,,,,,,Purchase,soon,3,EUR\n"
        "\n"
        f"o-4,d@x.com,,,,,,Purchase,{when},lots,EUR\n"
        f"o-5,e@x.com,,,,,,Lead,{when},,\n",
        encoding="utf-8",
    )
    code = run_cli(monkeypatch, settings, "publish", str(csv), "--no-progress")
    out, err = capsys.readouterr()

    assert code == 1
    assert "line 4: invalid values in: event_time" in err
    assert "line 6: invalid values in: custom_data.value" in err
    for value in ("secret", "soon", "lots"):
        assert value not in err  # values are customer data; only fields are named
    assert "published 3 of 5 rows" in out
    assert "(lines 4, 6)" in out
    codec = build_codecs(settings).raw
    events = {
        r.key: codec.decode(r.value or b"") for r in topic_records(settings, settings.topics.raw)
    }
    assert set(events) == {b"o-1", b"o-2", b"o-5"}
    first = events[b"o-1"]
    assert first["user_data"]["em"] == ["a@x.com", "b@x.com"]
    assert first["action_source"] == "physical_store"  # the offline template's default
    assert first["custom_data"]["value"] == 12.5


def test_publisher_writes_registry_format_keyed_by_hashed_email(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
) -> None:
    """The Python API validates, counts, and keys by the SHA-256 of the first email."""
    settings = _settings(kafka_bootstrap, unique, schema_registry_url=schema_registry_url)
    make_topics(settings.topics.raw, partitions=1)
    event = raw_event(event_id="r-1", event_time=int(time.time()))
    with Publisher(settings, key_field="em") as publisher:
        publisher.publish(event)
        with pytest.raises(EncodeError, match="missing: event_time"):
            publisher.publish({"event_name": "Lead", "email": "x@example.com"})
        publisher.publish(event, key="explicit")
    assert publisher.counts.published == 2
    assert publisher.counts.delivered == 2
    assert publisher.counts.invalid == 1

    [hashed, explicit] = topic_records(settings, settings.topics.raw)
    assert hashed.key == hashlib.sha256(b"john_smith@gmail.com").hexdigest().encode()
    assert explicit.key == b"explicit"
    assert (hashed.value or b"")[0] == 0  # the Confluent wire format's magic byte
    codecs = build_codecs(settings)
    try:
        assert codecs.raw.decode(hashed.value or b"") == event
    finally:
        codecs.close()


def test_dry_run_from_stdin_previews_and_publishes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run reads JSON Lines from stdin, previews the normalizer, produces nothing."""
    now = int(time.time())
    rows = [
        raw_event(event_time=now),
        {**raw_event(event_time=now), "custom_data": {"value": 5.0}},  # Purchase without currency
        {"event_name": "Lead", "event_time": now, "action_source": "email", "email": "a@x.com",
         "pixel_id": "P1"},
    ]  # fmt: skip
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = run_cli(monkeypatch, settings, "publish", "-", "--dry-run")
    out, err = capsys.readouterr()

    assert code == 0
    assert "3 of 3 rows valid" in out
    assert "enriched 2, purchase_without_currency 1" in out
    assert re.search(r"^publish .*3 records", err, re.MULTILINE)  # the progress line, final
    assert OffsetsAdmin(settings).bounds(settings.topics.raw, [0]) == {0: (0, 0)}


def test_unknown_csv_columns_stop_before_anything_is_published(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A header with a column no field takes is a usage error (exit 2) naming the column."""
    csv = tmp_path / "offline.csv"
    csv.write_text("email,age,event_name,event_time\na@x.com,42,Lead,1767225600\n")
    code = run_cli(monkeypatch, settings, "publish", str(csv), "--no-progress")
    assert code == 2
    assert "unknown columns age" in capsys.readouterr().err
    assert OffsetsAdmin(settings).bounds(settings.topics.raw, [0]) == {0: (0, 0)}


def test_a_row_the_encoder_refuses_is_explained_by_field_and_the_rest_published(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Encode first: a row that fails it is validated to name its fields (never its values)."""
    when = int(time.time()) - 600
    csv = tmp_path / "contents.csv"
    csv.write_text(
        "event_id,email,event_name,event_time,value,currency,contents\n"
        f'c-1,a@x.com,Purchase,{when},5,EUR,"[{{""id"": ""sku-1"", ""quantity"": 2}}]"\n'
        f'c-2,b@x.com,Purchase,{when},5,EUR,"[{{""id"": ""sku-secret"", ""quantity"": ""two""}}]"\n'
        f"c-3,c@x.com,Purchase,{when},5,EUR,\n",
        encoding="utf-8",
    )
    code = run_cli(monkeypatch, settings, "publish", str(csv), "--no-progress")
    out, err = capsys.readouterr()

    assert code == 1
    [line] = [x for x in err.splitlines() if x.startswith("line 3:")]
    assert "Content.quantity" in line
    assert "sku-secret" not in err
    assert "two" not in err
    assert "published 2 of 3 rows" in out
    keys = {r.key for r in topic_records(settings, settings.topics.raw)}
    assert keys == {b"c-1", b"c-3"}
