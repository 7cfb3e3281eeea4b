"""``capi-stream quality report``: Meta's numbers beside ours, one row per pixel and event name.

Rows are joined on (pixel, event label): standard event names as they are, and every custom
name of the local side under ``custom`` (:func:`stream.core.match_quality.event_label`); Meta's
custom rows keep their own names and are matched to the local ``custom`` row. Columns::

    PIXEL  EVENT  EVENTS  SCORE  EMQ  em  ph  external_id  fbc  fbp  ip_ua  COVERAGE  FRESHNESS  FIX

``EVENTS`` and ``SCORE`` are local (events counted in the enriched topic, and the local
match-key score, an estimate); ``EMQ`` is Meta's composite score; each key column reads
``ours/Meta`` in percent of events carrying the key (``-`` where a side has no number; for
``ip_ua`` Meta's side is the lower of its IP and user-agent coverage); ``COVERAGE`` is Meta's
event coverage over its goal; ``FIX`` is the most valuable change, from our coverage when we
have it (it is what we send), else from Meta's, else event coverage below its goal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from stream.core.match_quality import (
    CUSTOM,
    IP_UA,
    Coverage,
    best_fix,
    event_label,
    local_score,
)
from stream.quality.model import DatasetQuality, MetaRow, PollFailure

#: The key columns of the table (all keys are in the JSON).
TABLE_KEYS: Final = ("em", "ph", "external_id", "fbc", "fbp", IP_UA)
COLUMNS: Final = ("PIXEL", "EVENT", "EVENTS", "SCORE", "EMQ", *TABLE_KEYS, "COVERAGE",
                  "FRESHNESS", "FIX")  # fmt: skip
_NONE: Final = "-"


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One pixel and event name: our numbers, Meta's, and the fix."""

    pixel: str
    event_name: str
    events: int | None  # local events counted (None: none seen locally)
    local_score: float | None  # the local match-key score, an estimate (not EMQ)
    local_coverage: Mapping[str, float]
    meta_emq: float | None
    meta_coverage: Mapping[str, float]
    event_coverage: float | None
    coverage_goal: float | None
    acr: float | None
    freshness: str | None
    diagnostics: tuple[str, ...]
    missing: tuple[str, ...]  # fields Meta left out of this row
    fix: str | None

    def to_json(self) -> dict[str, Any]:
        """The row for ``--json`` (ratios 0-1, as exported to Prometheus)."""
        out = asdict(self)
        out["local_coverage"] = dict(self.local_coverage)
        out["meta_coverage"] = dict(self.meta_coverage)
        out["diagnostics"] = list(self.diagnostics)
        out["missing"] = list(self.missing)
        return out


def meta_ratios(row: MetaRow) -> dict[str, float]:
    """Meta's per-key coverage in our key names, with ``ip_ua`` as the lower of IP and UA."""
    ratios = dict(row.key_coverage)
    ip, ua = ratios.get("client_ip_address"), ratios.get("client_user_agent")
    if ip is not None and ua is not None:
        ratios[IP_UA] = min(ip, ua)
    return ratios


def advice(
    event_name: str,
    local: Mapping[str, float] | None,
    meta: Mapping[str, float] | None,
    event_coverage: float | None = None,
    goal: float | None = None,
) -> str | None:
    """The most valuable fix of one row (see the module docstring), or None."""
    for coverage in (local, meta):
        if coverage:
            fix = best_fix(coverage)
            if fix is not None:
                return fix.advice(event_name)
            break
    if event_coverage is not None and goal is not None and event_coverage < goal:
        return (
            f"send more {event_name} events by server: event coverage "
            f"{round(event_coverage * 100)} % is below Meta's goal of {round(goal * 100)} %"
        )
    return None


def build_rows(
    local: Mapping[tuple[str, str], Coverage], meta: Iterable[DatasetQuality]
) -> list[ReportRow]:
    """Join local coverage and Meta's rows; sorted by pixel, then event name."""
    rows: list[ReportRow] = []
    seen: set[tuple[str, str]] = set()
    for dataset in meta:
        for meta_row in dataset.rows:
            label = event_label(meta_row.event_name)
            cov = local.get((dataset.pixel, label))
            seen.add((dataset.pixel, label))
            rows.append(_row(dataset.pixel, meta_row.event_name, cov, meta_row))
    for (pixel, label), cov in local.items():
        if (pixel, label) not in seen:
            rows.append(_row(pixel, label, cov, None))
    return sorted(rows, key=lambda r: (r.pixel, r.event_name == CUSTOM, r.event_name))


