"""Phone numbers to E.164 digits (capi.md rules table, row ``ph``), with the phonenumbers library.

The rule: parse with a default region (``US`` unless configured); a leading ``+`` or ``00``
marks an international number; digits that are not a valid number in the default region are
tried as an international number (Meta's SDK-style ``442079460958``); the result is E.164
without ``+`` (country code, no trunk zero); not valid either way means the key is dropped.

``phonenumbers.parse`` plus ``is_valid_number`` costs about 20 µs, as much as Meta's whole SDK
spends on an event, so the common shapes take a fast path: digits (after the usual separators)
of the default region's own numbers are checked against that region's fixed-line and mobile
patterns, straight from phonenumbers' metadata, and so are international numbers against their
country code's main region. The fast path answers only when it finds a valid number and, in
that case, replays exactly what ``parse`` would do (national prefix stripping included, and the
prefix rewriting of Brazil's carrier codes, Argentina's mobile ``15`` or the Caribbean's
seven-digit local numbers); anything else goes to the full library path. Property tests pin
the two paths to the same answers. Customers repeat: :func:`normalize_phone` memoizes every
answer per value and region in a bounded LRU cache (:data:`PHONE_CACHE_SIZE`); the ``ph`` key of
``user_data`` calls :func:`e164_digits` itself, as its finished hash is memoized per value and
region already (:func:`stream.core.normalize.keys.normalize_and_hash`), and a second memo would
only cost a second look-up.

Examples (default region US)::

    "+1 (650) 555-1212"   -> "16505551212"
    "(650)555-1212"       -> "16505551212"
    "0044 20 7946 0958"   -> "442079460958"
    "+44 (0)20 7946 0958" -> "442079460958"
    "442079460958"        -> "442079460958"
    "555-1212"            -> None
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

# Separators people type between digit groups; anything else (letters, "ext", "(0)") is left
# for phonenumbers to interpret.
_SEPARATORS: Final = re.compile(r"[\s().\-/]+")
# The same separators among ASCII characters, for ``bytes.translate`` (a fifth of the regex's
# cost on the ASCII text nearly every number is): made from the pattern, so they never differ.
_ASCII_SEPARATORS: Final = bytes(c for c in range(128) if _SEPARATORS.fullmatch(chr(c)))
# phonenumbers refuses longer input; no E.164 number has more than 15 digits anyway.
_MAX_DIGITS: Final = 17
_MAX_INPUT: Final = 250


@dataclass(frozen=True, slots=True)
class _Desc:
    """One PhoneNumberDesc, compiled: its pattern and possible lengths (empty: any)."""

    pattern: re.Pattern[str] | None
    lengths: frozenset[int]

    def matches(self, nsn: str) -> bool:
        # Same test as phonenumbers' _is_number_matching_desc.
        if self.lengths and len(nsn) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None


@dataclass(frozen=True, slots=True)
class _Region:
    """What the fast path needs of one region's metadata."""

    country_code: str
    general: re.Pattern[str]
    general_lengths: frozenset[int]
    fixed_line: _Desc
    # None when mobile numbers share the fixed-line pattern (the US): one regex run, not two.
    mobile: _Desc | None
    national_prefix: re.Pattern[str] | None
    #: what a national prefix match becomes (Brazil's carrier codes, Japan's "000" numbers), as
    #: a ``re`` template; None: the prefix is only removed
    national_prefix_transform: str | None
    international_prefix: re.Pattern[str] | None


def _desc(desc: PhoneNumberDesc | None) -> _Desc:
    if desc is None or not desc.national_number_pattern:
        return _Desc(None, frozenset())
    return _Desc(re.compile(desc.national_number_pattern), frozenset(desc.possible_length))


