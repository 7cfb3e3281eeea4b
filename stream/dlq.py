"""``capi-stream dlq``: summarize, show and re-publish dead letters.

* ``summary``: dead letters counted by stage, reason and pixel.
* ``show``: dead letters as JSON lines. A deliver-stage letter holds an enriched event: it is
  shown decoded, with only hashed ``user_data`` values (anything else reads ``<redacted>``).
  A normalize-stage letter may hold raw customer data: its original value is shown as its byte
  length and SHA-256 only, unless ``--unsafe-show-raw``.
* ``republish``: after a fix, put the original records of chosen dead letters back on the raw
  topic (normalize-stage letters) or the enriched topic (deliver-stage letters), key and value
  byte for byte, with the original headers and ``capi.dlq.reason``, ``capi.dlq.source`` (the
  dead letter, ``topic[partition]@offset``), ``capi.dlq.original`` (where the record was first
  read) and ``capi.dlq.attempts``. Events past Meta's age limit are counted and skipped, and so
  are letters whose original was cut to a prefix to fit the broker (``original_truncated``).
  Running it twice publishes twice; the event ids let Meta drop repeats within 48 hours.

Each reads the whole dead-letter topic as it is when the command starts.
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
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from stream.config import Settings
    from stream.core.records import Record
    from stream.kafka.prefix_facts import FactsReader
    from stream.kafka.serde import Codecs

EXIT_OK, EXIT_USAGE = 0, 2
DLQ_HEADER_PREFIX = "capi.dlq."
_HASHED = re.compile(r"[0-9a-f]{64}(\.[A-Za-z0-9_-]+)?")
_TOPIC_STAGE = {"raw": "normalize", "enriched": "deliver"}


def read_letters(
    settings: Settings, codecs: Codecs, *, show_progress: bool = False
) -> Iterator[tuple[Record, dict[str, Any]]]:
    """Every readable dead letter of the topic (as of now) with the record that carried it."""
    from stream.core.errors import DecodeError
    from stream.kafka.offsets_admin import OffsetsAdmin
    from stream.kafka.range_reader import read_ranges
    from stream.progress import Progress

    topic = settings.topics.dlq
    ranges = OffsetsAdmin(settings).ranges(topic)
    total = sum(end - start for start, end in ranges.values())
    with Progress("dlq", total, enabled=show_progress) as progress:
        for record in read_ranges(settings, topic, ranges):
            progress.advance()
            try:
                yield record, codecs.dlq.decode(record.value or b"")
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
        return FactsReader(codecs.enriched, None, enriched=True)
    return FactsReader(codecs.raw, schemas.load("conversion_event"), enriched=False)


def selected(args: argparse.Namespace, letter: Mapping[str, Any], pixel: str | None) -> bool:
    """Whether a dead letter passes ``--stage``, ``--reason`` and ``--pixel``."""
    return (
        (args.stage is None or letter["stage"] == args.stage)
        and (not args.reason or letter["reason"] in args.reason)
        and (args.pixel is None or pixel == args.pixel)
    )


def shown(
    record: Record, letter: Mapping[str, Any], codecs: Codecs, *, pixel: str | None, unsafe: bool
) -> str:
    """One dead letter as a JSON line, with customer data hidden as the module docstring says."""
    value: bytes | None = letter.get("original_value")
    out = {k: v for k, v in letter.items() if k not in ("original_key", "original_value")}
    out["pixel_id"] = pixel  # the deliver stage leaves it to the event, which has it
    out["dlq"] = f"{record.topic}[{record.partition}]@{record.offset}"
    out["original_key"] = _text_or_hex(letter.get("original_key"))
    out["headers"] = {h["key"]: _header(h["key"], h["value"]) for h in letter["headers"]}
    out["original_value"] = _original(value, letter["stage"], codecs, unsafe=unsafe)
    return json.dumps(out, default=_json_default, ensure_ascii=False)


def _original(value: bytes | None, stage: str, codecs: Codecs, *, unsafe: bool) -> Any:
    if value is None:
        return None
    digest = {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
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


def republish_headers(record: Record, letter: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """The original headers (minus an earlier republish's) and this republish's provenance."""
    src = letter["source"]
    kept = [(h["key"], bytes(h["value"])) for h in letter["headers"]
            if h["value"] is not None and not h["key"].startswith(DLQ_HEADER_PREFIX)]  # fmt: skip
    return [
        *kept,
        ("capi.dlq.reason", str(letter["reason"]).encode()),
        ("capi.dlq.source", f"{record.topic}[{record.partition}]@{record.offset}".encode()),
        ("capi.dlq.original", f"{src['topic']}[{src['partition']}]@{src['offset']}".encode()),
        ("capi.dlq.attempts", str(letter["attempts"]).encode()),
    ]


def run(args: argparse.Namespace) -> int:
    """The ``dlq`` handler: dispatches to summary, show or republish."""
    from stream.config import load_settings
    from stream.kafka.cluster import wait_for_cluster
    from stream.kafka.serde import build_codecs

    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = load_settings(args.config, **overrides)
    wait_for_cluster(
        settings,
        lambda line: print(f"capi-stream dlq: {line}", file=sys.stderr, flush=True),
    )
    codecs = build_codecs(settings)
    try:
        if args.dlq_command == "summary":
            return _summary(args, settings, codecs)
        if args.dlq_command == "show":
            return _show(args, settings, codecs)
        return _republish(args, settings, codecs)
    finally:
        codecs.close()


def _summary(args: argparse.Namespace, settings: Settings, codecs: Codecs) -> int:
    counts: Counter[tuple[str, str, str]] = Counter()
    for _, letter in read_letters(settings, codecs, show_progress=not args.no_progress):
        pixel = pixel_of(letter, codecs)
        if selected(args, letter, pixel):
            counts[letter["stage"], letter["reason"], pixel or "-"] += 1
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if args.json:
        groups = [{"stage": s, "reason": r, "pixel_id": p, "count": n} for (s, r, p), n in rows]
        print(json.dumps({"total": counts.total(), "groups": groups}))
        return EXIT_OK
    print(f"{'stage':<10} {'reason':<36} {'pixel':<20} {'count':>8}")
    for (stage, reason, pixel), n in rows:
        print(f"{stage:<10} {reason:<36} {pixel:<20} {n:>8}")
    by_stage = Counter[str]()
    for (stage, _, _), n in rows:
        by_stage[stage] += n
    stages = ", ".join(f"{s} {n}" for s, n in sorted(by_stage.items())) or "none"
    print(f"{counts.total()} dead letters in {settings.topics.dlq} ({stages})")
    return EXIT_OK


def _show(args: argparse.Namespace, settings: Settings, codecs: Codecs) -> int:
    printed = 0
    for record, letter in read_letters(settings, codecs, show_progress=False):
        if printed >= args.limit:
            break
        pixel = pixel_of(letter, codecs)
        if selected(args, letter, pixel):
            print(shown(record, letter, codecs, pixel=pixel, unsafe=args.unsafe_show_raw))
            printed += 1
    print(f"{printed} dead letters shown", file=sys.stderr)
    return EXIT_OK


def _republish(args: argparse.Namespace, settings: Settings, codecs: Codecs) -> int:
    from stream.kafka.producer import StageProducer

    if not args.reason:
        # republishing every dead letter would resend events that can never succeed
        print("capi-stream dlq republish: choose what to republish with --reason", file=sys.stderr)
        return EXIT_USAGE
    topic = settings.topics.raw if args.to == "raw" else settings.topics.enriched
    stage, enriched = _TOPIC_STAGE[args.to], args.to == "enriched"
    reader = _reader(codecs, enriched=enriched)  # a raw event's age: from its first fields
    margin = _margin(settings, stage)
    producer = None if args.dry_run else StageProducer(settings.producer_config(),
                                                      transactional=False)  # fmt: skip
    outcomes: Counter[str] = Counter()
    now = time.time()
    for record, letter in read_letters(settings, codecs, show_progress=not args.no_progress):
        if args.limit is not None and outcomes["republished"] >= args.limit:
            break
        # the pixel may take decoding the original: only a --pixel filter asks for it
        pixel = pixel_of(letter, codecs) if args.pixel is not None else None
        if not selected(args, letter, pixel):
            continue
        facts = reader.facts(letter["original_value"])
        outcome = (
            "of_the_other_stage" if letter["stage"] != stage
            else "without_original_value" if letter["original_value"] is None
            # a letter shrunk to fit the broker holds only a prefix: republishing it would
            # put a corrupt record on the topic (get the original from its producer instead)
            else "truncated" if letter.get("original_truncated")
            else "past_meta_age_limit" if facts is not None and facts.expired(now, margin)
            else "republished"
        )  # fmt: skip
        outcomes[outcome] += 1
        if outcome == "republished" and producer is not None:
            producer.produce(topic, letter["original_key"], letter["original_value"],
                             republish_headers(record, letter))  # fmt: skip
            producer.poll()
    if producer is not None:
        producer.flush()
    done = outcomes.pop("republished", 0)
    skipped = ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in sorted(outcomes.items()))
    verb = "would republish" if args.dry_run else "republished"
    print(f"{verb} {done} dead letters to {topic}; skipped: {skipped or 'none'}")
    return EXIT_OK


def _margin(settings: Settings, stage: str) -> float:
    if stage == "normalize":
        return float(settings.normalizer.age_safety_margin_s)
    from stream.deliverer import EXPIRY_MARGIN_S

    return EXPIRY_MARGIN_S


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream dlq summary|show|republish`` (handler: :func:`run`)."""
    filters = argparse.ArgumentParser(add_help=False)
    add = filters.add_argument
    add("--stage", choices=("normalize", "deliver"), help="only this stage")
    add("--reason", action="append", metavar="REASON", help="only this reason code (repeatable)")
    add("--pixel", metavar="PIXEL_ID", help="only events of this pixel")
    add("--no-progress", action="store_true", help="no progress line on stderr")
    dlq = sub.add_parser(
        "dlq",
        help="summarize, show and re-publish dead letters",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    summary = actions.add_parser(
        "summary", parents=[filters], help="count dead letters by stage, reason and pixel"
    )
    summary.add_argument("--json", action="store_true", help="print the counts as JSON")
    show = actions.add_parser(
        "show", parents=[filters], help="print dead letters as JSON lines (hashed values only)"
    )
    show.add_argument("--limit", type=int, default=10, help="at most this many (default 10)")
    show.add_argument(
        "--unsafe-show-raw",
        action="store_true",
        help="also show raw values: normalize-stage originals and unhashed "
        "user_data keys, which may be customer data",
    )
    again = actions.add_parser(
        "republish",
        parents=[filters],
        help="put the originals of chosen dead letters back on a topic",
        description="Put the original records of the chosen dead letters back on the raw or "
        "enriched topic, with provenance headers. --reason is required (at least one): "
        "republishing every dead letter would resend events that can never succeed.",
    )
    again.add_argument(
        "--to",
        required=True,
        choices=("raw", "enriched"),
        help="raw takes normalize-stage letters, enriched deliver-stage ones",
    )
    again.add_argument("--limit", type=int, default=None, help="republish at most this many")
    again.add_argument("--dry-run", action="store_true", help="count only; publish nothing")
    dlq.set_defaults(handler=run)  # fmt: skip
