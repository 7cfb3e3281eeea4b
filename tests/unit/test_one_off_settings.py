"""one_off(): the short-lived clients of replay and dlq start within ~15 ms, not ~50."""

from __future__ import annotations

from stream.config import Settings
from stream.kafka.offsets_admin import one_off


def test_the_reconnect_backoff_is_shortened_for_admin_and_consumer() -> None:
    """Without a configured backoff the look-up and reader clients wait 20 ms."""
    settings = one_off(Settings(bootstrap_servers="127.0.0.1:9", consumer={"fetch.min.bytes": 1}))
    assert settings.admin_config()["reconnect.backoff.ms"] == 20
    assert settings.consumer_config("g")["reconnect.backoff.ms"] == 20
    assert settings.consumer_config("g")["fetch.min.bytes"] == 1
    assert "reconnect.backoff.ms" not in settings.producer_config()


def test_a_configured_backoff_stays() -> None:
    """What the operator set, in any section, wins."""
    common = Settings(bootstrap_servers="127.0.0.1:9", kafka={"reconnect.backoff.ms": 500})
    assert one_off(common).admin_config()["reconnect.backoff.ms"] == 500
    admin = Settings(bootstrap_servers="127.0.0.1:9", admin={"reconnect.backoff.ms": 300})
    assert one_off(admin).admin_config()["reconnect.backoff.ms"] == 300
    assert one_off(admin).consumer_config("g")["reconnect.backoff.ms"] == 20