@lru_cache(maxsize=512)  # every region phonenumbers knows (~250) fits
def _region(region: str) -> _Region | None:
    """Compiled metadata of ``region``, or None when the fast path cannot replay its parsing."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    general = _desc(metadata.general_desc)
    if general.pattern is None:
        return None
    fixed_line = _desc(metadata.fixed_line)
    mobile = _desc(metadata.mobile)
    return _Region(
        country_code=str(metadata.country_code),
        general=general.pattern,
        general_lengths=general.lengths,
        fixed_line=fixed_line,
        mobile=None if mobile == fixed_line else mobile,
        national_prefix=(
            re.compile(metadata.national_prefix_for_parsing)
            if metadata.national_prefix_for_parsing
            else None
        ),
        national_prefix_transform=metadata.national_prefix_transform_rule or None,
        international_prefix=(
            re.compile(metadata.international_prefix) if metadata.international_prefix else None
        ),
    )


def _valid_nsn(info: _Region, number: str) -> str | None:
    """The national significant number parse() would keep from ``number``, if it is valid."""
    general = info.general
    nsn = number
    prefix = info.national_prefix.match(number) if info.national_prefix is not None else None
    transform = info.national_prefix_transform
    if prefix is not None and transform is not None and prefix.group(prefix.re.groups) is not None:
        # parse() rewrites the prefix with the rule (re.sub at the match, the first one as it
        # starts at 0) when the pattern's last group took part in the match
        stripped: str | None = prefix.expand(transform) + number[prefix.end() :]
    elif prefix is not None and prefix.end() > 0:
        stripped = number[prefix.end() :]
    else:
        stripped = None
    if stripped is not None:
        viable = general.fullmatch(stripped) is not None
        # parse() keeps the original when it is viable and the stripped form is not.
        if viable or general.fullmatch(number) is None:
            nsn = stripped
        else:
            viable = True
    else:
        viable = general.fullmatch(number) is not None
    # phonenumbers' "matches the general description": the pattern and a possible length.
    if not viable or (info.general_lengths and len(nsn) not in info.general_lengths):
        return None
    # _Desc.matches for fixed line, then mobile, inline: this runs for every number
    length = len(nsn)
    for desc in (info.fixed_line, info.mobile):
        if (
            desc is not None
            and (not desc.lengths or length in desc.lengths)
            and desc.pattern is not None
            and desc.pattern.fullmatch(nsn) is not None
        ):
            return nsn
    return None


#: Country code (digits) → its main region: ``region_code_for_country_code`` as a table (the
#: library's function is a Python call, up to three per international number).
_MAIN_REGIONS: Final[dict[str, str]] = {
    str(code): regions[0]
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    if regions
}


def _main_region(digits: str) -> tuple[str, _Region] | None:
    """The country code ``digits`` start with and its main region's metadata, as parse() finds
    them: codes are prefix-free, so the first 1-3 digit prefix that is a code is the one."""
    if digits[:1] == "0":
        return None  # no country code starts with 0
    for length in (1, 2, 3):
        code = digits[:length]
        main = _MAIN_REGIONS.get(code)
        if main is not None:
            info = _region(main)  # None for non-geographic codes ("001"): the library decides
            return None if info is None else (code, info)
    return None


def _fast(digits: str, international: bool, default_region: str) -> str | None:
    """E.164 digits for numbers valid in their country code's main region (international) or
    in the default region (national), or None to ask the library.

    parse() strips a national prefix with the metadata of the code's main region, and
    is_valid_number() tries the code's regions main region first: a number valid there is
    valid. One valid only in another region of its code (Jersey's +44 1534) is not found here
    and goes to the library.
    """
    if international:
        found = _main_region(digits)
        if found is None:
            return None
        code, main = found
        nsn = _valid_nsn(main, digits[len(code) :])
        return None if nsn is None else code + nsn
    info = _region(default_region)
    if info is None:
        return None
    if info.international_prefix is not None and info.international_prefix.match(digits):
        # "011 44 ..." dialled from the US: the library reads it as international.
        return None
    nsn = _valid_nsn(info, digits)
    return None if nsn is None else info.country_code + nsn


def _e164(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _slow(text: str, compact: str, international: bool, default_region: str) -> str | None:
    """The full library path; ``compact`` is ``text`` without separators and without ``00``."""
    if international:
        # phonenumbers knows "+" and the region's own exit code ("011" in the US), not "00".
        return _e164(text if text.startswith("+") else "+" + compact, default_region)
    found = _e164(text, default_region)
    if found is None:
        found = _e164("+" + compact, default_region)
    return found


#: Phone answers kept, per (value, default region): a bounded LRU cache (~1 MB full).
PHONE_CACHE_SIZE: Final = 8192


@lru_cache(maxsize=PHONE_CACHE_SIZE)
def normalize_phone(value: str, default_region: str = "US") -> str | None:
    """E.164 digits without ``+`` for ``value``, or None when it is no valid number.

    ``"(650)555-1212"`` → ``"16505551212"``; ``"0044 20 7946 0958"`` → ``"442079460958"``.
    :func:`e164_digits`, memoized (:data:`PHONE_CACHE_SIZE`).
    """
    return e164_digits(value, default_region)


def e164_digits(value: str, default_region: str = "US") -> str | None:
    """:func:`normalize_phone` without its memo: ``"(650)555-1212"`` → ``"16505551212"``."""
    text = value.strip()
    if not text or len(text) > _MAX_INPUT:
        return None
    if text.isascii():
        compact = text.encode().translate(None, _ASCII_SEPARATORS).decode()
    else:
        compact = _SEPARATORS.sub("", text)
    international = False
    if compact.startswith("+"):
        compact = compact[1:]
        international = True
    elif compact.startswith("00"):
        compact = compact[2:]
        international = True
    if compact.isascii() and compact.isdigit() and len(compact) <= _MAX_DIGITS:
        found = _fast(compact, international, default_region)
        if found is not None:
            return found
    return _slow(text, compact, international, default_region)


def is_region(region: str) -> bool:
    """True when phonenumbers knows ``region`` (an ISO 3166-1 alpha-2 code, upper case)."""
    return region in phonenumbers.SUPPORTED_REGIONS
