"""Amounts and date-times as exports write them: ``$1,000.50``, ``12,50``, ``11/28/2026 2:30 PM``.

Pure: the caller says how the file writes them (:class:`ValueForms`), because the same text
means different things in different exports: ``12,50`` is twelve and a half with a decimal
comma and an error without one (never silently 1250); ``03/04/2026`` is the 4th of March in
month-day-year order and the 3rd of April in day-month-year order, so a slash date needs the
order stated and is never guessed row by row.

Each refusal is a ``ValueError`` without the text (it may be customer data); :func:`accepted`
is the line a person reads instead: the forms that would have been taken.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal

DateOrder = Literal["mdy", "dmy"]

# symbols written before or after an amount; an ISO code is a column of its own (currency)
_SIGNS: Final = "$€£¥₹₩₽₺₪₫₱₦₴ \u00a0"
_POINT: Final = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+")
# with a decimal comma, thousands are grouped by dots or spaces (also no-break ones)
_COMMA: Final = re.compile(r"(?:\d{1,3}(?:[. \u00a0\u202f]\d{3})+|\d+)(?:,\d+)?|,\d+")
_GROUPING: Final = str.maketrans({".": None, " ": None, "\u00a0": None, "\u202f": None, ",": "."})
_DECIMAL: Final = re.compile(r"[+-]?\d+(\.\d*)?")
_DAY_FIRST_OR_MONTH_FIRST: Final = re.compile(
    r"(?P<a>\d{1,4})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{2,4})"
    r"(?:[ T,]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?"
    r"\s*(?P<half>[AaPp]\.?[Mm]\.?)?)?"
    r"\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True, slots=True)
class ValueForms:
    """How one file writes amounts and date-times.

    ``decimal_comma``: ``12,50`` and ``1.000,50`` (else ``12.50`` and ``1,000.50``);
    ``date_order``: how a date with slashes, dots or dashes and a short first number reads.
    """

    decimal_comma: bool = False
    date_order: DateOrder | None = None


DEFAULT_FORMS: Final = ValueForms()


def parse_amount(text: str, forms: ValueForms = DEFAULT_FORMS) -> float:
    """A finite number from an amount as written. Raises ValueError.

    ``"12.50"`` → 12.5; ``"$1,000.50"`` → 1000.5; ``"-€3"`` → -3.0; with ``decimal_comma``:
    ``"12,50"`` → 12.5, ``"1.000,50 €"`` → 1000.5. Refused: ``"12,50"`` without it (a
    thousands comma groups three digits), ``"nan"``, ``"1.5.2"``.
    """
    if not forms.decimal_comma:
        try:
            number = float(text)  # the common case: plain decimal text, at C speed
        except ValueError:
            pass
        else:
            if not math.isfinite(number):
                raise ValueError("not a finite number")
            return number
    body = text.strip()
    sign = ""
    if body.startswith(("+", "-")):
        sign, body = body[0], body[1:]
    body = body.strip(_SIGNS)
    if not sign and body.startswith(("+", "-")):  # $-12.50
        sign, body = body[0], body[1:]
    if forms.decimal_comma:
        if not _COMMA.fullmatch(body):
            raise ValueError("not an amount")
        return float(sign + body.translate(_GROUPING))
    if not _POINT.fullmatch(body):
        raise ValueError("not an amount")
    return float(sign + body.replace(",", ""))


def parse_time(text: str, forms: ValueForms = DEFAULT_FORMS) -> int:
    """Unix seconds from a date-time as written; no offset means UTC. Raises ValueError.

    ``"1767225600"`` → 1767225600; ``"2026-01-01T00:00:00Z"``, ``"2026-01-01 01:00+01:00"``
    and ``"2026/01/01 00:00"`` → 1767225600; with ``date_order="mdy"``:
    ``"11/28/2026 2:30 PM"`` → 1795876200, with ``"dmy"``: ``"28.11.2026 14:30"`` → the same.
    """
    text = text.strip()
    if text.isascii() and text.isdigit():  # the common case, without the pattern
        return int(text)
    if _DECIMAL.fullmatch(text):
        return int(text.split(".", 1)[0])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = _written_date(text, forms.date_order)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _written_date(text: str, order: DateOrder | None) -> datetime:
    found = _DAY_FIRST_OR_MONTH_FIRST.fullmatch(text)
    if found is None:
        raise ValueError("not a date-time")
    a, b, c = found["a"], found["b"], found["c"]
    if len(a) == 4:  # 2026/11/28: year first is never ambiguous
        year, month, day = int(a), int(b), int(c)
    elif len(a) > 2 or order is None:
        raise ValueError("a date whose order is not given")
    else:
        year = int(c) + (2000 if len(c) == 2 else 0)
        month, day = (int(a), int(b)) if order == "mdy" else (int(b), int(a))
        if len(c) == 3:
            raise ValueError("a three-digit year")
    hour = int(found["hour"] or 0)
    half = (found["half"] or "").lower()[:1]
    if half:
        if not 1 <= hour <= 12:
            raise ValueError("an hour past 12 with AM or PM")
        hour = hour % 12 + (12 if half == "p" else 0)
    zone = found["zone"]
    tz = UTC
    if zone and zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(-offset if zone[0] == "-" else offset)
    return datetime(year, month, day, hour, int(found["minute"] or 0),
                    int(found["second"] or 0), tzinfo=tz)  # fmt: skip


def accepted_amount(forms: ValueForms = DEFAULT_FORMS) -> str:
    """The amounts :func:`parse_amount` takes, as a person reads them."""
    if forms.decimal_comma:
        return "an amount: 12,50, 1.000,50 or 12,50 € (decimal comma)"
    return "an amount: 12.50, 1,000.50 or $12.50 (12,50 with --decimal-comma)"


def accepted_time(forms: ValueForms = DEFAULT_FORMS) -> str:
    """The date-times :func:`parse_time` takes, as a person reads them."""
    common = "Unix seconds, 2026-11-28T14:30:00Z, 2026-11-28 14:30"
    if forms.date_order == "mdy":
        return f"a date-time: {common}, 11/28/2026 14:30 or 11/28/2026 2:30 PM"
    if forms.date_order == "dmy":
        return f"a date-time: {common}, 28/11/2026 14:30 or 28.11.2026 14:30"
    return f"a date-time: {common}, or 11/28/2026 14:30 with --date-order mdy (dmy: 28/11/2026)"
