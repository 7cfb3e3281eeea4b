"""`capi-stream publish` and `Publisher` against the real broker (and registry)."""

from __future__ import annotations

import calendar
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
from tests.integration.helpers import ROOT, run_cli, stage_env, stage_settings, topic_records

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


def test_a_csv_without_a_header_row_is_refused_without_echoing_its_first_line(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """An export saved without its header: its first line is customer data. The command says
    a header row is needed (exit 2) and prints none of that line, with or without
    --ignore-unknown-columns; a value-like unknown column is named by its position."""
    csv = tmp_path / "no-header.csv"
    csv.write_text("jane.doe@example.com,+1 650 555 0100,Jane,Lead,1767225600\n")
    for options in ((), ("--ignore-unknown-columns",)):
        code = run_cli(monkeypatch, settings, "publish", str(csv), "--no-progress", *options)
        err = capsys.readouterr().err
        assert code == 2
        assert "5 of 5 columns of the first line are unknown" in err
        assert "header row" in err
        assert all(value not in err for value in ("jane", "Jane", "555", "example"))
    odd = tmp_path / "odd.csv"  # mostly unknown columns, but a header: only the odd one hidden
    odd.write_text("email,Age,Notes,Owner,a@b.co\nx@y.co,41,n,o,1\n")
    assert run_cli(monkeypatch, settings, "publish", str(odd), "--no-progress") == 2
    err = capsys.readouterr().err
    assert "unknown columns Age, Notes, Owner, <column 5>" in err
    assert "a@b.co" not in err
    assert OffsetsAdmin(settings).bounds(settings.topics.raw, [0]) == {0: (0, 0)}


def test_publish_to_a_topic_that_does_not_exist_is_one_line_exit_2(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The topic is checked before any input is read: one line naming the topic and
    ``capi-stream topics create``, exit 2; asking did not create the topic."""
    settings = _settings(kafka_bootstrap, unique)
    stdin = io.BytesIO(b'{"event_name": "Lead"}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    code = run_cli(monkeypatch, settings, "publish", "-")
    out, err = capsys.readouterr()

    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        f"capi-stream: topic {settings.topics.raw} does not exist: create it with "
        "`capi-stream topics create`"
    ]
    assert stdin.tell() == 0  # nothing was read
    from stream.kafka.cluster import describe_topic

    assert not describe_topic(settings, settings.topics.raw).exists


def test_a_missing_topic_is_the_whole_output(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """As its own process, the only thing a missing --topic prints is one line (no librdkafka
    UNKNOWN_TOPIC_OR_PART lines, no traceback), naming the topic and the configured one."""
    import subprocess

    settings = _settings(kafka_bootstrap, unique)
    other = unique("other")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "publish", "-", "--topic", other],
        env=stage_env(settings), cwd=ROOT, input='{"event_name": "Lead"}\n',
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    [line] = proc.stdout.splitlines()  # a JSON line: the logs are JSON by default
    assert json.loads(line)["event"] == (
        f"topic {other} does not exist: create it, or leave out --topic to publish to the "
        f"configured raw topic {settings.topics.raw} (`capi-stream topics create` makes it)"
    )


def test_a_crm_export_with_extra_columns_amounts_and_us_dates_is_published(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """--ignore-unknown-columns skips Age (named once), --date-order mdy reads 11/28/2026 2:30
    PM, amounts keep their symbols and thousands commas; without the option the command stops
    naming the column and the option."""
    when = time.gmtime(time.time() - 3600)
    us_date = time.strftime("%m/%d/%Y %I:%M %p", when)
    export = tmp_path / "crm.csv"
    export.write_text(
        "Email,Age,event_id,event_name,event_time,value,currency\n"
        f'a@x.com,41,crm-1,Purchase,{us_date},"$1,000.50",USD\n'
        f"b@x.com,29,crm-2,Purchase,{us_date},$12.50,USD\n",
        encoding="utf-8",
    )
    code = run_cli(monkeypatch, settings, "publish", str(export), "--no-progress")
    _, err = capsys.readouterr()
    assert code == 2
    assert "unknown columns Age: skip them with --ignore-unknown-columns" in err

    options = ("--ignore-unknown-columns", "--date-order", "mdy", "--pixel-id", "P1")
    code = run_cli(monkeypatch, settings, "publish", str(export), "--no-progress", *options)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines() == [
        "capi-stream publish: ignoring columns Age (--ignore-unknown-columns)"
    ]
    assert out.splitlines() == [f"published 2 of 2 rows to {settings.topics.raw}; 0 failed"]
    codec = build_codecs(settings).raw
    events = {
        r.key: codec.decode(r.value or b"") for r in topic_records(settings, settings.topics.raw)
    }
    first = events[b"crm-1"]
    assert first["custom_data"]["value"] == 1000.5
    assert events[b"crm-2"]["custom_data"]["value"] == 12.5
    assert first["event_time"] == calendar.timegm(when) // 60 * 60  # the minute it names
    assert "41" not in json.dumps(first)


def test_dry_run_prints_a_verdict_per_line_and_writes_the_reject_file(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Each row the normalize stage would not send as it is gets its line: the reason, a
    warning, a missing pixel with the two ways to give one; --errors holds line, field and
    reason for every rejected row and no value; nothing is published."""
    now = int(time.time()) - 600
    export = tmp_path / "rows.csv"
    export.write_text(
        "email,event_name,event_time,value,currency,pixel_id\n"
        f"a@x.com,Purchase,{now},5,EUR,P1\n"
        f"secret-b@x.com,Purchase,{now},5,,P1\n"
        f"c@x.com,Purchase,{now * 1000},5,EUR,P1\n"
        f"d@x.com,Purchase,{now},lots-secret,EUR,P1\n"
        f"e@x.com,Lead,{now},,,\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    code = run_cli(monkeypatch, settings, "publish", str(export), "--dry-run", "--no-progress",
                   "--errors", str(rejects))  # fmt: skip
    out, err = capsys.readouterr()

    assert code == 1  # line 5 is not valid
    assert err.splitlines() == [
        "line 3: purchase_without_currency",
        "line 4: warning event_time_milliseconds",
        "line 5: invalid values in: custom_data.value (expected an amount: 12.50, 1,000.50 or "
        "$12.50 (12,50 with --decimal-comma))",
        "line 6: missing_pixel_id (give --pixel-id or set normalizer.default_pixel_id)",
    ]
    assert out.splitlines()[0] == (
        "dry run: 4 of 5 rows valid, 1 failed (line 5); the normalize stage would now give: "
        "enriched 2, purchase_without_currency 1, missing_pixel_id 1"
    )
    assert f"3 rejects written to {rejects}" in out
    assert rejects.read_text(encoding="utf-8").splitlines() == [
        "line,field,reason",
        "3,custom_data.currency,purchase_without_currency",
        "5,custom_data.value,invalid_value",
        "6,pixel_id,missing_pixel_id",
    ]
    assert "secret" not in out + err
    assert OffsetsAdmin(settings).bounds(settings.topics.raw, [0]) == {0: (0, 0)}


def test_rows_without_a_pixel_are_published_with_a_note(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With no --pixel-id and no normalizer.default_pixel_id, rows without a pixel still go out
    (the normalize stage may have its own default), and the summary says how to give one."""
    export = tmp_path / "rows.csv"
    export.write_text(f"email,event_name,event_time\na@x.com,Lead,{int(time.time())}\n")
    code = run_cli(monkeypatch, settings, "publish", str(export), "--no-progress")
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[1].startswith("1 row has no pixel_id and no default is configured")
    assert out.splitlines()[1].endswith("(give --pixel-id or set normalizer.default_pixel_id)")
