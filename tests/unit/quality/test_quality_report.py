"""The report: rows joined per pixel and event name, its columns, advice, JSON and chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from stream.core.errors import ConfigError
from stream.core.match_quality import Coverage
from stream.quality.model import DatasetQuality, MetaRow, PollFailure
from stream.quality.report import (
    COLUMNS,
    advice,
    build_rows,
    notes,
    pixel_lines,
    table,
    to_json,
)

PIXEL = "111"


def _meta(name: str = "Purchase", **kw: object) -> MetaRow:
    values: dict[str, object] = {
        "event_name": name, "emq": 6.3,
        "key_coverage": {"em": 0.98, "ph": 0.6, "client_ip_address": 0.9,
                         "client_user_agent": 1.0},
        "event_coverage": 0.5, "coverage_goal": 0.75, "acr": None, "freshness": "real_time",
        "diagnostics": (), "missing": ("acr",),
    }  # fmt: skip
    values.update(kw)
    return MetaRow(**values)  # type: ignore[arg-type]


def _local() -> dict[tuple[str, str], Coverage]:
    # 100 Purchases: e-mail on all, phone on 62, IP + UA on all; 10 custom events, e-mail only
    purchase = Coverage(100, {"em": 100, "ph": 62, "client_ip_address": 100,
                              "client_user_agent": 100, "ip_ua": 100,
                              "external_id": 100, "fbc": 100, "fbp": 100})  # fmt: skip
    return {(PIXEL, "Purchase"): purchase, (PIXEL, "custom"): Coverage(10, {"em": 10})}


def test_columns_are_pinned() -> None:
    """The table's header: ours and Meta's numbers side by side, then the fix."""
    assert COLUMNS == ("PIXEL", "EVENT", "EVENTS", "SCORE", "EMQ", "em", "ph", "external_id",
                       "fbc", "fbp", "ip_ua", "COVERAGE", "FRESHNESS", "FIX")  # fmt: skip


def test_rows_join_local_and_meta() -> None:
    """One row per pixel and event name with both sides; a row only one side knows is kept."""
    meta = [DatasetQuality(PIXEL, (_meta(), _meta("Lead", emq=4.0)))]
    rows = build_rows(_local(), meta)
    assert [(r.pixel, r.event_name) for r in rows] == [
        (PIXEL, "Lead"), (PIXEL, "Purchase"), (PIXEL, "custom"),
    ]  # fmt: skip
    lead, purchase, custom = rows
    assert (purchase.events, purchase.meta_emq) == (100, 6.3)
    # 2 + 1.5 * 0.62 + 1 + 1 + 0.75 + 1 = 6.68
    assert purchase.local_score == 6.7
    assert purchase.local_coverage["ph"] == 0.62
    assert purchase.meta_coverage["ip_ua"] == 0.9  # the lower of Meta's IP and UA coverage
    assert purchase.fix == "add ph: 38 % of Purchase events carry no phone"
    assert (lead.events, lead.local_score, lead.meta_emq) == (None, None, 4.0)
    assert (custom.events, custom.meta_emq) == (10, None)


def test_table_shows_ours_over_metas_per_key() -> None:
    """Key cells read ours/Meta in percent; a side without a number shows -."""
    rows = build_rows(_local(), [DatasetQuality(PIXEL, (_meta(),))])
    text = table(rows)
    header, purchase, custom = text.splitlines()
    assert header.split() == list(COLUMNS)
    cells = purchase.split()
    assert cells[:5] == [PIXEL, "Purchase", "100", "6.7", "6.3"]
    assert cells[5:11] == ["100/98", "62/60", "100/-", "100/-", "100/-", "100/90"]
    assert cells[11:13] == ["50/75", "real_time"]
    assert purchase.endswith("add ph: 38 % of Purchase events carry no phone")
    assert custom.split()[3:7] == ["2.0", "-", "100/-", "0/-"]


def test_advice_prefers_our_coverage_then_metas_then_event_coverage() -> None:
    """What we send decides; without it Meta's coverage; with every key, event coverage."""
    assert advice("Lead", {"em": 1.0}, {"ph": 1.0}) == (
        "add ph: 100 % of Lead events carry no phone"
    )
    assert advice("Lead", None, {"em": 0.5, "ph": 1.0}) == (
        "add em: 50 % of Lead events carry no e-mail"
    )
    full = dict.fromkeys(("em", "ph", "external_id", "fbc", "fbp", "ip_ua", "fn", "ln", "ct",
                          "st", "zp", "country", "db", "ge"), 1.0)  # fmt: skip
    assert advice("Lead", full, None, 0.4, 0.75) == (
        "send more Lead events by server: event coverage 40 % is below Meta's goal of 75 %"
    )
    assert advice("Lead", full, None, 0.9, 0.75) is None


def test_notes_name_failures_and_missing_fields() -> None:
    """A pixel Meta refused and fields it left out are reported under the table."""
    meta = [DatasetQuality(PIXEL, (_meta(),), ("diagnostics",))]
    failures = [PollFailure("222", "setup", "Invalid OAuth access token", 190)]
    lines = notes(meta, failures)
    assert lines == [
        "pixel 222: Meta's numbers unavailable (setup: Invalid OAuth access token)",
        "pixel 111: Meta refused or left out diagnostics (not in this API version)",
        "pixel 111: some rows lack acr",
    ]


def test_json_document() -> None:
    """--json holds every row with full coverage maps, failures and the local read's size."""
    rows = build_rows(_local(), [DatasetQuality(PIXEL, (_meta(),))])
    doc = to_json(rows, [], [PollFailure("222", "throttled", "limit", 17)], {"records": 110})
    text = json.dumps(doc)  # serializable as is
    assert json.loads(text)["failures"] == [
        {"pixel": "222", "kind": "throttled", "code": 17, "message": "limit"}
    ]
    purchase = doc["rows"][0]
    assert set(purchase) >= {"pixel", "event_name", "events", "local_score", "local_coverage",
                             "meta_emq", "meta_coverage", "event_coverage", "coverage_goal",
                             "freshness", "fix"}  # fmt: skip
    assert purchase["local_coverage"]["ph"] == 0.62
    assert doc["local"] == {"records": 110}
    assert "not Meta's EMQ" in doc["local_score"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    """--plot draws a chart file (matplotlib is a dev dependency)."""
    pytest.importorskip("matplotlib")
    from stream.quality.plot import plot

    rows = build_rows(_local(), [DatasetQuality(PIXEL, (_meta(),))])
    out = plot(rows, tmp_path / "quality.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing matplotlib is a ConfigError naming the extra, not a traceback."""
    from stream.quality import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"capi-stream\[plot\]"):
        plot._pyplot()


def test_pixel_lines_sum_a_pixels_events() -> None:
    """The demo's per-pixel line: all event names of a pixel together, score and main keys."""
    lines = pixel_lines(_local())
    assert lines == [
        "pixel 111: 110 events, local score 6.3 (estimate, not EMQ); em 100 %, ph 56 %, "
        "external_id 91 %, fbc 91 %, fbp 91 %, ip_ua 91 %"
    ]
