"""``capi-stream dlq``: summarize, show and re-publish dead letters.

* ``summary``: dead letters and distinct events counted by stage, reason and pixel (a letter
  republished and dead-lettered again is one event in two letters).
* ``show``: one line per dead letter: time, stage, reason, pixel, event name and id, and Meta's
  message (else the stage's, which names fields, never values). ``--json`` prints whole records:
  a deliver-stage letter's enriched event decoded with only hashed ``user_data`` values
  (anything else reads ``<redacted>``); a normalize-stage letter's original, which may hold raw
  customer data, as its byte length and SHA-256 only, unless ``--unsafe-show-raw``; the same for
  every letter's original key (producers may key by an e-mail or a customer id).
* ``republish``: after a fix, put the original records of chosen dead letters back on the raw
  topic (normalize-stage letters) or the enriched topic (deliver-stage letters), key and value
  byte for byte, with the original headers and ``capi.dlq.reason``, ``capi.dlq.source`` (the
  dead letter, ``topic[partition]@offset``), ``capi.dlq.original`` (where the record was first
  read) and ``capi.dlq.attempts``. Events past Meta's age limit are counted and skipped, and so
  are letters whose original was cut to a prefix to fit the broker (``original_truncated``).
  Running it twice publishes twice; the event ids let Meta drop repeats within 48 hours.
  Reasons in the event's own data (``purchase_without_currency``, ``no_match_keys``,
  ``missing_event_name``, ``rejected_by_meta``, …) fail the same way again: they take ``--force``.

Each reads the dead-letter topic as it is when the command starts, or the part of it written
between ``--since`` and ``--until``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import orjson

from stream.core.dead_letter import STAGE_REASONS
from stream.core.validate import REASONS

if TYPE_CHECKING:
    from stream.config import Settings
    from stream.core.codec import AvroCodec
    from stream.core.records import Record
    from stream.kafka.prefix_facts import FactsReader
    from stream.kafka.range_copy import Copier, OutHeaders, Output, RawHeaders
    from stream.kafka.serde import Codecs

EXIT_OK, EXIT_USAGE = 0, 2
DLQ_HEADER_PREFIX = "capi.dlq."
_HASHED = re.compile(r"[0-9a-f]{64}(\.[A-Za-z0-9_-]+)?")
_TOPIC_STAGE = {"raw": "normalize", "enriched": "deliver"}
_TIMES = ("first_failure_at", "last_failure_at")
Ranges = dict[int, tuple[int, int]]

#: Every reason code the stages write (README: "Dead-letter reasons").
KNOWN_REASONS: Final = frozenset({
    *REASONS, *STAGE_REASONS,
    "decode_corrupt", "decode_truncated", "decode_unknown_schema", "decode_bad_magic_byte",
    "empty_value", "encode_failed",
    "rejected_by_meta", "expired", "test_event_in_production", "event_too_large",
})  # fmt: skip
#: Reasons that a fix of the configuration, the registry, the broker or the code can cure: the
#: same bytes republished then pass. A default pixel cures ``missing_pixel_id``; time cures
#: ``event_time_in_future``; a restored registry ``decode_unknown_schema``; the right wire format
#: the other ``decode_*``; raised limits ``record_too_large`` and ``event_too_large``.
_CURABLE: Final = frozenset({
    "missing_pixel_id", "event_time_in_future", "decode_corrupt", "decode_truncated",
    "decode_unknown_schema", "decode_bad_magic_byte", "encode_failed", "record_too_large",
    "short_receipt", "test_event_in_production", "event_too_large",
})  # fmt: skip
#: Reasons in the event's own data: the same bytes fail the same way again (3 letters become 6).
#: The fix is a corrected event from its producer; republishing them takes ``--force``.
DATA_ERRORS: Final = KNOWN_REASONS - _CURABLE


def letter_ranges(settings: Settings, since_ms: int | None, until_ms: int | None) -> Ranges:
    """The dead-letter topic's offsets of letters written in ``[since, until)`` (None: open)."""
    from stream.kafka.offsets_admin import OffsetsAdmin

    return OffsetsAdmin(settings).ranges(settings.topics.dlq, from_ms=since_ms, to_ms=until_ms)