def _row(pixel: str, name: str, cov: Coverage | None, meta: MetaRow | None) -> ReportRow:
    local = cov.ratios() if cov is not None and cov.events else None
    theirs = meta_ratios(meta) if meta is not None else None
    return ReportRow(
        pixel=pixel,
        event_name=name,
        events=cov.events if cov is not None else None,
        local_score=local_score(local) if local is not None else None,
        local_coverage={k: v for k, v in (local or {}).items() if v > 0},
        meta_emq=meta.emq if meta else None,
        meta_coverage=theirs or {},
        event_coverage=meta.event_coverage if meta else None,
        coverage_goal=meta.coverage_goal if meta else None,
        acr=meta.acr if meta else None,
        freshness=meta.freshness if meta else None,
        diagnostics=meta.diagnostics if meta else (),
        missing=meta.missing if meta else (),
        fix=advice(
            name,
            local,
            theirs,
            meta.event_coverage if meta else None,
            meta.coverage_goal if meta else None,
        ),
    )


def pixel_lines(coverage: Mapping[tuple[str, str], Coverage]) -> list[str]:
    """One line per pixel over all its events: the local score and the main keys' coverage.

    >>> pixel_lines({("111", "Purchase"): Coverage(10, {"em": 10, "ph": 6})})
    ['pixel 111: 10 events, local score 2.9 (estimate, not EMQ); em 100 %, ph 60 %, external_id 0 %, fbc 0 %, fbp 0 %, ip_ua 0 %']
    """  # noqa: E501 - a doctest line
    events: dict[str, int] = {}
    carrying: dict[str, dict[str, int]] = {}
    for (pixel, _), cov in coverage.items():
        events[pixel] = events.get(pixel, 0) + cov.events
        mine = carrying.setdefault(pixel, {})
        for key, n in cov.carrying.items():
            mine[key] = mine.get(key, 0) + n
    lines = []
    for pixel in sorted(events):
        merged = Coverage(events[pixel], carrying[pixel])
        keys = ", ".join(f"{k} {round(100 * merged.ratio(k))} %" for k in TABLE_KEYS)
        lines.append(
            f"pixel {pixel}: {merged.events} events, local score {merged.score()} "
            f"(estimate, not EMQ); {keys}"
        )
    return lines


def _pct(value: float | None) -> str:
    return _NONE if value is None else f"{value * 100:.0f}"


def _num(value: float | None) -> str:
    return _NONE if value is None else f"{value:.1f}"


def _cells(row: ReportRow) -> list[str]:
    keys = []
    for key in TABLE_KEYS:
        ours = row.local_coverage.get(key, 0.0) if row.events else None
        keys.append(f"{_pct(ours)}/{_pct(row.meta_coverage.get(key))}")
    coverage = f"{_pct(row.event_coverage)}/{_pct(row.coverage_goal)}"
    return [
        row.pixel, row.event_name, _NONE if row.events is None else str(row.events),
        _num(row.local_score), _num(row.meta_emq), *keys, coverage,
        row.freshness or _NONE, row.fix or "",
    ]  # fmt: skip


def table(rows: Sequence[ReportRow]) -> str:
    """The rows as an aligned text table (the last column, FIX, is not padded)."""
    cells = [list(COLUMNS), *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


def notes(meta: Iterable[DatasetQuality], failures: Iterable[PollFailure]) -> list[str]:
    """Lines under the table: pixels Meta gave nothing for, and fields it left out."""
    out = [f"pixel {f.pixel}: Meta's numbers unavailable ({f.kind}: {f.message})" for f in failures]
    for dataset in meta:
        if dataset.unavailable:
            out.append(
                f"pixel {dataset.pixel}: Meta refused or left out "
                f"{', '.join(dataset.unavailable)} (not in this API version)"
            )
        missing = sorted({m for row in dataset.rows for m in row.missing})
        if missing:
            out.append(f"pixel {dataset.pixel}: some rows lack {', '.join(missing)}")
    return out


def to_json(
    rows: Sequence[ReportRow],
    meta: Iterable[DatasetQuality],
    failures: Iterable[PollFailure],
    local_info: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "rows": [r.to_json() for r in rows],
        "unavailable": {d.pixel: list(d.unavailable) for d in meta if d.unavailable},
        "failures": [
            {"pixel": f.pixel, "kind": f.kind, "code": f.code, "message": f.message}
            for f in failures
        ],
        "local": dict(local_info),
        "local_score": "an estimate from the keys capi-stream sends; not Meta's EMQ",
    }
