"""The per-event delivery rules: production guard, Meta's age limit, the size guard."""

from __future__ import annotations

import pytest

from stream.core.capi import MAX_AGE_PHYSICAL_STORE_SECONDS, MAX_AGE_SECONDS, max_age_s
from stream.core.delivery_rules import EXPIRY_MARGIN_S, Admitted, DeliveryRules, Failure

NOW = 1_000_000_000.0


def check(rules: DeliveryRules, **over: object) -> Admitted | Failure:
    fields: dict[str, object] = {
        "pixel_id": "1", "event_id": "e", "event_name": "Purchase", "event_time": NOW - 60,
        "action_source": "website", "test_event_code": None, "event_bytes": 500, "now": NOW,
    }  # fmt: skip
    fields.update(over)
    return rules.check(**fields)  # type: ignore[arg-type]


def test_the_age_limit_is_seven_days_or_62_for_physical_stores() -> None:
    """One function holds Meta's limit; every action source but physical_store gets 7 days."""
    assert max_age_s("website") == MAX_AGE_SECONDS == 7 * 86_400
    assert max_age_s(None) == MAX_AGE_SECONDS
    assert max_age_s("physical_store") == MAX_AGE_PHYSICAL_STORE_SECONDS == 62 * 86_400


def test_the_worked_example() -> None:
    """A website event 200 s short of 7 days is expired (margin 300 s); a store event is not."""
    old = NOW - MAX_AGE_SECONDS + 200
    expired = check(DeliveryRules(), event_time=old)
    assert isinstance(expired, Failure)
    assert (expired.reason, expired.event_id, expired.pixel_id) == ("expired", "e", "1")
    assert "7-day" in expired.message
    admitted = check(DeliveryRules(), event_time=old, action_source="physical_store")
    assert admitted == Admitted(None, old + MAX_AGE_PHYSICAL_STORE_SECONDS - EXPIRY_MARGIN_S)


def test_a_test_event_code_in_production_is_refused() -> None:
    """The event's own code, or the stage's, refuses the event when production is on."""
    prod = DeliveryRules(production=True)
    assert check(prod, test_event_code="T1").reason == "test_event_in_production"  # type: ignore[union-attr]
    assert isinstance(check(prod), Admitted)
    staged = DeliveryRules(default_test_event_code="T2")
    assert check(staged) == Admitted("T2", NOW - 60 + MAX_AGE_SECONDS - EXPIRY_MARGIN_S)
    assert check(staged, test_event_code="T3").test_event_code == "T3"  # type: ignore[union-attr]


@pytest.mark.parametrize(("size", "ok"), [(98, True), (99, False)])
def test_an_event_that_fits_no_request_is_refused(size: int, ok: bool) -> None:
    """The data array adds two bytes: a 98-byte event fits 100 bytes, a 99-byte one does not."""
    verdict = check(DeliveryRules(max_bytes=100), event_bytes=size)
    assert isinstance(verdict, Admitted) is ok
    if not ok:
        assert verdict.reason == "event_too_large"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rules", "over"),
    [
        (DeliveryRules(), {}),
        (DeliveryRules(default_test_event_code="T1"), {}),
        (DeliveryRules(production=True), {"test_event_code": "T2"}),
        (DeliveryRules(), {"event_time": NOW - 8 * 86_400}),
        (DeliveryRules(max_bytes=100), {"event_bytes": 99}),
    ],
)
def test_admit_is_check_without_an_object_per_admitted_event(
    rules: DeliveryRules, over: dict[str, object]
) -> None:
    """The stage's positional hot path gives the same verdicts: a plain (code, expiry) tuple
    for an admitted event, the same Failure for a refused one."""
    verdict = check(rules, **over)
    fields: dict[str, object] = {
        "pixel_id": "1", "event_id": "e", "event_name": "Purchase", "event_time": NOW - 60,
        "action_source": "website", "test_event_code": None, "event_bytes": 500, "now": NOW,
    }  # fmt: skip
    fields.update(over)
    fast = rules.admit(*fields.values())  # type: ignore[arg-type]
    if isinstance(verdict, Failure):
        assert fast == verdict
    else:
        assert type(fast) is tuple
        assert fast == (verdict.test_event_code, verdict.expires_at)
