"""What ``/status`` says about a deliver stage's lanes, and how a person reads it.

The stage builds one :class:`StageStatus` (on its loop's thread, from its lanes); the health
server serves :meth:`StageStatus.to_json` as ``/status``; ``/readyz`` names the halted lanes
(:func:`halted_lines`); ``capi-stream status --url`` prints :func:`table`. Times are Unix
seconds (the JSON) and ages in seconds; no token, secret or event content is ever part of it.

Example ``/status``::

    {"stage": "deliver", "worker": 0, "ready": false, "lanes": [
      {"pixel_id": "123", "test_event_code": null, "destination": "graph",
       "state": "halted", "since": 1796108000.0, "pending": 412, "in_flight": 1,
       "oldest_event_age_s": 3605.2, "oldest_wait_s": 61.0, "last_success_at": 1796107990.5,
       "last_error": {"code": 190, "subcode": 463, "message": "Session has expired",
                      "fbtrace_id": "AbC", "at": 1796108000.0}}]}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

State = Literal["running", "throttled", "halted"]


@dataclass(frozen=True, slots=True)
class LaneError:
    """Meta's last error on a lane, as Meta said it."""

    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class LaneStatus:
    """One lane (destination, pixel, test event code) at one moment."""

    pixel_id: str
    test_event_code: str | None
    destination: str
    state: State
    #: when the lane entered ``state`` (None: running since start)
    since: float | None = None
    pending: int = 0
    in_flight: int = 0
    #: age (now minus event_time) of the oldest pending event: Meta's limit applies to it
    oldest_event_age_s: float | None = None
    #: how long the oldest pending event has waited in this stage
    oldest_wait_s: float | None = None
    last_success_at: float | None = None
    last_error: LaneError | None = None


@dataclass(frozen=True, slots=True)
class StageStatus:
    """A stage's lanes, as ``/status`` serves them."""

    stage: str
    worker: int
    ready: bool
    lanes: Sequence[LaneStatus] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The ``/status`` document (see the module docstring)."""
        return {
            "stage": self.stage, "worker": self.worker, "ready": self.ready,
            "lanes": [asdict(lane) for lane in self.lanes],
        }  # fmt: skip


def halted_lines(status: Mapping[str, Any]) -> list[str]:
    """One line per halted lane of a ``/status`` document: pixel, since, Meta's code and message.

    >>> halted_lines({"lanes": [{"pixel_id": "1", "state": "halted", "since": None,
    ...     "last_error": {"code": 190, "subcode": None, "message": "bad", "fbtrace_id": "T"}}]})
    ['pixel 1 halted: code 190: bad (fbtrace_id T)']
    """
    lines = []
    for lane in status.get("lanes", ()):
        if lane.get("state") != "halted":
            continue
        since = lane.get("since")
        when = f" since {_iso(since)}" if isinstance(since, int | float) else ""
        test = f" (test {lane['test_event_code']})" if lane.get("test_event_code") else ""
        lines.append(f"pixel {lane.get('pixel_id')}{test} halted{when}: {_error(lane)}")
    return lines


def table(status: Mapping[str, Any], now: float) -> str:
    """The ``/status`` document as a table for a terminal, one row per lane, ages as of ``now``."""
    head = (f"{status.get('stage', '?')} worker {status.get('worker', '?')}: "
            f"{'ready' if status.get('ready') else 'NOT READY'}")  # fmt: skip
    columns = ("PIXEL", "STATE", "SINCE", "PENDING", "IN FLIGHT", "OLDEST AGE", "LAST SUCCESS",
               "LAST ERROR")  # fmt: skip
    rows = [columns]
    for lane in status.get("lanes", ()):
        pixel = str(lane.get("pixel_id"))
        if lane.get("test_event_code"):
            pixel += f" (test {lane['test_event_code']})"
        rows.append((
            pixel, str(lane.get("state")), _ago(lane.get("since"), now),
            str(lane.get("pending", 0)), str(lane.get("in_flight", 0)),
            _duration(lane.get("oldest_event_age_s")), _ago(lane.get("last_success_at"), now),
            _error(lane) if lane.get("last_error") else "-",
        ))  # fmt: skip
    if len(rows) == 1:
        return f"{head}\nno lanes yet"
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  " + row[-1]
        for row in rows
    ]  # fmt: skip
    return "\n".join([head, *lines])


def _error(lane: Mapping[str, Any]) -> str:
    error = lane.get("last_error") or {}
    code = error.get("code")
    text = f"code {code}" + (f"/{error['subcode']}" if error.get("subcode") else "")
    if error.get("message"):
        text += f": {error['message']}"
    if error.get("fbtrace_id"):
        text += f" (fbtrace_id {error['fbtrace_id']})"
    return text if code is not None or error.get("message") else "no error recorded"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _ago(ts: object, now: float) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return _duration(now - ts) + " ago"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = max(float(seconds), 0.0)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172_800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86_400:.1f}d"
