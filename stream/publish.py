"""``capi-stream publish`` and :class:`Publisher`: raw conversion events onto the raw topic.

Input rows (JSON Lines in the raw schema's shape or flat, or CSV with Meta's offline-events
columns, mapped as the table below says) become raw Avro events in the configured wire format
(Schema Registry or schemaless), validated against the schema, and are produced idempotently
(acks=all). The key is the event id, or with --key FIELD the SHA-256 of a user_data field's
first value (trimmed, lowercased): a hash, because keys are logged and copied to the enriched
topic as they are.

A bad row is reported with its line number, the fields at fault and the forms they accept,
never their values (they are customer data), and skipped; the command exits 1 at the end when
any row failed (--errors FILE lists them as line,field,reason). The topic is checked before
any input is read: a topic that does not exist stops the command (exit 2).

    with Publisher(settings) as publisher:
        publisher.publish({"event_name": "Purchase", "event_time": 1767225600,
                           "email": "a@example.com", "value": 10, "currency": "EUR"})
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS, PLAIN_KEYS
from stream.core.errors import ConfigError, EncodeError, KafkaError
from stream.core.value_forms import ValueForms
from stream.publish_report import BrokenInput, RunReport

if TYPE_CHECKING:
    from stream.config import Settings
    from stream.kafka.tracked_producer import TrackedProducer, Undelivered

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
KEY_FIELDS = ("event_id", *HASHED_KEYS, *LEGACY_HASHED_KEYS, *PLAIN_KEYS)
_Row = Any  # what a mapper takes: a JSON object, (column, value) pairs, or a CSV row's cells
# the docstring's paragraphs on input and bad rows are the command's description
_ABOUT = "\n\n".join((__doc__ or "").split("\n\n")[1:3])


@dataclass(frozen=True, slots=True)
class PublishCounts:
    """What a :class:`Publisher` did: queued, acknowledged, refused as invalid, not delivered."""

    published: int
    delivered: int
    invalid: int
    undelivered: int


def nullable_records(schema: Mapping[str, Any]) -> dict[str, str]:
    """Top-level fields whose type is ``["null", record]``, with the record's full name."""
    namespace = schema.get("namespace")
    found: dict[str, str] = {}
    for field in schema["fields"]:
        kind = field["type"]
        if isinstance(kind, list):
            for branch in kind:
                if isinstance(branch, Mapping) and branch.get("type") == "record":
                    name = str(branch["name"])
                    found[field["name"]] = (
                        name if "." in name or not namespace else f"{namespace}.{name}"
                    )
    return found


def key_for(event: Mapping[str, Any], key_field: str) -> bytes | None:
    """The record key: the event id, or the SHA-256 hex of a user_data field's first value."""
    if key_field == "event_id":
        event_id = event.get("event_id")
        return event_id.encode() if isinstance(event_id, str) and event_id else None
    value = (event.get("user_data") or {}).get(key_field)
    first = value[0] if isinstance(value, list) and value else value
    if not isinstance(first, str) or not first.strip():
        return None
    return hashlib.sha256(first.strip().lower().encode()).hexdigest().encode()


