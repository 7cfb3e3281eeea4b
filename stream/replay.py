"""``capi-stream replay``: run a range of a stage's input topic through the stage again.

Two modes:

* ``oneoff`` (default): read the range with a throwaway reader and copy the selected records back
  onto the stage's input topic, each with the header ``capi.replay.source=topic[partition]@offset``;
  the running stage then processes the copies like any record. Filters by pixel; the range can end
  anywhere; the stage's consumer group is untouched.
* ``group``: move the stage's consumer group back to the range start, so the stage re-reads
  everything from there to where it was. The stage must be stopped (no group members).

Both know Meta's limits. An event older than its age limit (7 days, 62 for ``physical_store``,
less the stage's safety margin) would only be dead-lettered: ``oneoff`` counts and skips it,
``group`` counts it and starts after those leading the range. When the oldest record selected
was written more than 48 hours ago, a warning names its age: Meta's dedup window no longer drops
copies of events it already has. Progress counts records (a transactional topic's commit markers
take offsets but are no records) and ends at 100 %.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stream.core.capi import DEDUP_WINDOW_SECONDS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from stream.config import Settings
    from stream.kafka.facts import EventFacts
    from stream.kafka.offsets_admin import OffsetsAdmin
    from stream.kafka.prefix_facts import FactsReader
    from stream.kafka.range_copy import Copier, Output, Tally
    from stream.progress import Progress

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
Ranges = dict[int, tuple[int, int]]
_AGO = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
#: What ``--from``, ``--to``, ``--since`` and ``--until`` accept, for the error message.
MOMENT_FORMS = (
    "ISO 8601 (2026-11-28T14:30:00, no offset = UTC; 2026-11-28T14:30:00+01:00), "
    "Unix seconds (1764340200), or a time ago (90m, 36h, 2d)"
)
_COPIED = frozenset({"copied", "copied_unreadable"})


def parse_moment(text: str, now: float, option: str = "--from") -> int:
    """Unix milliseconds of ``--from``/``--to``: ISO 8601, Unix seconds, or ``36h`` (ago).

    Raises :class:`ValueError` naming ``option`` and the accepted forms.
    """
    from stream.core.csv_map import parse_time

    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return int((now - int(ago.group(1)) * _UNIT_S[ago.group(2)]) * 1000)
    try:
        return parse_time(text) * 1000
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a time; give {MOMENT_FORMS}") from None


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 record``, ``2 records``, ``1 dead letter``; ``many`` for irregular plurals."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage's input side: the topic replayed, its group, and its age margin."""

    name: str
    topic: str
    group_id: str
    enriched: bool
    margin_s: float
    default_pixel: str | None


def stage_of(settings: Settings, name: str) -> Stage:
    """The input side of the ``normalize`` or ``deliver`` stage."""
    if name == "normalize":
        n = settings.normalizer
        margin = n.age_safety_margin_s
        return Stage(name, settings.topics.raw, n.group_id, False, margin, n.default_pixel_id)
    from stream.core.delivery_rules import EXPIRY_MARGIN_S

    d = settings.deliverer
    return Stage(name, settings.topics.enriched, d.group_id, True, EXPIRY_MARGIN_S, None)


@contextmanager
def _reading(
    settings: Settings, stage: Stage, ranges: Ranges, label: str, *, show_progress: bool
) -> Iterator[tuple[FactsReader, Progress]]:
    """The stage input's facts reader and a progress line over the ranges.

    The bar moves by offsets passed (what the range's size is known in) and counts records: a
    transactional topic's commit markers take offsets but are no records.
    """
    from stream import schemas
    from stream.kafka.prefix_facts import FactsReader
    from stream.kafka.serde import build_codecs
    from stream.progress import Progress

    codecs = build_codecs(settings)
    codec = codecs.enriched if stage.enriched else codecs.raw
    schema = schemas.load("capi_event" if stage.enriched else "conversion_event")
    reader = FactsReader(codec, schema, enriched=stage.enriched, default_pixel=stage.default_pixel)
    total = sum(end - start for start, end in ranges.values())
    try:
        with Progress(label, total, enabled=show_progress) as progress:
            yield reader, progress
    finally:
        codecs.close()


