"""Which customer keys an event carries, and a local match-key score built from their coverage.

Meta matches a server event to a person through the customer-information keys of its
``user_data`` (docs/capi.md §3.2). This module answers, for the wire form of an event (the JSON
object that goes into a request's ``data`` array, as the enriched record carries it):

- :func:`keys_of` / :func:`keys_of_json`: which keys it carries, plus the pseudo-key ``ip_ua``
  when it has both ``client_ip_address`` and ``client_user_agent`` (Meta's guidance treats the
  pair as one signal: either alone matches little);
- :func:`event_label`: the event name as a bounded metric label (standard names as they are,
  every other name ``custom``);
- :class:`MatchKeyCounts`: counts per (pixel, event label) of events and of events carrying each
  key, the feed shape of the rest of the core (``add`` per event, ``coverage()`` to read);
- :func:`local_score`: the **local match-key score**, 0-10, from per-key coverage.

The local score is an **estimate** made from what this process sends. It is *not* Meta's Event
Match Quality (EMQ): EMQ also depends on whether the keys match Meta accounts (a well-formed
but wrong e-mail counts here and not there), on the browser pixel's events and on signals we
never see. It moves the same way as EMQ when a key appears or disappears, which is what an
operator needs to catch a release that stopped sending phone numbers before Meta reports it.

The score is ``min(10, Σ WEIGHTS[k] · coverage[k])``, rounded to one decimal, where
``coverage[k]`` is the share (0-1) of the events that carry key ``k``. The weights follow
Meta's public guidance on which keys matter most (Conversions API best practices, Event Match
Quality help): e-mail and phone first, then external_id, the click and browser ids
(fbc, fbp) and IP with user agent; then names; then city, state, zip, country, birth date and
gender. Platform ids that identify a Meta account directly (fb_login_id, lead_id,
page_scoped_user_id, ig_sid, ctwa_clid, madid, anon_id) weigh like the strong keys, so app and
messaging events can score too. The web keys alone sum to 9.75, so an event sending every
recommended web key scores 9.8; the cap only binds when platform ids come on top. Example::

    >>> local_score({"em": 1.0, "ph": 0.62, "ip_ua": 1.0, "fbp": 1.0})  # 2 + 1.5·0.62 + 1 + 0.75
    4.7

:func:`best_fix` names the missing key whose coverage would add the most to the score
("add ph: 38 % of Purchase events carry no phone").

Counting per event, e.g. in a stage that exports ``match_key_events_total{pixel,event_name,key}``
and ``events_by_name_total{pixel,event_name}`` (labels stay bounded: :data:`MATCH_KEYS` and
:func:`event_label`)::

    keys = keys_of(wire_event)                  # or keys_of_json(record["event_json"])
    name = event_label(wire_event["event_name"])
    sensor.count("events_by_name", pixel=pixel, event_name=name)
    for key in keys:
        sensor.count("match_key_events", pixel=pixel, event_name=name, key=key)

The ratio of the two counters is :meth:`Coverage.ratio`; :func:`local_score` of those ratios is
the score (a PromQL recording rule can compute it with :data:`WEIGHTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson

from stream.core.capi import HASHED_KEYS, PLAIN_KEYS

#: The customer-information keys of a wire event's ``user_data`` (docs/capi.md §3.2, Meta's
#: Customer Information Parameters page): the hashed ones, then the ones sent as they are.
#: Legacy offline keys (``f5first``, ``dobd``…) are not counted: Meta no longer documents them.
CUSTOMER_KEYS: Final[tuple[str, ...]] = HASHED_KEYS + PLAIN_KEYS

#: The pseudo-key of an event carrying both ``client_ip_address`` and ``client_user_agent``.
IP_UA: Final = "ip_ua"

#: Every key that is counted and labelled: the customer keys and :data:`IP_UA`.
MATCH_KEYS: Final[tuple[str, ...]] = (*CUSTOMER_KEYS, IP_UA)

#: Meta's standard event names (docs/capi.md §2.2), as metric labels; any other name is ``custom``.
STANDARD_EVENTS: Final = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "CompleteRegistration",
        "Contact",
        "CustomizeProduct",
        "Donate",
        "FindLocation",
        "InitiateCheckout",
        "Lead",
        "Purchase",
        "Schedule",
        "Search",
        "StartTrial",
        "SubmitApplication",
        "Subscribe",
        "ViewContent",
        "PageView",
        "MobileAppInstall",
    }
)
#: The label of every non-standard event name (keeps label cardinality bounded).
CUSTOM: Final = "custom"

#: Points a key adds to the local score at full coverage (see the module docstring for why).
#: ``client_ip_address`` and ``client_user_agent`` score only as the pair ``ip_ua``.
WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "em": 2.0,
        "ph": 1.5,
        "external_id": 1.0,
        "fbc": 1.0,
        "fbp": 0.75,
        IP_UA: 1.0,
        "fn": 0.5,
        "ln": 0.5,
        "ct": 0.25,
        "st": 0.25,
        "zp": 0.25,
        "country": 0.25,
        "db": 0.25,
        "ge": 0.25,
        # ids that name a Meta account or device directly (app, lead and messaging events)
        "fb_login_id": 1.5,
        "lead_id": 1.5,
        "page_scoped_user_id": 1.0,
        "ig_sid": 1.0,
        "ctwa_clid": 1.0,
        "madid": 1.0,
        "anon_id": 0.5,
        "subscription_id": 0.25,
        # context rather than a person: no points alone
        "client_ip_address": 0.0,
        "client_user_agent": 0.0,
        "page_id": 0.0,
        "ig_account_id": 0.0,
    }
)
MAX_SCORE: Final = 10.0

#: The keys :func:`best_fix` advises by default: those any advertiser can collect on any
#: channel. Platform ids (lead_id, madid…) exist only for some events, so advising them for a
#: website Purchase would be noise; a caller that knows the channel passes them.
ADVISED_KEYS: Final[tuple[str, ...]] = (
    "em",
    "ph",
    "external_id",
    "fbc",
    "fbp",
    IP_UA,
    "fn",
    "ln",
    "ct",
    "st",
    "zp",
    "country",
    "db",
    "ge",
)

#: What each key is, in words, for the report's advice.
KEY_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "em": "e-mail",
        "ph": "phone",
        "fn": "first name",
        "ln": "last name",
        "ge": "gender",
        "db": "birth date",
        "ct": "city",
        "st": "state",
        "zp": "zip code",
        "country": "country",
        "external_id": "external id",
        "client_ip_address": "IP address",
        "client_user_agent": "user agent",
        IP_UA: "IP address with user agent",
        "fbc": "click id (fbc)",
        "fbp": "browser id (fbp)",
        "subscription_id": "subscription id",
        "fb_login_id": "Facebook login id",
        "lead_id": "lead id",
        "anon_id": "install id",
        "madid": "mobile advertiser id",
        "page_id": "page id",
        "page_scoped_user_id": "page-scoped user id",
        "ctwa_clid": "click-to-WhatsApp id",
        "ig_account_id": "Instagram account id",
        "ig_sid": "Instagram-scoped id",
    }
)


#: The names Meta's Dataset Quality API gives the keys in ``match_key_feedback`` (its
#: documentation shows ``email``, ``phone``, ``external_id``, ``ip_address``, ``user_agent``,
#: ``fbc``; the rest follow the same plain-word style). The simulator answers with these.
META_IDENTIFIERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "em": "email",
        "ph": "phone",
        "fn": "first_name",
        "ln": "last_name",
        "ge": "gender",
        "db": "date_of_birth",
        "ct": "city",
        "st": "state",
        "zp": "zip",
        "country": "country",
        "external_id": "external_id",
        "client_ip_address": "ip_address",
        "client_user_agent": "user_agent",
        "fbc": "fbc",
        "fbp": "fbp",
        "subscription_id": "subscription_id",
        "fb_login_id": "fb_login_id",
        "lead_id": "lead_id",
        "anon_id": "anon_id",
        "madid": "madid",
        "page_id": "page_id",
        "page_scoped_user_id": "page_scoped_user_id",
        "ctwa_clid": "ctwa_clid",
        "ig_account_id": "ig_account_id",
        "ig_sid": "ig_sid",
    }
)


def event_label(event_name: str) -> str:
    """The metric label of an event name: standard names as they are, others ``custom``.

    >>> event_label("Purchase"), event_label("purchase"), event_label("MyFunnelStep")
    ('Purchase', 'custom', 'custom')
    """
    return event_name if event_name in STANDARD_EVENTS else CUSTOM


_CUSTOMER_SET: Final = frozenset(CUSTOMER_KEYS)


def _carried(value: object) -> bool:
    # The wire JSON leaves out empty values already; a hand-built event may still hold them.
    if type(value) is str:
        return True  # non-empty: the caller tested truth first
    if type(value) is list or type(value) is tuple:
        if type(value[0]) is str and value[0]:
            return True  # the usual wire shape (non-empty: the caller tested truth first)
        return any(isinstance(item, str) and item for item in value)
    return not isinstance(value, bool | dict | str | list | tuple)


def keys_of(event: Mapping[str, Any]) -> frozenset[str]:
    """The customer keys a wire event carries (non-empty), plus ``ip_ua`` for IP with user agent.

    >>> sorted(keys_of({"user_data": {"em": ["62a1…"], "ph": [], "client_ip_address": "1.2.3.4",
    ...                               "client_user_agent": "Mozilla/5.0"}}))
    ['client_ip_address', 'client_user_agent', 'em', 'ip_ua']
    """
    user_data = event.get("user_data")
    if not isinstance(user_data, Mapping):
        return frozenset()
    # over the event's few keys, not all 25: this runs once per event in the normalize stage
    keys = {k for k, v in user_data.items() if v and k in _CUSTOMER_SET and _carried(v)}
    if "client_ip_address" in keys and "client_user_agent" in keys:
        keys.add(IP_UA)
    return frozenset(keys)


def keys_of_json(event_json: bytes) -> frozenset[str]:
    """:func:`keys_of` of an event's JSON bytes (the enriched record's ``event_json``).

    Bytes that are not a JSON object carry no keys (the caller counts the event all the same).
    """
    try:
        event = orjson.loads(event_json)
    except orjson.JSONDecodeError:
        return frozenset()
    return keys_of(event) if isinstance(event, dict) else frozenset()


def local_score(coverage: Mapping[str, float]) -> float:
    """The local match-key score, 0-10, of per-key coverage ratios (an estimate, not EMQ).

    ``min(10, Σ WEIGHTS[k] · coverage[k])`` rounded to one decimal; keys missing from
    ``coverage`` count as 0 and ratios are clamped to 0-1.

    >>> local_score({"em": 1.0, "ph": 1.0, "external_id": 1.0})
    4.5
    """
    total = sum(
        weight * min(1.0, max(0.0, coverage.get(key, 0.0))) for key, weight in WEIGHTS.items()
    )
    return round(min(MAX_SCORE, total), 1)


@dataclass(frozen=True, slots=True)
class Fix:
    """The most valuable missing key of one (pixel, event name): what adding it is worth."""

    key: str
    missing: float  # share of the events (0-1) that do not carry it
    gain: float  # points the local score would gain if every event carried it

    def advice(self, event_name: str) -> str:
        """One line for the report, e.g. ``add ph: 38 % of Purchase events carry no phone``."""
        percent = round(self.missing * 100)
        name = KEY_NAMES.get(self.key, self.key)
        return f"add {self.key}: {percent} % of {event_name} events carry no {name}"


def best_fix(coverage: Mapping[str, float], keys: Iterable[str] | None = None) -> Fix | None:
    """The key whose missing coverage costs the most score points, or None when nothing is.

    ``keys`` are the candidates, :data:`ADVISED_KEYS` by default. Ties go to the first candidate
    (the order of :data:`ADVISED_KEYS` is Meta's order of importance).

    >>> best_fix({"em": 1.0, "ph": 0.62, "ip_ua": 1.0})
    Fix(key='external_id', missing=1.0, gain=1.0)
    """
    best: Fix | None = None
    for key in ADVISED_KEYS if keys is None else keys:
        weight = WEIGHTS.get(key, 0.0)
        missing = 1.0 - min(1.0, max(0.0, coverage.get(key, 0.0)))
        gain = round(weight * missing, 4)
        if gain > 0 and (best is None or gain > best.gain):
            best = Fix(key, round(missing, 4), gain)
    return best


@dataclass(frozen=True, slots=True)
class Coverage:
    """Counts of one (pixel, event label): its events, and per key the events that carry it."""

    events: int
    carrying: Mapping[str, int]

    def ratio(self, key: str) -> float:
        """The share (0-1) of the events carrying ``key``; 0 when there are no events."""
        return self.carrying.get(key, 0) / self.events if self.events else 0.0

    def ratios(self) -> dict[str, float]:
        """Every counted key's share, keys in :data:`MATCH_KEYS` order (zero shares included)."""
        return {key: self.ratio(key) for key in MATCH_KEYS}

    def score(self) -> float:
        """The local match-key score of these counts (:func:`local_score`)."""
        return local_score(self.ratios())


@dataclass(slots=True)
class MatchKeyCounts:
    """Accumulates events per (pixel, event label) and, per key, the events that carry it.

    Feed each wire event with :meth:`add` (or the keys with :meth:`add_keys` when the caller
    has them already); read with :meth:`coverage`. Event names go through :func:`event_label`,
    so the number of rows is bounded by pixels x (standard names + 1).

    >>> counts = MatchKeyCounts()
    >>> counts.add("123", {"event_name": "Purchase", "user_data": {"em": ["62a1…"]}})
    frozenset({'em'})
    >>> counts.coverage()[("123", "Purchase")].ratio("em")
    1.0
    """

    _events: dict[tuple[str, str], int] = field(default_factory=dict)
    _carrying: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def add(self, pixel: str, event: Mapping[str, Any]) -> frozenset[str]:
        """Count one wire event of ``pixel``; returns the keys it carries."""
        keys = keys_of(event)
        name = event.get("event_name")
        self.add_keys(pixel, name if isinstance(name, str) else "", keys)
        return keys

    def add_keys(self, pixel: str, event_name: str, keys: Iterable[str]) -> None:
        """Count one event of ``pixel`` named ``event_name`` that carries ``keys``."""
        row = (pixel, event_label(event_name))
        self._events[row] = self._events.get(row, 0) + 1
        carrying = self._carrying.setdefault(row, {})
        for key in keys:
            carrying[key] = carrying.get(key, 0) + 1

    def coverage(self) -> dict[tuple[str, str], Coverage]:
        """A snapshot of the counts per (pixel, event label)."""
        return {
            row: Coverage(events, MappingProxyType(dict(self._carrying.get(row, {}))))
            for row, events in self._events.items()
        }
