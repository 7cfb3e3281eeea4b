"""Countries, US states and Canadian provinces, and currencies, looked up with pycountry.

Each table is built once, on first use, keyed by the same squeeze the hashed keys use (letters
of every script, lowercase, nothing else), so ``"United States"``, ``"u.s."`` and ``"USA"``
all land on ``"us"``. Look-ups are cached: the same few countries and currencies repeat on
almost every event.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Final

import pycountry

from stream.core.normalize.text import fold_accents, keep_letters, sha256_hex

# Names people write that are not pycountry names. "uk" is reserved, not assigned, in
# ISO 3166-1, but it only ever means the United Kingdom in a customer record.
_COUNTRY_ALIASES: Final = {
    "uk": "gb",
    "greatbritain": "gb",
    "britain": "gb",
    "england": "gb",
    "scotland": "gb",
    "wales": "gb",
    "northernireland": "gb",
    "america": "us",
    "unitedstatesofamerica": "us",
    "russia": "ru",
    "turkey": "tr",
    "holland": "nl",
    "thenetherlands": "nl",
    "ivorycoast": "ci",
    "macedonia": "mk",
    "swaziland": "sz",
    "burma": "mm",
    "capeverde": "cv",
    "vatican": "va",
    "czechrepublic": "cz",
    "southkorea": "kr",
    "northkorea": "kp",
    "korea": "kr",
    "syria": "sy",
    "iran": "ir",
    "laos": "la",
    "moldova": "md",
    "tanzania": "tz",
    "venezuela": "ve",
    "bolivia": "bo",
    "vietnam": "vn",
    "taiwan": "tw",
    "palestine": "ps",
    "brunei": "bn",
    "micronesia": "fm",
}

# French names of Canadian provinces and a few common US spellings pycountry does not carry.
_STATE_ALIASES: Final = {
    "washingtondc": "dc",
    "usvirginislands": "vi",
    "virginislands": "vi",
    "colombiebritannique": "bc",
    "nouveaubrunswick": "nb",
    "nouvelleecosse": "ns",
    "ileduprinceedouard": "pe",
    "terreneuveetlabrador": "nl",
    "newfoundland": "nl",
    "territoiresdunordouest": "nt",
    "pei": "pe",
}

# ISO 4217 codes that name no money a customer pays with (precious metals, fund units, the
# testing and "no currency" codes); Meta's currency list has none of them.
_NOT_MONEY: Final = frozenset(
    {"XAG", "XAU", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA", "XTS", "XXX"}
)


def squeeze(value: str) -> str:
    """The look-up key of a prepared value: letters only. ``"u.s."`` → ``"us"``."""
    return keep_letters(value)


@cache
def _countries() -> Mapping[str, str]:
    table: dict[str, str] = {}
    # Codes first, so no name can shadow a code.
    for country in pycountry.countries:
        table[country.alpha_2.lower()] = country.alpha_2.lower()
    for country in pycountry.countries:
        table.setdefault(country.alpha_3.lower(), country.alpha_2.lower())
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if isinstance(name, str):
                key = squeeze(name.lower())
                table.setdefault(key, code)
                table.setdefault(fold_accents(key), code)
    for alias, code in _COUNTRY_ALIASES.items():
        table.setdefault(alias, code)
    return MappingProxyType(table)


@lru_cache(maxsize=1024)
def country_code(prepared: str) -> str | None:
    """ISO 3166-1 alpha-2, lowercase, of a prepared country name or code; None if unknown.

    ``"united states"`` → ``"us"``; ``"u.s."`` → ``"us"``; ``"deu"`` → ``"de"``;
    ``"xx"`` → None.
    """
    key = squeeze(prepared)
    table = _countries()
    return table.get(key) or table.get(fold_accents(key))


@cache
def _hashed_countries() -> Mapping[str, str]:
    return MappingProxyType({sha256_hex(code): code for code in set(_countries().values())})


def country_of_hash(hashed: str) -> str | None:
    """The alpha-2 code whose SHA-256 is ``hashed`` (lowercase hex), if any.

    Lets an event whose country arrives pre-hashed still get the country-dependent zip rule.
    """
    return _hashed_countries().get(hashed)


@cache
def _states() -> Mapping[str, str]:
    subdivisions = [
        (subdivision.code.split("-", 1)[1].lower(), subdivision.name)
        for subdivision in pycountry.subdivisions
        if subdivision.country_code in ("US", "CA")
    ]
    # Codes first, so no name can shadow a code.
    table = {code: code for code, _ in subdivisions}
    for code, name in subdivisions:
        key = squeeze(name.lower())
        table.setdefault(key, code)
        table.setdefault(fold_accents(key), code)
    for alias, code in _STATE_ALIASES.items():
        table.setdefault(alias, code)
    return MappingProxyType(table)


@lru_cache(maxsize=1024)
def us_ca_state_code(squeezed: str) -> str | None:
    """The 2-letter code of a US state or Canadian province, from its squeezed name or code.

    ``"california"`` → ``"ca"``; ``"ny"`` → ``"ny"``; ``"québec"`` → ``"qc"``;
    ``"bavaria"`` → None.
    """
    table = _states()
    return table.get(squeezed) or table.get(fold_accents(squeezed))


@lru_cache(maxsize=256)
def currency_code(value: str) -> str | None:
    """ISO 4217 code, lowercase, of ``value`` (trimmed, any case); None if not a currency.

    ``" USD "`` → ``"usd"``; ``"usdollar"`` → None; ``"XXX"`` → None.
    """
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha() or code in _NOT_MONEY:
        return None
    return code.lower() if pycountry.currencies.get(alpha_3=code) is not None else None
