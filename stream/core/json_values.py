"""Reading values out of JSON that someone else wrote (Meta's headers and answers, rules)."""

from __future__ import annotations

import math


def number(value: object) -> float | None:
    """A finite number from a JSON number or a numeric string; None for anything else.

    ``true`` is not 1 here: a boolean where a number belongs is a malformed answer.

    >>> number(3), number("2.5"), number(True), number("n/a"), number("inf")
    (3.0, 2.5, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        parsed = float(value)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None