def read_letters(
    settings: Settings,
    codecs: Codecs,
    ranges: Ranges,
    *,
    show_progress: bool = False,
    times: bool = True,
) -> Iterator[tuple[Record, dict[str, Any]]]:
    """Every readable dead letter of ``ranges`` with the record that carried it; without
    ``times`` the failure times are Unix milliseconds (cheaper than datetimes)."""
    from stream.core.errors import DecodeError
    from stream.kafka.range_reader import read_ranges
    from stream.progress import Progress

    decode = codecs.dlq.decode if times else _timeless_codec(codecs).decode
    total = sum(end - start for start, end in ranges.values())
    with Progress("dlq", total, enabled=show_progress) as progress:
        on_batch = lambda done, n: progress.update(done, count=n)  # noqa: E731
        for record in read_ranges(settings, settings.topics.dlq, ranges, on_batch=on_batch):
            try:
                yield record, decode(record.value or b"")
            except DecodeError:
                progress.echo(f"skipped {record.topic}[{record.partition}]@{record.offset}: "
                              "not a dead letter")  # fmt: skip


def pixel_of(letter: Mapping[str, Any], codecs: Codecs) -> str | None:
    """The letter's pixel: its own field, the original record's header, or the original event."""
    if letter.get("pixel_id"):
        return str(letter["pixel_id"])
    for header in letter.get("headers") or []:
        if header["key"] == "capi.pixel_id" and header["value"]:
            return bytes(header["value"]).decode("utf-8", "replace")
    enriched = letter["stage"] == "deliver"
    facts = _reader(codecs, enriched=enriched).facts(letter.get("original_value"), need_pixel=True)
    return facts.pixel_id if facts is not None else None


@lru_cache(maxsize=4)  # one per command's codecs and topic, not one per letter
def _reader(codecs: Codecs, *, enriched: bool) -> FactsReader:
    """The facts reader of the raw or the enriched topic's records."""
    from stream import schemas
    from stream.kafka.prefix_facts import FactsReader

    if enriched:
        return FactsReader(codecs.enriched, schemas.load("capi_event"), enriched=True)
    return FactsReader(codecs.raw, schemas.load("conversion_event"), enriched=False)


def selected(args: argparse.Namespace, letter: Mapping[str, Any], pixel: str | None) -> bool:
    """Whether a dead letter passes ``--stage``, ``--reason`` and ``--pixel``."""
    return (
        (args.stage is None or letter["stage"] == args.stage)
        and (not args.reason or letter["reason"] in args.reason)
        and (args.pixel is None or pixel == args.pixel)
    )


def event_key(letter: Mapping[str, Any], pixel: str | None) -> tuple[Any, ...]:
    """What makes two letters one event: Meta's dedup key (pixel, event name, event id) when
    the letter knows the id, else the original's bytes (a republished copy keeps them)."""
    if letter.get("event_id"):
        return (pixel, letter.get("event_name"), letter["event_id"])
    digest = letter.get("original_sha256")
    if digest:
        return ("sha256", digest)
    src = letter["source"]
    return ("at", src["topic"], src["partition"], src["offset"])


def shown(
    record: Record, letter: Mapping[str, Any], codecs: Codecs, *, pixel: str | None, unsafe: bool
) -> str:
    """One dead letter as a JSON line, with customer data hidden as the module docstring says."""
    value: bytes | None = letter.get("original_value")
    out = {k: v for k, v in letter.items() if k not in ("original_key", "original_value")}
    out["pixel_id"] = pixel  # the deliver stage leaves it to the event, which has it
    out["dlq"] = f"{record.topic}[{record.partition}]@{record.offset}"
    key: bytes | None = letter.get("original_key")
    # producers may key by an e-mail or a customer id: the key is customer data too
    out["original_key"] = _text_or_hex(key) if unsafe or key is None else _digest(key)
    out["headers"] = {h["key"]: _header(h["key"], h["value"]) for h in letter["headers"]}
    out["original_value"] = _original(value, letter["stage"], codecs, unsafe=unsafe)
    return json.dumps(out, default=_json_default, ensure_ascii=False)