class Publisher:
    """Maps events onto the raw schema, encodes them and produces them idempotently.

    ``publish`` takes an event in the raw schema's shape or as flat offline-events columns and
    raises :class:`EncodeError` (naming fields, never values) when it does not fit. Delivery is
    asynchronous: ``flush`` waits and returns the records the broker did not take; leaving the
    ``with`` block flushes and raises :class:`KafkaError` if any event was not delivered.

    Encode first, explain only what fails: fastavro's validator costs three times the encode
    (it builds a ``ValidationError`` with JSON text for every union branch it tries, on valid
    records too), so a record is only validated after its encode failed, to name the fields at
    fault. What the encoder would take but the schema does not (a bool or a fraction where a
    number goes, an integer wider than its field, a string where a list goes) never reaches it:
    the mapper converts every value to its field's type and checks integer widths.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        key_field: str = "event_id",
        default_action_source: str | None = None,
        default_pixel_id: str | None = None,
        topic: str | None = None,
        forms: ValueForms | None = None,
        ignore_unknown: bool = False,
    ) -> None:
        from stream import schemas
        from stream.core.csv_map import RowMapper
        from stream.kafka.serde import build_codecs

        if key_field not in KEY_FIELDS:
            raise ConfigError(f"key field {key_field!r} is not event_id or a user_data key")
        self.settings = settings
        self.topic = topic or settings.topics.raw
        self.key_field = key_field
        schema = schemas.load("conversion_event")
        self.mapper = RowMapper(
            schema,
            default_action_source=default_action_source,
            default_pixel_id=default_pixel_id,
            forms=forms or ValueForms(),
            ignore_unknown=ignore_unknown,
        )
        self._codecs = build_codecs(settings)
        self._branches = nullable_records(schema)
        self._producer: TrackedProducer | None = None  # made on first publish: dry runs need none
        self._published = self._invalid = self._delivered = 0
        self._undelivered: list[Undelivered] = []

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = self.close()
        if failed and exc is None:
            raise KafkaError(f"{len(failed)} events were not delivered: {failed[0].error}")

    def record(self, to_event: Callable[[_Row], dict[str, Any]], row: _Row) -> dict[str, Any]:
        """``to_event(row)`` (a mapper's ``event``), counting a row it refuses as invalid."""
        try:
            return to_event(row)
        except EncodeError:
            self._invalid += 1
            raise

    def prepare(self, event: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
        """The raw record of ``event``, checked against the schema; raises :class:`EncodeError`."""
        record = self.record(self.mapper.event, event)
        self.encode(record)
        return record

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """``record`` (the mapper's) in the raw topic's wire format; raises :class:`EncodeError`
        naming the fields at fault, from a validation pass run only on a record that failed."""
        branches = self._branches
        # fastavro takes (name, record) as the branch of a union, instead of trying each one
        tagged = {k: (branches[k], v) if k in branches and v is not None else v
                  for k, v in record.items()}  # fmt: skip
        try:
            return self._codecs.raw.encode(tagged)
        except (EncodeError, OverflowError) as exc:
            self._invalid += 1
            self._codecs.raw.validate(record)  # raises, naming the fields
            raise EncodeError(f"record does not fit the raw schema ({type(exc).__name__})") from exc

    def publish(
        self,
        event: Mapping[str, Any] | Iterable[tuple[str, Any]],
        key: bytes | str | None = None,
        *,
        tag: int | None = None,
    ) -> None:
        """Map, encode and queue one event; ``tag`` names it in :meth:`flush`'s answer."""
        self.publish_record(self.record(self.mapper.event, event), key, tag=tag)

    def publish_record(
        self, record: dict[str, Any], key: bytes | str | None = None, *, tag: int | None = None
    ) -> None:
        """Encode and queue a record the mapper made (see :meth:`record`)."""
        from stream.kafka.tracked_producer import TrackedProducer

        value = self.encode(record)
        if key is None:
            key = key_for(record, self.key_field)
        if self._producer is None:
            self._producer = TrackedProducer(self.settings.producer_config())
        self._producer.produce(
            self.topic,
            key.encode() if isinstance(key, str) else key,
            value,
            tag if tag is not None else self._published,
        )
        self._published += 1

    def flush(self, timeout_s: float = 60.0) -> list[Undelivered]:
        """Wait for queued events; those the broker refused since the last flush."""
        failed = self._producer.flush(timeout_s) if self._producer is not None else []
        self._undelivered.extend(failed)
        return failed

    def close(self) -> list[Undelivered]:
        """Flush and release the registry client; the events that were not delivered."""
        try:
            self.flush()
        finally:
            self._codecs.close()
            if self._producer is not None:
                self._delivered = self._producer.delivered
                self._producer.close()
                self._producer = None
        return list(self._undelivered)

    @property
    def counts(self) -> PublishCounts:
        delivered = self._producer.delivered if self._producer is not None else self._delivered
        return PublishCounts(self._published, delivered, self._invalid, len(self._undelivered))


class _Lines:
    """Decoded lines of a byte stream, counting bytes read (the progress of a file)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._stream, start=1):
            self.bytes_read += len(raw)
            try:
                # utf-8-sig drops the byte-order mark spreadsheet exports start with
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                text = f"line {number} is not UTF-8 text; reading stopped"
                raise BrokenInput(number, "not_utf8", text) from None


def _format(args: argparse.Namespace, first: str) -> str:
    if args.format != "auto":
        return str(args.format)
    suffix = Path(args.file).suffix.lower()
    if suffix in (".csv", ".jsonl", ".ndjson", ".json"):
        return "csv" if suffix == ".csv" else "jsonl"
    return "jsonl" if first.lstrip().startswith("{") else "csv"


def run(args: argparse.Namespace) -> int:
    """The ``publish`` handler; returns the exit code."""
    from stream.config import load_settings
    from stream.logs import configure

    # --bootstrap and --log-level come through the command line's settings (stream.cli)
    settings = load_settings(args.config)
    configure(settings.observability.log_level, settings.observability.log_format)
    if args.file == "-":
        return _publish(args, settings, sys.stdin.buffer, None)
    path = Path(args.file)
    if not path.is_file():
        print(f"capi-stream publish: {path} is not a file", file=sys.stderr)
        return EXIT_USAGE
    with path.open("rb") as stream:
        return _publish(args, settings, stream, path.stat().st_size)


def _check_topic(settings: Settings, topic: str) -> None:
    """Stop before reading any input when ``topic`` cannot take records."""
    from stream.kafka.cluster import require_topic

    create = (
        "create it with `capi-stream topics create`"
        if topic == settings.topics.raw
        else "create it, or leave out --topic to publish to the configured raw topic "
        f"{settings.topics.raw} (`capi-stream topics create` makes it)"
    )
    require_topic(settings, topic, create=create, verb="publish to")


def _publish(
    args: argparse.Namespace, settings: Settings, stream: IO[bytes], size: int | None
) -> int:
    from stream.kafka.cluster import wait_for_cluster

    topic = args.topic or settings.topics.raw
    if not args.dry_run:  # a dry run only validates: it needs no cluster
        wait_for_cluster(settings, _progress)
        _check_topic(settings, topic)
    report = RunReport(args.errors)
    try:
        return _run(args, settings, stream, size, topic=topic, report=report)
    finally:
        report.close()


def _run(
    args: argparse.Namespace, settings: Settings, stream: IO[bytes], size: int | None, *,
    topic: str, report: RunReport,
) -> int:  # fmt: skip
    from stream.progress import Progress

    source = _Lines(stream)
    lines = iter(source)
    first = next(lines, "")
    fmt = _format(args, first)
    default_source = args.action_source or ("physical_store" if fmt == "csv" else None)
    forms = ValueForms(decimal_comma=args.decimal_comma, date_order=args.date_order)
    publisher = Publisher(settings, key_field=args.key, default_action_source=default_source,
                          default_pixel_id=args.pixel_id, topic=topic, forms=forms,
                          ignore_unknown=args.ignore_unknown_columns)  # fmt: skip
    opened = _rows(publisher, fmt, chain([first], lines))
    if opened is None:
        publisher.close()
        return EXIT_USAGE
    rows, to_event = opened
    # a row without a pixel goes out as it is; the normalize stage needs a default for it
    watch_pixel = not args.pixel_id and settings.normalizer.default_pixel_id is None
    preview = _previewer(settings) if args.dry_run else None
    count = 0
    with Progress("publish", size, enabled=not args.no_progress) as progress:
        report.echo = progress.echo
        try:
            for count, (line, row) in enumerate(rows, start=1):
                try:
                    if isinstance(row, EncodeError):
                        raise row
                    record = publisher.record(to_event, row)
                    if preview is not None:
                        publisher.encode(record)
                        report.verdict(line, *preview(record))
                    else:
                        publisher.publish_record(record, tag=line)
                        if watch_pixel and "pixel_id" not in record:
                            report.no_pixel += 1
                except EncodeError as exc:
                    report.refused(line, exc)
                progress.update(source.bytes_read, count=count)
        except BrokenInput as exc:  # the input itself broke off
            report.refused(exc.line, exc)
        for miss in publisher.close():
            report.undelivered(miss.tag, str(miss.error))
    report.close()
    _summary(args, publisher, count, report)
    return EXIT_FAILURE if report.failed else EXIT_OK


def _rows(
    publisher: Publisher, fmt: str, lines: Iterator[str]
) -> tuple[Iterator[tuple[int, Any]], Callable[[_Row], dict[str, Any]]] | None:
    """The numbered rows of the input and the mapping of one; None (after saying why) when the
    CSV header has columns no field takes and they are not to be ignored."""
    from stream.core.csv_map import read_csv_cells, read_jsonl

    mapper = publisher.mapper
    if fmt != "csv":
        return read_jsonl(lines), mapper.event
    header, rows = read_csv_cells(lines)
    unknown = mapper.unknown(header)
    if unknown and len(unknown) == len(header):
        # no column known: a file without a header row, whose first line is customer data
        print(f"capi-stream publish: {len(unknown)} of {len(header)} columns of the first line "
              "are unknown: CSV input needs a header row naming the columns (the columns "
              "read: capi-stream publish --help)", file=sys.stderr)  # fmt: skip
        return None
    shown = ", ".join(_column_name(header, name) for name in unknown)
    if unknown and not mapper.ignore_unknown:
        print(f"capi-stream publish: unknown columns {shown}: skip them with "
              "--ignore-unknown-columns (the columns read: capi-stream publish --help)",
              file=sys.stderr)  # fmt: skip
        return None
    if unknown:
        _progress(f"ignoring columns {shown} (--ignore-unknown-columns)")
    return rows, mapper.for_header(header).event  # the column work done once


#: What a column name looks like; anything else (an e-mail, a phone number) is not echoed.
_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_. ()-]{0,39}")


def _column_name(header: list[str], name: str) -> str:
    """``name`` as an error may show it: itself, or its position when it may be a value."""
    if _COLUMN_NAME.fullmatch(name):
        return name
    return f"<column {header.index(name) + 1}>"


def _progress(line: str) -> None:
    print(f"capi-stream publish: {line}", file=sys.stderr, flush=True)


def _previewer(settings: Settings) -> Callable[[dict[str, Any]], tuple[str, tuple[str, ...]]]:
    """What the normalize stage would do with a record now: ``enriched`` or a reason code, and
    the warnings it would record."""
    import time

    from stream.core.normalize import Normalized, normalize_event
    from stream.normalizer import normalize_options

    options = normalize_options(settings)

    def preview(record: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        result = normalize_event(record, time.time(), options)
        if isinstance(result, Normalized):
            return "enriched", result.warnings
        return result.reason, ()

    return preview


def _summary(args: argparse.Namespace, publisher: Publisher, rows: int, report: RunReport) -> None:
    if args.dry_run:
        for line in report.dry_run_summary(rows):
            print(line)
    else:
        print(f"published {publisher.counts.delivered} of {rows} rows to {publisher.topic}; "
              f"{len(report.failed)} failed{report.where()}")  # fmt: skip
        note = report.pixel_note()
        if note is not None:
            print(note)
    if args.errors is not None:
        rejects = "reject" if report.rejected == 1 else "rejects"
        print(f"{report.rejected} {rejects} written to {args.errors}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream publish`` (handler: :func:`run`)."""
    from stream.core import csv_map

    p = sub.add_parser(
        "publish",
        help="publish raw events from a JSON Lines or CSV file (or stdin) to the raw topic",
        description=f"{_ABOUT}\n\n{csv_map.user_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE|-", help="input file, or - for standard input")
    p.add_argument(
        "--format",
        choices=("auto", "jsonl", "csv"),
        default="auto",
        help="input format (default: by file suffix, else by the first line)",
    )
    p.add_argument(
        "--key",
        default="event_id",
        choices=KEY_FIELDS,
        metavar="FIELD",
        help="record key: event_id (default) or a user_data key such as em or "
        "external_id, whose first value is keyed as its SHA-256",
    )
    p.add_argument(
        "--action-source",
        metavar="SOURCE",
        help="action_source of rows without one (CSV default: physical_store)",
    )
    p.add_argument(
        "--pixel-id", metavar="PIXEL_ID",
        help="pixel_id of rows without one (else the normalize stage's "
        "normalizer.default_pixel_id; without either such rows are dead-lettered)",
    )  # fmt: skip
    p.add_argument("--topic", help="topic to publish to (default: the configured raw topic)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every row and print the normalize stage's verdict for each row it would "
        "not send as it is (line 41: purchase_without_currency, line 121: warning "
        "event_time_milliseconds); publish nothing, connect to nothing",
    )
    p.add_argument(
        "--errors", type=Path, metavar="FILE",
        help="write every refused row (in a dry run also those the normalize stage would "
        "dead-letter) to FILE as CSV line,field,reason; never a value",
    )  # fmt: skip
    p.add_argument(
        "--ignore-unknown-columns", action="store_true",
        help="skip columns no field takes (CRM exports carry columns such as Age), naming them "
        "once; without it such a column stops the command",
    )  # fmt: skip
    p.add_argument(
        "--decimal-comma", action="store_true",
        help="amounts use a decimal comma: 12,50 and 1.000,50 (default: 12.50 and 1,000.50)",
    )  # fmt: skip
    p.add_argument(
        "--date-order", choices=("mdy", "dmy"), default=None,
        help="how dates such as 11/28/2026 14:30 read: month first (mdy) or day first (dmy); "
        "without it such dates are refused (ISO 8601 and Unix seconds need none)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(handler=run)  # fmt: skip
