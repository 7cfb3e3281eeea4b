"""Dates of birth in the many orders people write them, to ``YYYYMMDD`` (capi.md rules, ``db``).

Accepted (the year has four digits; it must lie in 1900..the current year, which the caller
derives from the ``now`` it was given)::

    "1997-02-16", "1997/2/16", "19970216", "1997-02-16T00:00:00Z"   year first
    "2/16/1997", "16.02.1997", "16/2/1997"                            year last
    "16 Feb 1997", "February 16th, 1997", "1997 feb 16"              month by name (English)

A year-last date whose first two numbers could both be a month (``"03/04/1997"``) is read
month first when ``day_first`` is False (the US habit) and day first otherwise; a number above
12 settles the order either way. Two-digit years are refused: no rule could tell 1905 from
2005, and a wrong date hashes to a value that can never match.
"""

from __future__ import annotations

import calendar
import re
from typing import Final

_TOKEN: Final = re.compile(r"\d+|[^\W\d_]+")
# A time of day after the date ("T00:00:00Z", " 13:45"), ignored.
_TIME: Final = re.compile(r"[t\s]\d{1,2}:\d{2}.*$", re.DOTALL)

MONTHS: Final = {
    "jan": 1,
    "january": 1,
    "feb": 2,
    "february": 2,
    "mar": 3,
    "march": 3,
    "apr": 4,
    "april": 4,
    "may": 5,
    "jun": 6,
    "june": 6,
    "jul": 7,
    "july": 7,
    "aug": 8,
    "august": 8,
    "sep": 9,
    "sept": 9,
    "september": 9,
    "oct": 10,
    "october": 10,
    "nov": 11,
    "november": 11,
    "dec": 12,
    "december": 12,
}
# Words that may sit between the numbers without meaning anything: ordinal suffixes, "of".
_FILLER: Final = frozenset({"st", "nd", "rd", "th", "of"})
_MIN_YEAR: Final = 1900
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The shapes most dates arrive in: three ASCII numbers with separators, or eight digits. For
# them the general path below finds no time and no word, so its answer is the one of
# _three_numbers or _eight_digits on the same numbers, asked directly.
_THREE_NUMBERS: Final = re.compile(r"([0-9]{1,4})[-/.]([0-9]{1,4})[-/.]([0-9]{1,4})")
_EIGHT_DIGITS: Final = re.compile(r"[0-9]{8}")


def _ymd(year: int, month: int, day: int, current_year: int) -> str | None:
    if not _MIN_YEAR <= year <= current_year or not 1 <= month <= 12:
        return None
    # calendar.monthrange(year, month)[1], without its weekday arithmetic
    last = 29 if month == 2 and calendar.isleap(year) else _DAYS_IN_MONTH[month]
    if not 1 <= day <= last:
        return None
    return f"{year:04d}{month:02d}{day:02d}"


def _eight_digits(run: str, current_year: int, day_first: bool) -> str | None:
    # YYYYMMDD first (the canonical form itself), then the year-last orders.
    found = _ymd(int(run[:4]), int(run[4:6]), int(run[6:]), current_year)
    if found is not None:
        return found
    first, second, year = int(run[:2]), int(run[2:4]), int(run[4:])
    if day_first:
        return _ymd(year, second, first, current_year) or _ymd(year, first, second, current_year)
    return _ymd(year, first, second, current_year) or _ymd(year, second, first, current_year)


def _three_numbers(parts: list[str], current_year: int, day_first: bool) -> str | None:
    a, b, c = parts
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:
        year, month, day = int(a), int(b), int(c)
        if month > 12 >= day:
            # "1997-16-02": year, day, month.
            month, day = day, month
        return _ymd(year, month, day, current_year)
    if len(c) == 4 and len(a) <= 2 and len(b) <= 2:
        year, first, second = int(c), int(a), int(b)
        if first > 12 or (day_first and second <= 12):
            return _ymd(year, second, first, current_year)
        return _ymd(year, first, second, current_year)
    return None


def parse_birth_date(prepared: str, current_year: int, *, day_first: bool = False) -> str | None:
    """``YYYYMMDD`` for a prepared (trimmed, lowercase) date, or None when it is not one.

    ``"2/16/1997"`` → ``"19970216"``; ``"16 feb 1997"`` → ``"19970216"``;
    ``"1997-02-30"`` → None; ``"2/16/97"`` → None.
    """
    three = _THREE_NUMBERS.fullmatch(prepared)
    if three is not None:
        return _three_numbers(list(three.groups()), current_year, day_first)
    if _EIGHT_DIGITS.fullmatch(prepared) is not None:
        return _eight_digits(prepared, current_year, day_first)
    text = _TIME.sub("", prepared)
    numbers: list[str] = []
    month: int | None = None
    for token in _TOKEN.findall(text):
        if token.isdecimal():
            if len(token) > 8:
                # Also keeps int() away from huge digit runs.
                return None
            numbers.append(token)
        elif token in MONTHS and month is None:
            month = MONTHS[token]
        elif token not in _FILLER:
            return None
    if month is not None:
        if len(numbers) != 2:
            return None
        years = [n for n in numbers if len(n) == 4]
        days = [n for n in numbers if len(n) <= 2]
        if len(years) != 1 or len(days) != 1:
            return None
        return _ymd(int(years[0]), month, int(days[0]), current_year)
    if len(numbers) == 1 and len(numbers[0]) == 8:
        return _eight_digits(numbers[0], current_year, day_first)
    if len(numbers) == 3:
        return _three_numbers(numbers, current_year, day_first)
    return None


def day_of_month(prepared: str) -> str | None:
    """Two-digit day 01..31 (legacy ``dobd``): ``"1"`` → ``"01"``; ``"32"`` → None."""
    if not prepared.isdecimal() or len(prepared) > 2:
        return None
    day = int(prepared)
    return f"{day:02d}" if 1 <= day <= 31 else None


def month_of_year(prepared: str) -> str | None:
    """Two-digit month 01..12 (legacy ``dobm``): ``"2"`` → ``"02"``; ``"feb"`` → ``"02"``."""
    if prepared in MONTHS:
        return f"{MONTHS[prepared]:02d}"
    if not prepared.isdecimal() or len(prepared) > 2:
        return None
    month = int(prepared)
    return f"{month:02d}" if 1 <= month <= 12 else None


def birth_year(prepared: str, current_year: int) -> str | None:
    """Four-digit year 1900..current (legacy ``doby``): ``"2000"`` → ``"2000"``; ``"99"`` → None."""
    if len(prepared) != 4 or not prepared.isdecimal():
        return None
    year = int(prepared)
    # Formatted again: the input may use another script's digits, the hash wants ASCII.
    return f"{year:04d}" if _MIN_YEAR <= year <= current_year else None