#: ``show``'s table: header, width (None: the rest of the line).
_COLUMNS: Final = (("time (UTC)", 19), ("stage", 9), ("reason", 26), ("pixel", 16),
                   ("event", 12), ("event id", 20), ("message", None))  # fmt: skip


def table_header() -> str:
    """The header line of ``show``'s table."""
    return _row([name for name, _ in _COLUMNS])


def table_row(letter: Mapping[str, Any], pixel: str | None) -> str:
    """One dead letter as a line of ``show``'s table: Meta's message when Meta rejected the
    event, else the stage's (both name fields, never values)."""
    meta = letter.get("meta_error") or {}
    when = letter.get("last_failure_at")
    cells = [
        when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, datetime) else "-",
        str(letter["stage"]),
        str(letter["reason"]),
        pixel or "-",
        letter.get("event_name") or "-",
        letter.get("event_id") or "-",
        " ".join(str(meta.get("message") or letter.get("message") or "-").split()),
    ]
    return _row(cells)


def _row(cells: list[str]) -> str:
    parts = []
    for cell, (_, width) in zip(cells, _COLUMNS, strict=True):
        if width is None:
            parts.append(cell)
        else:
            parts.append((cell if len(cell) <= width else cell[: width - 1] + "~").ljust(width))
    return "  ".join(parts).rstrip()


def _digest(value: bytes) -> dict[str, Any]:
    return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}


def _original(value: bytes | None, stage: str, codecs: Codecs, *, unsafe: bool) -> Any:
    if value is None:
        return None
    digest = _digest(value)
    from stream.core.errors import DecodeError

    try:
        if stage == "deliver":
            # version 2's shape whichever version was written; the event is its request JSON
            record = codecs.enriched.decode(value)
            event = orjson.loads(record.pop("event_json"))
            if not unsafe:
                user_data = event.get("user_data") or {}
                event["user_data"] = {k: _hashed_only(v) for k, v in user_data.items()}
            record["event"] = event
            return record
        return codecs.raw.decode(value) if unsafe else digest
    except (DecodeError, orjson.JSONDecodeError):
        return {**digest, "decodable": False}


def _hashed_only(value: Any) -> Any:
    if isinstance(value, list):
        return [_hashed_only(v) for v in value]
    if value is None or (isinstance(value, str) and _HASHED.fullmatch(value)):
        return value
    return "<redacted>"


def _header(key: str, value: bytes | None) -> str | None:
    # our own headers are ids and codes; anything else may be a publisher's customer data
    if value is None or not key.startswith("capi."):
        return None if value is None else f"<{len(value)} bytes>"
    return value.decode("utf-8", "replace")


