"""Events, bodies and a movable clock for the simulator's tests.

Hashes are the SHA-256 test vectors of docs/capi.md §3.8.
"""

from __future__ import annotations

import time
from typing import Any, Final

import httpx

PIXEL: Final = "1234567890"
OTHER_PIXEL: Final = "9876543210"
TOKEN: Final = "sim-test-token"
EVENTS_PATH: Final = f"/v25.0/{PIXEL}/events"

EM: Final = (
    "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"  # john_smith@gmail.com
)
PH: Final = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"  # 16505551212
FN: Final = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"  # mary
GE: Final = "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111"  # f
CT: Final = "350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5"  # newyork
ST: Final = "1b06e2003f8420d6fa42badd8f77ec0f706b976b7a48b13c567dc5a559681683"  # ny
ZP: Final = "1794327a4d443904421f5ca1f3d72d0a62ba2f0770d80755ec2220fc0efb052e"  # 94035
COUNTRY: Final = "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"  # us
DB: Final = "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"  # 19970216
FI: Final = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"  # a
UA: Final = "Mozilla/5.0 (X11; Linux x86_64)"
#: app_data.extinfo: 16 positional strings (docs/capi.md §4.3).
EXTINFO: Final = [
    *("a2", "com.example.shop", "1.0", "1.0.1", "14", "Pixel 8", "en_US", "UTC"),
    *("", "1080", "2400", "2.0", "8", "64", "12", "Europe/Paris"),
]


def event(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid website Purchase, a minute old, with event_id ``e-{index}``."""
    base: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": int(time.time()) - 60,
        "action_source": "website",
        "event_id": f"e-{index}",
        "event_source_url": "https://shop.example.com/checkout/thanks",
        "user_data": {"em": [EM], "ph": [PH], "client_user_agent": UA},
        "custom_data": {"currency": "usd", "value": 123.45},
    }
    base.update(overrides)
    return base


def body(events: list[Any], **extra: Any) -> dict[str, Any]:
    """A JSON request body carrying the test token."""
    return {"data": events, "access_token": TOKEN, **extra}


def post(client: httpx.Client, events: list[Any], **extra: Any) -> httpx.Response:
    """POST ``events`` to the test pixel's events edge as JSON."""
    return client.post(EVENTS_PATH, json=body(events, **extra))


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The Graph error object of an answer."""
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


class Clock:
    """A clock a test moves by hand; starts at the real time so fresh events are in range."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