def copy_range(
    copier: Copier, settings: Settings, stage: Stage, ranges: Ranges, *,
    pixel: str | None = None, show_progress: bool = False, now: float,
) -> Tally:  # fmt: skip
    """One-off mode: copy the range's sendable records (of ``pixel``) back onto the topic
    (with a dry-run copier: count only)."""
    from stream.kafka.range_copy import SOURCE_HEADER, RawHeaders, Tally, replay_copy

    tally = Tally()
    margin = stage.margin_s
    with _reading(settings, stage, ranges, "replay", show_progress=show_progress) as (facts, bar):
        expired = facts.expiry(now, margin)

        def decide(
            value: bytes | None, key: bytes | None, headers: RawHeaders, where: bytes
        ) -> tuple[str, Output | None]:
            if pixel is None:
                # the time alone decides most records: no event is decoded (prefix_facts)
                verdict = expired(value)
                if verdict is False and headers is None and value is not None:
                    return "copied", (key, value, [(SOURCE_HEADER, where)])  # replay_copy's
                if verdict is False:
                    return "copied", replay_copy(value, key, headers, where)
                outcome = "expired_skipped" if verdict else _unreadable(value, pixel)
            else:
                outcome = _outcome(value, facts.facts(value, need_pixel=True), stage, pixel, now)
            if outcome in _COPIED:
                return outcome, replay_copy(value, key, headers, where)
            return outcome, None

        copier.copy(stage.topic, ranges, stage.topic, decide, tally=tally,
                    on_batch=lambda done, n: bar.update(done, count=n))  # fmt: skip
    return tally


def _unreadable(value: bytes | None, pixel: str | None) -> str:
    # the stage dead-letters it again with its reason; with a pixel filter it cannot match
    return "unreadable_skipped" if pixel is not None or value is None else "copied_unreadable"


def _outcome(
    value: bytes | None, facts: EventFacts | None, stage: Stage, pixel: str | None, now: float
) -> str:
    if facts is None:
        return _unreadable(value, pixel)
    if pixel is not None and facts.pixel_id != pixel:
        return "other_pixel"
    if facts.expired(now, stage.margin_s):
        return "expired_skipped"
    return "copied"


