"""One named function per hashed ``user_data`` key; the table :data:`NORMALIZERS` is the spec.

Every function takes the value as it came and the event's :class:`KeyContext`, and returns
the normalized string that gets hashed, or None when the value cannot be one (the key is then
dropped with a ``<key>_invalid_dropped`` warning). Each applies the common steps of docs/capi.md's
rules table first (Unicode NFC, trim, lowercase), then its own step:

=============  ==============================================  ==========================
key            own step                                        example
=============  ==============================================  ==========================
em             must look like ``local@domain.tld``             ``" John_Smith@Gmail.com "``
                                                               → ``"john_smith@gmail.com"``
ph             phonenumbers, default region, E.164 digits      ``"(650)555-1212"``
                                                               → ``"16505551212"``
fn, ln         drop whitespace and punctuation                 ``"Mary-Jane"`` → ``"maryjane"``
ct             drop whitespace, punctuation and digits         ``"Washington D.C."``
                                                               → ``"washingtondc"``
st             US/CA name or code → 2-letter code; elsewhere   ``"California"`` → ``"ca"``
               drop whitespace and punctuation, never cut
zp             drop whitespace, cut at ``-``; ``us``: 5 digits ``"M1 1AE"`` → ``"m11ae"``
country        name, alpha-3 or alpha-2 → alpha-2              ``"United States"`` → ``"us"``
db             many date orders → ``YYYYMMDD``                 ``"2/16/1997"`` → ``"19970216"``
ge             synonyms → ``f`` / ``m``                        ``"Female"`` → ``"f"``
external_id    nothing more                                    ``" User-123 "`` → ``"user-123"``
f5first        first 5 characters of the ``fn`` form           ``"George"`` → ``"georg"``
f5last         first 5 characters of the ``ln`` form           ``"Washington"`` → ``"washi"``
fi             first character of the ``fn`` form              ``"ABC"`` → ``"a"``
dobd           day 1..31, two digits                           ``"1"`` → ``"01"``
dobm           month 1..12 or its name, two digits             ``"feb"`` → ``"02"``
doby           year 1900..current, four digits                 ``"2000"`` → ``"2000"``
=============  ==============================================  ==========================

The legacy keys apply the ``fn``/``ln`` step before cutting, so ``f5first`` of ``"Mary-Jane"``
is ``"maryj"`` (the first five characters of the canonical first name), where Meta's SDKs,
which only lowercase, would give ``"mary-"``.

Values that arrive already hashed skip the key's step (:func:`hash_value`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final, NamedTuple

from stream.core.normalize.dates import birth_year, day_of_month, month_of_year, parse_birth_date
from stream.core.normalize.geo import country_code, squeeze, us_ca_state_code
from stream.core.normalize.phone import e164_digits
from stream.core.normalize.text import (
    MD5,
    NOT_HASHED,
    SHA256,
    hashed_shape,
    keep_alnum,
    keep_letters,
    prepare,
    sha256_hex,
)

# Regions whose people write dates month first, so "03/04/1997" is March 4th there.
_MONTH_FIRST_REGIONS: Final = frozenset(
    {"US", "PR", "GU", "VI", "AS", "MP", "UM", "PH", "FM", "MH", "PW"}
)


class KeyContext(NamedTuple):
    """What some keys' steps need to know about the event beyond the value itself.

    ``country`` is the event's own country (alpha-2, lowercase) when it has a valid one;
    ``current_year`` comes from the ``now`` the caller passed in (core never reads the clock).
    A named tuple rather than a frozen dataclass: it is part of every memo key of
    :func:`normalize_and_hash`, and a tuple hashes in C where a dataclass runs Python code.
    """

    current_year: int
    default_region: str = "US"
    country: str | None = None

    @property
    def day_first(self) -> bool:
        """Whether an ambiguous ``03/04/1997`` means the 3rd of April here."""
        return self.default_region not in _MONTH_FIRST_REGIONS


@lru_cache(maxsize=512)
def key_context(current_year: int, default_region: str, country: str | None) -> KeyContext:
    """A shared :class:`KeyContext`; events repeat the same few, so none is built per event."""
    return KeyContext(current_year, default_region, country)


# Possessive: no part can give back what it took (each stops at a character the next part
# needs and its own class excludes), so the engine never backtracks; a third cheaper.
_EMAIL: Final = re.compile(r"[^@\s]++@(?:[^@\s.]++\.)++[^@\s.]{2,}+")
_FIVE_DIGITS: Final = re.compile(r"[0-9]{5}")

_GENDERS: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "f",
            "female",
            "woman",
            "women",
            "w",
            "girl",
            "lady",
            "mrs",
            "ms",
            "miss",
            "she",
            "her",
            "fem",
            "feminine",
            "femme",
            "femenino",
            "femmina",
            "frau",
            "weiblich",
            "mujer",
        ),
        "f",
    ),
    **dict.fromkeys(
        (
            "m",
            "male",
            "man",
            "men",
            "boy",
            "gentleman",
            "mr",
            "he",
            "him",
            "masc",
            "masculine",
            "masculin",
            "masculino",
            "homme",
            "hombre",
            "herr",
            "mann",
            "männlich",
            "maennlich",
        ),
        "m",
    ),
}


def normalize_em(value: str, _ctx: KeyContext) -> str | None:
    """Email: ``" John_Smith@Gmail.com "`` → ``"john_smith@gmail.com"``; ``"foo@bar"`` → None."""
    email = prepare(value)
    return email if _EMAIL.fullmatch(email) else None


def normalize_ph(value: str, ctx: KeyContext) -> str | None:
    """Phone: ``"(650)555-1212"`` → ``"16505551212"`` (region US); ``"555-1212"`` → None."""
    # not the phone memo (normalize_phone): normalize_and_hash keys ph on the region alone
    return e164_digits(value, ctx.default_region)


def normalize_fn(value: str, _ctx: KeyContext) -> str | None:
    """First name: ``"Mary-Jane"`` → ``"maryjane"``; ``"Valéry"`` → ``"valéry"``."""
    return keep_alnum(prepare(value)) or None


def normalize_ln(value: str, _ctx: KeyContext) -> str | None:
    """Last name: ``"O'Brien"`` → ``"obrien"``; ``"정"`` → ``"정"``."""
    return keep_alnum(prepare(value)) or None


def normalize_ct(value: str, _ctx: KeyContext) -> str | None:
    """City: ``"Washington D.C."`` → ``"washingtondc"``; ``"Saint-Étienne"`` → ``"saintétienne"``.

    Accented letters are kept (docs/capi.md lists dropping them as an open question; Meta's own
    example hashes ``valéry`` with its accent).
    """
    return keep_letters(prepare(value)) or None


def normalize_st(value: str, ctx: KeyContext) -> str | None:
    """State: ``"California"`` → ``"ca"``; ``"N.Y."`` → ``"ny"``; (de) ``"Bayern"`` → ``"bayern"``.

    US and Canadian names map when the event's country, or the default region when the event
    has none, is ``us`` or ``ca``; a value the table does not know is kept squeezed.
    """
    squeezed = keep_alnum(prepare(value))
    if not squeezed:
        return None
    country = ctx.country or ctx.default_region.lower()
    if country in ("us", "ca"):
        return us_ca_state_code(squeezed) or squeezed
    return squeezed


def normalize_zp(value: str, ctx: KeyContext) -> str | None:
    """Zip: ``"94035-1234"`` → ``"94035"``; ``"M1 1AE"`` → ``"m11ae"``.

    With country ``us``: ``"940351234"`` → ``"94035"``, ``"9403"`` → None. Only an explicit
    ``us`` country cuts to five digits: the default region is a guess, and ``"M1 1AE"`` must
    survive it.
    """
    # str.split() cuts at exactly the characters \s matches (str.isspace), at C speed
    code = "".join(prepare(value).split()).split("-", 1)[0]
    if ctx.country == "us":
        five = _FIVE_DIGITS.match(code)
        return five.group() if five is not None else None
    return code or None


def normalize_country(value: str, _ctx: KeyContext) -> str | None:
    """Country: ``"United States"`` → ``"us"``; ``"u.s."`` → ``"us"``; ``"FRA"`` → ``"fr"``.

    Anything that is not a real code, name or alias is dropped: ``"xx"`` → None.
    """
    return country_code(prepare(value))


def normalize_db(value: str, ctx: KeyContext) -> str | None:
    """Date of birth: ``"2/16/1997"`` → ``"19970216"``; ``"1997-02-16"`` → ``"19970216"``."""
    return parse_birth_date(prepare(value), ctx.current_year, day_first=ctx.day_first)


def normalize_ge(value: str, _ctx: KeyContext) -> str | None:
    """Gender: ``"Female"`` → ``"f"``; ``"Mr."`` → ``"m"``; ``"x"`` → None."""
    return _GENDERS.get(squeeze(prepare(value)))


def normalize_external_id(value: str, _ctx: KeyContext) -> str | None:
    """External id (hashed policy): ``" User-123 "`` → ``"user-123"``."""
    return prepare(value) or None


def normalize_f5first(value: str, _ctx: KeyContext) -> str | None:
    """Legacy first 5 of first name: ``"George"`` → ``"georg"``."""
    return keep_alnum(prepare(value))[:5] or None


def normalize_f5last(value: str, _ctx: KeyContext) -> str | None:
    """Legacy first 5 of last name: ``"Washington"`` → ``"washi"``."""
    return keep_alnum(prepare(value))[:5] or None


def normalize_fi(value: str, _ctx: KeyContext) -> str | None:
    """Legacy first initial: ``"ABC"`` → ``"a"``."""
    return keep_alnum(prepare(value))[:1] or None


def normalize_dobd(value: str, _ctx: KeyContext) -> str | None:
    """Legacy day of birth: ``"1"`` → ``"01"``; ``"32"`` → None."""
    return day_of_month(prepare(value))


def normalize_dobm(value: str, _ctx: KeyContext) -> str | None:
    """Legacy month of birth: ``"2"`` → ``"02"``; ``"February"`` → ``"02"``; ``"13"`` → None."""
    return month_of_year(prepare(value))


def normalize_doby(value: str, ctx: KeyContext) -> str | None:
    """Legacy year of birth: ``"2000"`` → ``"2000"``; ``"1899"`` → None."""
    return birth_year(prepare(value), ctx.current_year)


Normalizer = Callable[[str, KeyContext], str | None]

# The table itself is a plain dict (a MappingProxyType get() costs four times as much, once
# per value); the public name is a read-only view of it.
_NORMALIZERS: Final[dict[str, Normalizer]] = {
    "em": normalize_em,
    "ph": normalize_ph,
    "fn": normalize_fn,
    "ln": normalize_ln,
    "db": normalize_db,
    "ge": normalize_ge,
    "ct": normalize_ct,
    "st": normalize_st,
    "zp": normalize_zp,
    "country": normalize_country,
    "external_id": normalize_external_id,
    "f5first": normalize_f5first,
    "f5last": normalize_f5last,
    "fi": normalize_fi,
    "dobd": normalize_dobd,
    "dobm": normalize_dobm,
    "doby": normalize_doby,
}
#: Key → its normalizer: the spec of every hashed key (docs/capi.md §3.2 and the rules table).
NORMALIZERS: Final[Mapping[str, Normalizer]] = MappingProxyType(_NORMALIZERS)

#: Warning codes, per key: ``WARNING_INVALID[key]`` is ``"<key>_invalid_dropped"``.
WARNING_INVALID: Final[dict[str, str]] = {key: f"{key}_invalid_dropped" for key in _NORMALIZERS}
#: ``WARNING_MD5[key]`` is ``"<key>_md5_shape"``.
WARNING_MD5: Final[dict[str, str]] = {key: f"{key}_md5_shape" for key in _NORMALIZERS}


# Customers come back: the same e-mail, phone, city and zip arrive again and again, event
# after event. A value's finished hash is a pure function of the key, the trimmed value and
# the context, so it is memoized in a bounded LRU cache: a repeated value costs one lookup
# instead of its normalizer (phonenumbers for ``ph``, date parsing for ``db``) and SHA-256.
# The context goes in as the KeyContext itself, a named tuple (year, region, country) whose
# hash is computed in C (every call pays for the key, hit or miss); user_data passes each
# key's memo context (memo_contexts), so an e-mail is one entry whatever the event's country.
# The cache lives in this process's memory only (never logged, exported or written); full,
# it holds about 11 MB.
HASH_CACHE_SIZE: Final = 32_768

# The memo context of the keys whose step reads nothing of the context.
_NO_CONTEXT: Final = KeyContext(0, "", None)


@lru_cache(maxsize=512)
def memo_contexts(
    current_year: int, default_region: str, country: str | None
) -> dict[str, KeyContext]:
    """Key → the context to hash that key's values in, for an event with this context: only
    what the key's step reads of it, so a value's memo entry is shared by every event its
    step cannot tell apart (``em`` of any country and year; ``ph`` per region; ``zp`` per
    "is the country us"). Each key's step gives the same answer with it as with the event's
    own :class:`KeyContext` (a test pins it, key by key). Events repeat the same few contexts:
    one look-up per event. The dict is shared by every caller: read it, never change it (a
    plain dict, as a read-only view's look-up costs four times as much, once per value).
    """
    memo = dict.fromkeys(_NORMALIZERS, _NO_CONTEXT)
    memo["ph"] = key_context(0, default_region, None)
    memo["db"] = key_context(current_year, default_region, None)
    memo["doby"] = key_context(current_year, "", None)
    # normalize_st reads ``country or default_region.lower()`` only
    memo["st"] = key_context(0, "", country or default_region.lower())
    memo["zp"] = key_context(0, "", "us" if country == "us" else None)
    return memo


#: What :func:`normalize_and_hash` answers: the wire form of the value alone (a str) when it
#: records no warning, as nearly every value; otherwise the pair (wire form, None: drop it;
#: warning code, None: none). A bare string is one object less per memo entry: on a cold or
#: churning memo each entry lives long enough for the cyclic collector to walk it, and a
#: string (unlike a tuple) is never tracked.
Hashed = tuple[str | None, str | None]
_BLANK: Final[Hashed] = (None, None)
#: (None, "<key>_invalid_dropped") per key: a refused value's answer, made once
_REFUSED: Final[dict[str, Hashed]] = {key: (None, code) for key, code in WARNING_INVALID.items()}


@lru_cache(maxsize=HASH_CACHE_SIZE)
def normalize_and_hash(key: str, value: str, ctx: KeyContext) -> str | Hashed:
    """One string value of a hashed key as it came, in the context ``ctx``: what goes on the
    wire, by the rules of :func:`hash_value`; a str when it records no warning, else the pair
    (wire form or None to drop it, warning code or None). Memoized (see
    :data:`HASH_CACHE_SIZE`): a repeated value costs one look-up, trim and shape test
    included."""
    trimmed = value.strip()
    if not trimmed:
        return _BLANK
    length = len(trimmed)
    if length in (32, 64) or (length > 65 and trimmed[64] == "."):
        shape = hashed_shape(trimmed)
        if shape == SHA256:
            return trimmed.lower()
        if shape == MD5:
            return trimmed.lower(), WARNING_MD5[key]
        if shape != NOT_HASHED:
            return trimmed
    normalized = _NORMALIZERS[key](trimmed, ctx)
    if not normalized:
        return _REFUSED[key]
    try:  # sha256_hex, inline: this runs for every value that is not in the memo
        return hashlib.sha256(normalized.encode()).hexdigest()
    except UnicodeEncodeError:
        return sha256_hex(normalized)


def hash_value(key: str, value: object, ctx: KeyContext, warnings: list[str]) -> str | None:
    """What goes on the wire for one value of a hashed key, or None to drop it.

    * blank (or not a string): dropped silently, as Meta's SDKs drop empty values;
    * 64 hex after trim: already SHA-256, kept lowercased;
    * ``<64 hex>.<appendix>`` (Meta's parameter builder): kept unchanged;
    * 32 hex (MD5 shape): kept lowercased, ``<key>_md5_shape`` recorded;
    * otherwise the key's normalizer, then SHA-256; a value it refuses is dropped and
      ``<key>_invalid_dropped`` recorded.

    Warnings carry the key's name only, never the value.
    """
    if type(value) is not str:
        if value is not None:
            warnings.append(WARNING_INVALID[key])
        return None
    answer = normalize_and_hash(key, value, ctx)
    if isinstance(answer, str):
        return answer
    hashed, warning = answer
    if warning is not None:
        warnings.append(warning)
    return hashed