def _text_or_hex(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()
    return text if text.isprintable() else "0x" + data.hex()


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return _text_or_hex(value) or ""
    raise TypeError(type(value).__name__)


def republish_headers(where: bytes, letter: Mapping[str, Any]) -> OutHeaders:
    """The original headers (minus an earlier republish's) and this republish's provenance;
    ``where`` is the dead letter's own ``topic[partition]@offset``."""
    src = letter["source"]
    kept: OutHeaders = [(h["key"], bytes(h["value"])) for h in letter["headers"]
            if h["value"] is not None and not h["key"].startswith(DLQ_HEADER_PREFIX)]  # fmt: skip
    return [
        *kept,
        ("capi.dlq.reason", str(letter["reason"]).encode()),
        ("capi.dlq.source", where),
        ("capi.dlq.original", f"{src['topic']}[{src['partition']}]@{src['offset']}".encode()),
        ("capi.dlq.attempts", str(letter["attempts"]).encode()),
    ]


def _usage_problem(args: argparse.Namespace) -> str | None:
    unknown = sorted(set(args.reason or ()) - KNOWN_REASONS)
    if unknown:
        return (f"unknown reason {', '.join(unknown)}; the reasons are: "
                f"{', '.join(sorted(KNOWN_REASONS))}")  # fmt: skip
    if args.dlq_command != "republish":
        return None
    if not args.reason:
        # republishing every dead letter would resend events that can never succeed
        return "choose what to republish with --reason"
    data = sorted(set(args.reason) & DATA_ERRORS)
    if data and not args.force:
        return (f"{', '.join(data)} {'is an error' if len(data) == 1 else 'are errors'} in the "
                "events' own data: republished unchanged they fail the same way again (fix "
                "them at their producer); add --force to republish them anyway")  # fmt: skip
    return None


def run(args: argparse.Namespace) -> int:
    """The ``dlq`` handler: dispatches to summary, show or republish."""
    from stream.config import load_settings
    from stream.kafka.cluster import wait_for_cluster
    from stream.kafka.offsets_admin import one_off
    from stream.kafka.serde import build_codecs
    from stream.replay import parse_moment

    now = time.time()
    problem = _usage_problem(args)
    try:
        since = parse_moment(args.since, now, "--since") if args.since is not None else None
        until = parse_moment(args.until, now, "--until") if args.until is not None else None
    except ValueError as exc:
        problem = problem or str(exc)
    if problem is not None:
        print(f"capi-stream dlq {args.dlq_command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = load_settings(args.config, **overrides)
    wait_for_cluster(
        one_off(settings),
        lambda line: print(f"capi-stream dlq: {line}", file=sys.stderr, flush=True),
    )
    if args.dlq_command == "republish":
        from stream.kafka.cluster import require_topic
        from stream.kafka.range_copy import Copier

        # one line, before any letter is read, rather than a delivery error per record
        target = settings.topics.raw if args.to == "raw" else settings.topics.enriched
        create = "create it with `capi-stream topics create`"
        require_topic(one_off(settings), target, create=create, verb="republish to")
        # the copier's producer connects while the codecs and the ranges are set up
        with Copier(settings, dry_run=args.dry_run) as copier:
            codecs = build_codecs(settings)
            try:
                ranges = letter_ranges(settings, since, until)
                return _republish(args, settings, codecs, copier, ranges, now=now)
            finally:
                codecs.close()
    codecs = build_codecs(settings)
    try:
        ranges = letter_ranges(settings, since, until)
        if args.dlq_command == "summary":
            return _summary(args, settings, codecs, ranges)
        return _show(args, settings, codecs, ranges)
    finally:
        codecs.close()


def _summary(args: argparse.Namespace, settings: Settings, codecs: Codecs, ranges: Ranges) -> int:
    from stream.replay import plural

    counts: Counter[tuple[str, str, str]] = Counter()
    events: dict[tuple[str, str, str], set[tuple[Any, ...]]] = {}
    everything: set[tuple[Any, ...]] = set()
    letters = read_letters(settings, codecs, ranges, show_progress=not args.no_progress,
                           times=False)  # fmt: skip
    for _, letter in letters:
        pixel = pixel_of(letter, codecs)
        if selected(args, letter, pixel):
            group = (letter["stage"], letter["reason"], pixel or "-")
            counts[group] += 1
            key = event_key(letter, pixel)
            events.setdefault(group, set()).add(key)
            everything.add(key)
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if args.json:
        groups = [{"stage": s, "reason": r, "pixel_id": p, "count": n,
                   "events": len(events[s, r, p])} for (s, r, p), n in rows]  # fmt: skip
        print(json.dumps({"total": counts.total(), "events": len(everything), "groups": groups}))
        return EXIT_OK
    print(f"{'stage':<10} {'reason':<36} {'pixel':<20} {'letters':>8} {'events':>8}")
    for (stage, reason, pixel), n in rows:
        distinct = len(events[stage, reason, pixel])
        print(f"{stage:<10} {reason:<36} {pixel:<20} {n:>8,} {distinct:>8,}")
    by_stage = Counter[str]()
    for (stage, _, _), n in rows:
        by_stage[stage] += n
    stages = ", ".join(f"{s} {n:,}" for s, n in sorted(by_stage.items())) or "none"
    print(f"{plural(counts.total(), 'dead letter')} of {plural(len(everything), 'distinct event')} "
          f"in {settings.topics.dlq} ({stages})")  # fmt: skip
    return EXIT_OK


def _show(args: argparse.Namespace, settings: Settings, codecs: Codecs, ranges: Ranges) -> int:
    from stream.replay import plural

    printed = 0
    if not args.json:
        print(table_header())
    for record, letter in read_letters(settings, codecs, ranges, show_progress=False):
        if printed >= args.limit:
            break
        pixel = pixel_of(letter, codecs)
        if not selected(args, letter, pixel):
            continue
        if args.json:
            print(shown(record, letter, codecs, pixel=pixel, unsafe=args.unsafe_show_raw))
        else:
            print(table_row(letter, pixel))
        printed += 1
    print(f"{plural(printed, 'dead letter')} shown", file=sys.stderr)
    return EXIT_OK


def _republish(
    args: argparse.Namespace, settings: Settings, codecs: Codecs, copier: Copier,
    ranges: Ranges, *, now: float,
) -> int:  # fmt: skip
    from stream.core.errors import DecodeError
    from stream.kafka.range_copy import Tally
    from stream.progress import Progress
    from stream.replay import plural

    topic = settings.topics.raw if args.to == "raw" else settings.topics.enriched
    stage, enriched = _TOPIC_STAGE[args.to], args.to == "enriched"
    expired = _reader(codecs, enriched=enriched).expiry(now, _margin(settings, stage))
    decode = _timeless_codec(codecs).decode
    # compared with the letters' header values as they come: bytes
    reasons = frozenset(r.encode() for r in args.reason)
    only_stage = args.stage.encode() if args.stage is not None else None
    reason_names, want_stage, want_pixel = frozenset(args.reason), args.stage, args.pixel

    def decide(
        value: bytes | None, _key: bytes | None, headers: RawHeaders, where: bytes
    ) -> tuple[str, Output | None]:
        if not _may_match(headers, reasons, only_stage):
            return "not_selected", None  # told by the letter's headers: nothing decoded
        try:
            letter = decode(value or b"")
        except DecodeError:
            return "not_a_dead_letter", None
        # selected() with the filters at hand; the pixel may take decoding the original: only
        # a --pixel filter asks for it
        if letter["reason"] not in reason_names or (want_stage and letter["stage"] != want_stage):
            return "not_selected", None
        if want_pixel is not None and pixel_of(letter, codecs) != want_pixel:
            return "not_selected", None
        original = letter["original_value"]
        outcome = (
            "of_the_other_stage" if letter["stage"] != stage
            else "without_original_value" if original is None
            # a letter shrunk to fit the broker holds only a prefix: republishing it would
            # put a corrupt record on the topic (get the original from its producer instead)
            else "truncated" if letter.get("original_truncated")
            # from the event's first fields: the original is not decoded
            else "past_meta_age_limit" if expired(original)
            else "republished"
        )  # fmt: skip
        if outcome != "republished":
            return outcome, None
        return outcome, (letter["original_key"], original, republish_headers(where, letter))

    tally = Tally()
    total = sum(end - start for start, end in ranges.values())
    with Progress("dlq", total, enabled=not args.no_progress) as bar:
        copier.copy(settings.topics.dlq, ranges, topic, decide, tally=tally, limit=args.limit,
                    on_batch=lambda done, n: bar.update(done, count=n))  # fmt: skip
    done = tally.total("republished")
    skipped = Counter[str]()
    for (_, outcome), n in tally.counts.items():
        if outcome not in ("republished", "not_selected"):
            skipped[outcome] += n
    listed = ", ".join(f"{n:,} {o.replace('_', ' ')}" for o, n in sorted(skipped.items()))
    verb = "would republish" if args.dry_run else "republished"
    print(f"{verb} {plural(done, 'dead letter')} to {topic}; skipped: {listed or 'none'}")
    return EXIT_OK


def _timeless_codec(codecs: Codecs) -> AvroCodec:
    """The dead-letter codec with the failure times read as the longs they are written as:
    republish and summary never look at them, and making two datetimes per letter was a fifth
    of its decode (9.8 -> 7.8 µs). The bytes are the same: our own writer id needs no
    resolution."""
    from stream import schemas
    from stream.core.codec import AvroCodec

    schema = schemas.load("dead_letter")
    fields = [{**f, "type": "long"} if f["name"] in _TIMES else f for f in schema["fields"]]
    dlq = codecs.dlq
    return AvroCodec(
        {**schema, "fields": fields},
        wire_format=dlq.wire_format,
        schema_id=dlq.schema_id,
        resolver=codecs.registry.resolve if codecs.registry is not None else None,
    )


def _may_match(headers: RawHeaders, reasons: frozenset[bytes], stage: bytes | None) -> bool:
    """False when the letter's record headers (``capi.stage``, ``capi.reason``, written with
    every letter) rule it out; True when they do not, or are missing."""
    if not headers or isinstance(headers, dict):
        return True
    for name, value in headers:
        if name == "capi.reason":
            if value not in reasons:
                return False
        elif name == "capi.stage" and stage is not None and value != stage:
            return False
    return True


def _margin(settings: Settings, stage: str) -> float:
    if stage == "normalize":
        return float(settings.normalizer.age_safety_margin_s)
    from stream.core.delivery_rules import EXPIRY_MARGIN_S

    return EXPIRY_MARGIN_S


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream dlq summary|show|republish`` (handler: :func:`run`)."""
    from stream.replay import MOMENT_FORMS

    filters = argparse.ArgumentParser(add_help=False)
    add = filters.add_argument
    add("--stage", choices=("normalize", "deliver"), help="only this stage")
    add("--reason", action="append", metavar="REASON", help="only this reason code (repeatable)")
    add("--pixel", metavar="PIXEL_ID", help="only events of this pixel")
    add("--since", metavar="TIME",
        help=f"only letters written at or after TIME: {MOMENT_FORMS}")  # fmt: skip
    add("--until", metavar="TIME", help="only letters written before TIME (same forms)")
    add("--no-progress", action="store_true", help="no progress line on stderr")
    dlq = sub.add_parser(
        "dlq",
        help="summarize, show and re-publish dead letters",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    summary = actions.add_parser(
        "summary",
        parents=[filters],
        help="count dead letters and distinct events by stage, reason and pixel",
    )
    summary.add_argument("--json", action="store_true", help="print the counts as JSON")
    show = actions.add_parser(
        "show",
        parents=[filters],
        help="print dead letters as a table (time, stage, reason, pixel, event, message)",
    )
    show.add_argument("--limit", type=int, default=10, help="at most this many (default 10)")
    show.add_argument(
        "--json",
        action="store_true",
        help="whole records as JSON lines (hashed customer data only)",
    )
    show.add_argument(
        "--unsafe-show-raw",
        action="store_true",
        help="with --json, also show raw values: normalize-stage originals and unhashed "
        "user_data keys, which may be customer data",
    )
    again = actions.add_parser(
        "republish",
        parents=[filters],
        help="put the originals of chosen dead letters back on a topic",
        description="Put the original records of the chosen dead letters back on the raw or "
        "enriched topic, with provenance headers. --reason is required (at least one): "
        "republishing every dead letter would resend events that can never succeed. Reasons "
        "in the events' own data also need --force: " + ", ".join(sorted(DATA_ERRORS)) + ".",
    )
    again.add_argument(
        "--to",
        required=True,
        choices=("raw", "enriched"),
        help="raw takes normalize-stage letters, enriched deliver-stage ones",
    )
    again.add_argument("--limit", type=int, default=None, help="republish at most this many")
    again.add_argument("--dry-run", action="store_true", help="count only; publish nothing")
    again.add_argument(
        "--force",
        action="store_true",
        help="republish reasons in the events' own data too (they fail again unless the "
        "stage's rules changed)",
    )
    dlq.set_defaults(handler=run)  # fmt: skip
