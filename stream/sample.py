"""A realistic, seeded sample of raw conversion events, for the demo and for trying things out.

Several pixels and event types, website, app and store events, raw and already-hashed customer
data, a few bad single fields (dropped with a warning) and a few events Meta would refuse
(dead-lettered with their reason). The same seed and clock always give the same events.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from stream import schemas

PIXELS = ("100000000000001", "100000000000002", "100000000000003")
_FIRST = ("Mary", "José", "Zoë", "Li", "Ahmed", "O'Brien", "Anne-Marie", "Valéry", "정", "John")
_LAST = ("Smith", "García", "Müller", "Nguyen", "O'Connor", "Dubois", "Kim", "Rossi")
_PLACES = (
    ("New York", "NY", "10001", "US", "+1 (212) 555-{:04d}"),
    ("San Francisco", "California", "94105-1234", "United States", "(415) 555-{:04d}"),
    ("London", "", "M1 1AE", "GB", "+44 20 7946 {:04d}"),
    ("Paris", "Île-de-France", "75018", "France", "+33 1 42 68 {:04d}"),
    ("Toronto", "Ontario", "M5V 2T6", "CA", "+1 416 555 {:04d}"),
)
_EVENTS = ("Purchase", "Lead", "AddToCart", "ViewContent", "CompleteRegistration")
#: The kinds of events Meta would refuse, as the normalize stage names them.
INVALID_KINDS = (
    "event_time_too_old",
    "missing_action_source",
    "too_broad_match_keys",
    "purchase_without_currency",
    "missing_client_user_agent",
)


def _blank() -> dict[str, Any]:
    fields = schemas.load("conversion_event")["fields"]
    event: dict[str, Any] = {f["name"]: f.get("default") for f in fields}
    user_type = next(f for f in fields if f["name"] == "user_data")["type"]
    event["user_data"] = {
        f["name"]: [] if isinstance(f["type"], dict) else None for f in user_type["fields"]
    }
    return event


def _custom(rnd: random.Random, name: str) -> dict[str, Any] | None:
    if name not in {"Purchase", "AddToCart"}:
        return None
    sku = f"sku-{rnd.randrange(1000):03d}"
    qty = rnd.randint(1, 3)
    price = round(rnd.uniform(5, 200), 2)
    return {
        "value": round(qty * price, 2), "currency": rnd.choice(("USD", "eur", " GBP ")),
        "net_revenue": None, "content_name": None, "content_category": None,
        "content_ids": [sku], "content_type": "product", "order_id": None, "predicted_ltv": None,
        "num_items": qty, "search_string": None, "status": None, "delivery_category": None,
        "item_number": None, "custom_properties": {"coupon": rnd.choice(("", "WINTER"))},
        "contents": [{"id": sku, "quantity": qty, "item_price": price, "delivery_category": None,
                      "title": None, "description": None, "brand": None, "category": None}],
    }  # fmt: skip


def event(rnd: random.Random, i: int, now: int) -> dict[str, Any]:
    """One valid raw event (number ``i``), raw or already-hashed customer data."""
    e = _blank()
    first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
    city, state, zp, country, phone = rnd.choice(_PLACES)
    email = f"{first}.{last}{i}@Example.com".replace("'", "").replace(" ", "")
    u = e["user_data"]
    if i % 7 == 0:  # this producer hashes emails itself
        u["em"] = [hashlib.sha256(email.lower().encode()).hexdigest()]
    else:
        u["em"] = [f"  {email} "]
    u.update(
        ph=[phone.format(i % 10_000)], fn=[first], ln=[last], ct=[city],
        st=[state] if state else [], zp=[zp], country=[country], external_id=[f"user-{i % 997}"],
        client_ip_address=f"203.0.113.{i % 250}",
        client_user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        fbp=f"fb.1.{now * 1000}.{rnd.randrange(10**9)}",
    )  # fmt: skip
    if i % 23 == 0:
        u["em"] = ["not-an-email"]  # a bad single field: dropped with a warning, event still sent
    name = rnd.choice(_EVENTS)
    source = rnd.choices(("website", "app", "physical_store"), weights=(8, 1, 1))[0]
    e.update(
        event_name=name, event_time=now - rnd.randrange(1, 3600), action_source=source,
        event_id=f"demo-{i}" if i % 5 else None, pixel_id=PIXELS[i % len(PIXELS)],
        event_source_url="https://shop.example.com/checkout" if source == "website" else None,
        custom_data=_custom(rnd, name),
    )  # fmt: skip
    if source == "app":
        e["app_data"] = {
            "advertiser_tracking_enabled": True, "application_tracking_enabled": True,
            "extinfo": ["a2", "com.example.shop", "1.4", "1.4.2", "14", "Pixel 8", "en_US", "UTC",
                        "", "1080", "2400", "2.6", "8", "128", "64", "Europe/London"],
            "campaign_ids": None, "install_referrer": None, "installer_package": None,
            "url_schemes": [], "vendor_id": None, "windows_attribution_id": None,
        }  # fmt: skip
    return e


def invalid(rnd: random.Random, kind: str, i: int, now: int) -> dict[str, Any]:
    """A raw event that the normalize stage dead-letters with reason ``kind``."""
    e = event(rnd, i, now)
    e["action_source"] = "website"
    e["event_source_url"] = "https://shop.example.com/"
    e["app_data"] = None
    if kind == "event_time_too_old":
        e["event_time"] = now - 9 * 86_400
    elif kind == "missing_action_source":
        e["action_source"] = None
    elif kind == "too_broad_match_keys":
        e["action_source"] = "email"
        u = e["user_data"]
        for key in ("em", "ph", "fn", "ln", "zp", "external_id"):
            u[key] = []
        u.update(ge=["f"], client_ip_address=None, client_user_agent=None, fbp=None)
    elif kind == "purchase_without_currency":
        e["event_name"] = "Purchase"
        e["custom_data"] = _custom(rnd, "Purchase")
        e["custom_data"]["currency"] = "dollars"
    elif kind == "missing_client_user_agent":
        e["user_data"]["client_user_agent"] = None
    return e


def sample(count: int, now: int, seed: int = 42, invalid_every: int = 40) -> list[dict[str, Any]]:
    """``count`` raw events; every ``invalid_every``-th is one of :data:`INVALID_KINDS`."""
    rnd = random.Random(seed)  # noqa: S311 - sample data, not cryptography
    events = []
    for i in range(count):
        if invalid_every and i % invalid_every == invalid_every - 1:
            kind = INVALID_KINDS[(i // invalid_every) % len(INVALID_KINDS)]
            events.append(invalid(rnd, kind, i, now))
        else:
            events.append(event(rnd, i, now))
    return events