def scan_rewind(
    settings: Settings, stage: Stage, ranges: Ranges, *, show_progress: bool = False, now: float
) -> tuple[Tally, dict[int, int]]:
    """Group mode: count a range's expired events, and per partition the offset after those
    leading the range (rewinding to them would only dead-letter them again). The tally's
    ``oldest_ms`` is the write time of the oldest record to re-read."""
    from stream.kafka.range_copy import Tally
    from stream.kafka.range_reader import read_ranges

    tally = Tally()
    starts = {p: start for p, (start, _) in ranges.items()}
    leading = set(ranges)
    with _reading(settings, stage, ranges, "scan", show_progress=show_progress) as (reader, bar):
        on_batch = lambda done, n: bar.update(done, count=n)  # noqa: E731
        expiry = reader.expiry(now, stage.margin_s)
        for record in read_ranges(settings, stage.topic, ranges, on_batch=on_batch):
            expired = expiry(record.value) is True
            tally.counts[record.partition, "expired" if expired else "to_reread"] += 1
            if record.partition in leading and expired:
                starts[record.partition] = record.offset + 1
                continue
            leading.discard(record.partition)
            ts = record.timestamp_ms
            if ts is not None and ts >= 0 and (tally.oldest_ms is None or ts < tally.oldest_ms):
                tally.oldest_ms = ts
    return tally, starts


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream replay`` (handler: :func:`run`)."""
    p = sub.add_parser(
        "replay",
        help="run a range of the raw or enriched topic through its stage again",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add(
        "--stage",
        required=True,
        choices=("normalize", "deliver"),
        help="normalize replays the raw topic, deliver the enriched topic",
    )
    add(
        "--from",
        dest="from_",
        metavar="TIME",
        help="range start by record timestamp: ISO 8601 (no offset = UTC), Unix seconds, or a "
        "time ago (90m, 36h, 2d)",
    )
    add("--to", metavar="TIME", help="range end, excluded (oneoff mode only)")
    add("--partition", type=int, metavar="N", help="only this partition")
    add(
        "--offsets",
        metavar="FIRST-LAST",
        help="with --partition: offsets FIRST to LAST, both included; FIRST- runs to the end",
    )
    add("--pixel", metavar="PIXEL_ID", help="only events of this pixel (oneoff mode only)")
    add(
        "--mode",
        choices=("oneoff", "group"),
        default="oneoff",
        help="oneoff (default): copy records back onto the input topic for the running stage; "
        "group: rewind the stopped stage's consumer group to the range start",
    )
    add(
        "--dry-run",
        action="store_true",
        help="print per partition what would be copied or moved, and change nothing",
    )
    add("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(handler=run)  # fmt: skip


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.offsets is None and args.from_ is None:
        return "give --from (and optionally --to), or --partition with --offsets"
    if args.offsets is not None and args.partition is None:
        return "--offsets needs --partition"
    if args.offsets is not None and (args.from_ is not None or args.to is not None):
        return "--offsets and --from/--to exclude each other"
    if args.mode == "group" and (args.to is not None or args.pixel is not None):
        return "--to and --pixel need --mode oneoff: a rewound group re-reads everything"
    if args.mode == "group" and args.offsets is not None and not args.offsets.endswith("-"):
        return "in group mode give only the first offset, as FIRST-"
    return None


def run(args: argparse.Namespace) -> int:
    """The ``replay`` handler; returns the exit code."""
    from stream.config import load_settings
    from stream.kafka.cluster import wait_for_cluster
    from stream.kafka.offsets_admin import OffsetsAdmin, one_off, parse_offsets
    from stream.kafka.range_copy import Copier

    now = time.time()
    problem = _usage_problem(args)
    try:
        offsets = parse_offsets(args.offsets) if args.offsets is not None else None
        from_ms = parse_moment(args.from_, now, "--from") if args.from_ is not None else None
        to_ms = parse_moment(args.to, now, "--to") if args.to is not None else None
    except ValueError as exc:
        problem = problem or str(exc)
    if problem is not None:
        print(f"capi-stream replay: {problem}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = load_settings(args.config, **overrides)
    wait_for_cluster(
        one_off(settings),
        lambda line: print(f"capi-stream replay: {line}", file=sys.stderr, flush=True),
    )
    stage = stage_of(settings, args.stage)

    def lookup(admin: OffsetsAdmin) -> Ranges:
        return admin.ranges(
            stage.topic, partition=args.partition, offsets=offsets, from_ms=from_ms, to_ms=to_ms
        )

    if args.mode == "group":
        admin = OffsetsAdmin(settings)
        return _rewind(args, settings, stage, admin, lookup(admin), now=now)
    # the copier's producer connects while the ranges are looked up
    with Copier(settings, dry_run=args.dry_run) as copier:
        ranges = lookup(OffsetsAdmin(settings))
        tally = copy_range(copier, settings, stage, ranges, pixel=args.pixel,
                           show_progress=not args.no_progress, now=now)  # fmt: skip
    labels = _DRY_LABELS if args.dry_run else _LABELS
    for p, (start, end) in sorted(ranges.items()):
        print(f"{stage.topic}[{p}] offsets {start}..{end - 1}: {_counts(tally, p, labels)}")
    copied = tally.total(*_COPIED)
    skipped = (f"{tally.total('expired_skipped'):,} past Meta's age limit, "
               f"{tally.total('other_pixel'):,} of other pixels, "
               f"{tally.total('unreadable_skipped'):,} unreadable")  # fmt: skip
    if args.dry_run:
        print(f"would copy {plural(copied, 'record')} onto {stage.topic}; would skip {skipped}")
    else:
        print(f"copied {plural(copied, 'record')} onto {stage.topic}; skipped {skipped}")
    _warn_dedup(tally.oldest_ms, now, "would be copied" if args.dry_run else "copied")
    return EXIT_OK


_LABELS = {"copied": "copied", "copied_unreadable": "copied unreadable",
           "expired_skipped": "skipped past Meta's age limit",
           "other_pixel": "of other pixels", "unreadable_skipped": "skipped unreadable",
           "expired": "past Meta's age limit", "to_reread": "to re-read"}  # fmt: skip
_DRY_LABELS = {**_LABELS, "copied": "would be copied",
               "copied_unreadable": "would be copied unreadable",
               "expired_skipped": "would be skipped past Meta's age limit",
               "unreadable_skipped": "would be skipped unreadable"}  # fmt: skip


def _counts(tally: Tally, partition: int, labels: dict[str, str]) -> str:
    """One partition's counts: ``3 copied, 1 skipped past Meta's age limit``."""
    items = sorted((o, n) for (p, o), n in tally.counts.items() if p == partition)
    return ", ".join(f"{n:,} {labels.get(o, o.replace('_', ' '))}" for o, n in items) or (
        "no records"
    )


def _warn_dedup(oldest_ms: int | None, now: float, verb: str) -> None:
    """Warn when the oldest selected record is older than Meta's dedup window."""
    if oldest_ms is None or oldest_ms >= (now - DEDUP_WINDOW_SECONDS) * 1000:
        return
    age_s = now - oldest_ms / 1000
    age = (
        plural(int(age_s // 86_400), "day")
        if age_s >= 2 * 86_400
        else plural(int(age_s // 3_600), "hour")
    )
    when = datetime.fromtimestamp(oldest_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    _warn(f"the oldest record that {verb} was written {age} ago ({when}): Meta drops a repeat "
          "of an event only within 48 hours of the first, so events it already has may be "
          "counted twice")  # fmt: skip


def _rewind(
    args: argparse.Namespace, settings: Settings, stage: Stage, admin: OffsetsAdmin,
    ranges: Ranges, *, now: float,
) -> int:  # fmt: skip
    group = admin.group(stage.group_id)
    if group.members:
        why = (f"consumer group {group.group_id} has "
               f"{plural(len(group.members), 'active member')} "
               f"({', '.join(group.members)}); stop the {stage.name} stage before moving its "
               "offsets, or use --mode oneoff")  # fmt: skip
        if not args.dry_run:
            print(f"capi-stream replay: {why}", file=sys.stderr)
            return EXIT_FAILURE
        _warn(why)
    committed = admin.committed(stage.group_id, stage.topic, ranges)
    # only rewinds: moving a group forward would skip records it has not processed yet
    rewind = {p: (start, committed[p]) for p, (start, _) in ranges.items()
              if committed.get(p, -1) > start}  # fmt: skip
    tally, starts = scan_rewind(settings, stage, rewind, show_progress=not args.no_progress,
                                now=now)  # fmt: skip
    for p in sorted(ranges):
        if p not in rewind:
            at = committed.get(p, -1)
            where = f"stays at {at}" if at >= 0 else "has no committed offset and stays so"
            print(f"{stage.topic}[{p}]: {where} (the range does not start before the group)")
            continue
        skipped = starts[p] - rewind[p][0]
        lead = f"; the first {skipped:,} expired, skipped" if skipped else ""
        counts = _counts(tally, p, _LABELS)
        print(f"{stage.topic}[{p}]: {committed[p]} -> {starts[p]} ({counts}{lead})")
    moves = {p: starts[p] for p in rewind if starts[p] < committed[p]}
    if not args.dry_run:
        admin.move_group(stage.group_id, stage.topic, moves)
    reread = sum(committed[p] - s for p, s in moves.items())
    print(f"{'would move' if args.dry_run else 'moved'} group {stage.group_id} on "
          f"{plural(len(moves), 'partition')}: {plural(reread, 'offset')} to re-read, "
          f"{tally.total('expired'):,} of the range past Meta's age limit")  # fmt: skip
    _warn_dedup(tally.oldest_ms, now, "would be re-read" if args.dry_run else "is re-read")
    return EXIT_OK


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)
