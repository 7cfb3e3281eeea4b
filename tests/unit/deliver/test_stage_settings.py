"""Settings the deliver stage refuses before it connects to anything."""

from __future__ import annotations

import pytest

from stream.config import Settings
from stream.core.errors import ConfigError
from stream.deliver.stage import Deliverer


def test_a_stage_wide_test_event_code_in_production_is_refused() -> None:
    """production=true with deliverer.test_event_code would send every event as a test event:
    the stage refuses to start, naming the setting (the CLI maps it to exit 2)."""
    settings = Settings(
        access_token="t", deliverer={"production": True, "test_event_code": "TEST123"}
    )
    with pytest.raises(ConfigError, match="TEST_EVENT_CODE is set in production mode"):
        Deliverer(settings)


def test_production_without_a_stage_wide_test_code_starts() -> None:
    """The same settings without the stage-wide code build a stage (nothing connects yet)."""
    settings = Settings(access_token="t", deliverer={"production": True})
    assert Deliverer(settings).ready() is False
