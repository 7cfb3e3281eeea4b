"""Constants of the Conversions API contract (docs/capi.md), shared by every stage.

Only facts of Meta's API live here, so the normalizer, the deliverer and the simulator agree on
them without importing each other.
"""

from __future__ import annotations

from typing import Final

#: Meta rejects a request with more events than this (docs/capi.md §1.5).
MAX_EVENTS_PER_REQUEST: Final = 1000

#: Documented ``action_source`` values (docs/capi.md §2.1).
ACTION_SOURCES: Final = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)

#: ``event_time`` may be at most this old when Meta receives it (docs/capi.md §2.1).
MAX_AGE_SECONDS: Final = 7 * 86_400
#: ... or this old for ``physical_store`` (offline) events.
MAX_AGE_PHYSICAL_STORE_SECONDS: Final = 62 * 86_400


def max_age_s(action_source: str | None) -> int:
    """Meta's age limit for an event of ``action_source``: the one place the rule is written.

    >>> max_age_s("website") // 86_400, max_age_s("physical_store") // 86_400
    (7, 62)
    """
    return MAX_AGE_PHYSICAL_STORE_SECONDS if action_source == "physical_store" else MAX_AGE_SECONDS


#: Meta deduplicates (event_name, event_id) per pixel within this window (docs/capi.md §7.1).
DEDUP_WINDOW_SECONDS: Final = 48 * 3_600

#: ``user_data`` keys that must be SHA-256 hashed, sent as lists (docs/capi.md §3.2).
HASHED_KEYS: Final = (
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "ge",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
)

#: Legacy offline keys, hashed, single values (docs/capi.md §3.2).
LEGACY_HASHED_KEYS: Final = ("f5first", "f5last", "fi", "dobd", "dobm", "doby")

#: ``user_data`` keys sent verbatim as single strings; never hashed, never case-changed.
PLAIN_KEYS: Final = (
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_id",
    "page_scoped_user_id",
    "ctwa_clid",
    "ig_account_id",
    "ig_sid",
)

#: An event whose customer keys are only a subset of one of these is "too broad" (capi.md §3.6).
TOO_BROAD_KEY_SETS: Final = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)

#: Graph error codes by failure class (docs/capi.md §5.3, docs/design.md failure table).
TRANSIENT_CODES: Final = frozenset({1, 2})
THROTTLE_CODES: Final = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
SETUP_CODES: Final = frozenset({3, 10, 102, 190, *range(200, 300)})
INVALID_PARAMETER_CODE: Final = 100
#: Subcode Meta uses when customer data arrives in clear text instead of hashed.
UNHASHED_PII_SUBCODE: Final = 2804016
#: Temporarily blocked for policy reasons: no retry helps and no event is at fault (capi.md §5.3).
POLICY_BLOCKED_CODE: Final = 368
#: "Object does not exist" (wrong pixel or dataset id): a configuration error, not a bad event.
MISSING_OBJECT_CODE: Final = 803
#: Code 100 with this subcode also means the pixel id names nothing we may post to; isolating
#: "bad events" would dead-letter every event of the lane.
MISSING_OBJECT_SUBCODE: Final = 33
