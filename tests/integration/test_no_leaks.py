"""No token, app secret or raw customer data escapes: not in logs, metrics, dead letters, errors.

The whole pipeline runs in-process (normalize, then deliver to the simulator) on input full of
raw PII, through its error paths: invalid and corrupt records, a token error that halts the
lane, one event Meta rejects, one that expired, garbage on the enriched topic. Then every place
the outside world can read is searched, case-insensitively, for every secret and PII string.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import structlog

from stream import schemas
from stream.config import Settings, load_settings
from stream.core.codec import AvroCodec
from stream.core.errors import CapiStreamError
from stream.deliver.stage import Deliverer
from stream.logs import configure
from stream.metrics import PrometheusSensor
from stream.normalizer import Normalizer
from stream.sim import FaultConfig, PoisonRule, SimConfig, Simulator
from tests.factories import empty_user_data, raw_event
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "fake-leak-test-token-7f3a9cZZq"
APP_SECRET = "appsecret-leak-test-91be44"
PIXEL = "4455667788"

EMAIL = " Zebulon.Quackenbush@Example.ORG "
PHONE = "+1 (415) 555-0199"
FIRST = "Zebulon"
LAST = "Quackenbush"
CITY = "Kalamazoo"
EXTERNAL_ID = "cust-zq-778899"
#: Every string that must never be readable, raw and in the forms normalization produces.
FORBIDDEN = (
    TOKEN,
    APP_SECRET,
    EMAIL.strip(),
    "zebulon.quackenbush@example.org",
    PHONE,
    "14155550199",
    "4155550199",
    "555-0199",
    FIRST,
    LAST,
    CITY,
    EXTERNAL_ID,
)

VALID = 30
POISON_ID = "leak-poison"


def _user_data(**overrides: Any) -> dict[str, Any]:
    data = empty_user_data()
    data.update(
        em=[EMAIL], ph=[PHONE], fn=[FIRST], ln=[LAST], ct=[CITY], external_id=[EXTERNAL_ID],
        client_user_agent="Mozilla/5.0 (X11; Linux x86_64)", client_ip_address="203.0.113.7",
    )  # fmt: skip
    data.update(overrides)
    return data


def _raw_inputs(now: int) -> tuple[list[tuple[bytes | None, bytes]], int]:
    """Raw records: valid ones, one Meta will reject, invalid and corrupt ones (with PII)."""
    codec = AvroCodec(schemas.load("conversion_event"))
    events = [
        raw_event(event_id=f"leak-ok-{i}", event_time=now - 60, pixel_id=PIXEL,
                  user_data=_user_data())
        for i in range(VALID)
    ]  # fmt: skip
    events.append(
        raw_event(event_id=POISON_ID, event_time=now - 60, pixel_id=PIXEL, user_data=_user_data())
    )
    # dropped fields: the warning must name the key, never the value
    events.append(raw_event(
        event_id="leak-warned", event_time=now - 60, pixel_id=PIXEL,
        user_data=_user_data(em=[f"not an email {FIRST} {LAST}"], ph=[f"call {FIRST}"]),
    ))  # fmt: skip
    invalid = [
        raw_event(event_id="leak-old", event_time=now - 9 * 86_400, pixel_id=PIXEL,
                  user_data=_user_data()),
        raw_event(event_id="leak-noname", event_name="", event_time=now, pixel_id=PIXEL,
                  user_data=_user_data()),
        raw_event(event_id="leak-nopixel", event_time=now, pixel_id=None, user_data=_user_data()),
        raw_event(event_id="leak-source", action_source=f"{FIRST} {LAST}", event_time=now,
                  pixel_id=PIXEL, user_data=_user_data()),
    ]  # fmt: skip
    items: list[tuple[bytes | None, bytes]] = [
        (f"key-{i}".encode(), codec.encode(e)) for i, e in enumerate(events + invalid)
    ]
    whole = codec.encode(invalid[0])
    items += [
        (b"key-corrupt", b"\xff\xfe" + EMAIL.encode() + PHONE.encode()),
        (b"key-truncated", whole[: len(whole) // 2]),
    ]
    return items, len(invalid) + 2


def _settings(bootstrap: str, names: dict[str, str], sim: Simulator) -> Settings:
    return stage_settings(
        bootstrap, names, access_token=TOKEN, app_secret=APP_SECRET,
        deliverer={"graph_url": sim.url, "linger_ms": 200, "commit_interval_s": 0.5,
                   "request_timeout_s": 2.0, "retry_base_s": 0.1, "retry_max_s": 1.0},
    )  # fmt: skip


def _leaks(where: str, texts: Iterable[str]) -> list[str]:
    """Each (where, forbidden string, excerpt) found in ``texts``, case-insensitively."""
    found = []
    for text in texts:
        low = text.lower()
        for secret in FORBIDDEN:
            at = low.find(secret.lower())
            if at >= 0:
                found.append(f"{where}: {secret!r} in …{text[max(0, at - 80) : at + 80]}…")
    return found


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """structlog configured by stream.logs (JSON, debug), writing to file descriptor 2.

    The logger is bound to the process's real stderr rather than pytest's per-test stand-in, so
    that module loggers cached during this test still have an open file in later tests; capfd
    captures descriptor 2 all the same.
    """
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", sys.__stderr__)
        configure("debug", "json")
    yield
    structlog.reset_defaults()


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["raw"], n["enriched"], n["dlq"], partitions=3)
    return n


def _provoked_errors(settings: Settings) -> list[BaseException]:
    """Errors raised on purpose with secrets and PII at hand: their text must hold neither."""
    errors: list[BaseException] = []
    attempts: list[Callable[[], object]] = [
        lambda: load_settings(access_token=TOKEN, app_secret=APP_SECRET,
                              deliverer={"max_events": 5000}),
        lambda: load_settings(access_tokens=f'{{"{PIXEL}": "{TOKEN}"'),
        lambda: load_settings(access_tokens={PIXEL: 42}, app_secret=[APP_SECRET]),
        lambda: Deliverer(settings.model_copy(update={"deliverer": settings.deliverer.model_copy(
            update={"production": True, "test_event_code": "TEST1"})})),
        lambda: AvroCodec(schemas.load("conversion_event")).decode(
            b"\x02" + EMAIL.encode() + FIRST.encode()),
    ]  # fmt: skip
    for attempt in attempts:
        try:
            attempt()
        except CapiStreamError as exc:
            errors.append(exc)
    assert len(errors) == len(attempts)  # each of them did fail
    return errors


def test_no_secret_or_raw_pii_in_logs_metrics_dead_letters_or_errors(
    kafka_bootstrap: str,
    names: dict[str, str],
    json_logs: None,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full run through every error path leaves no token, secret or raw PII anywhere."""
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    items, invalid = _raw_inputs(now)
    produce(kafka_bootstrap, names["raw"], items)
    # straight onto the enriched topic: garbage with PII, and an event past Meta's 7-day limit
    stale_now = time.time() - 7 * 86_400 + 100
    produce(kafka_bootstrap, names["enriched"], [
        (b"key-garbage", b"\x00\x01" + EMAIL.encode()),
        (b"key-stale", enriched_value("leak-stale", PIXEL, stale_now, user_data=_user_data())),
    ])  # fmt: skip

    poison = (PoisonRule(field="event_id", op="equals", value=POISON_ID),)
    config = SimConfig(
        tokens={TOKEN: frozenset({"*"})}, app_secret=APP_SECRET,
        faults=FaultConfig(rates={"code_190": 1.0}, poison=poison),
    )  # fmt: skip
    sensor = PrometheusSensor()
    raised: list[BaseException] = []
    with Simulator(config) as sim:
        settings = _settings(kafka_bootstrap, names, sim)
        normalized = Normalizer(settings, sensor=sensor).run(max_idle_s=3)
        assert normalized.dead_lettered == invalid

        deliverer = Deliverer(settings, sensor=sensor)

        def deliver() -> None:
            try:
                deliverer.run(max_idle_s=3)
            except BaseException as exc:  # noqa: BLE001 - its text is scanned below
                raised.append(exc)

        thread = threading.Thread(target=deliver, daemon=True)
        thread.start()
        try:
            # the token is refused: the lane halts and probes; then the token works again
            wait_until(lambda: bool(deliverer.halted_lanes), 30, "the lane to halt")
            wait_until(lambda: sim.stats().faults.get("code_190", 0) >= 2, 30, "a probe")
            sim.set_faults(FaultConfig(poison=poison))
            thread.join(60)
            assert not thread.is_alive()
        finally:
            deliverer.stop()
            thread.join(30)
        delivered = sim.stats()
    expected = {("Purchase", f"leak-ok-{i}") for i in range(VALID)} | {("Purchase", "leak-warned")}
    assert delivered.missing(expected) == set()
    assert raised == []

    letters = read_all(kafka_bootstrap, names["dlq"], expected=invalid + 3)
    errors = raised + _provoked_errors(settings)
    captured = capfd.readouterr()
    log_lines = (captured.err + captured.out).splitlines()
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    stdlib_lines = [formatter.format(record) for record in caplog.records]

    # the captures hold what they should, so an empty scan means clean, not blind
    events = [json.loads(line) for line in log_lines if line.startswith("{")]
    said = {e.get("event") for e in events}
    assert {"lane halted", "request failed", "batch delivered", "isolated"} <= said, said
    assert any(r.name.startswith("httpx") for r in caplog.records)
    metrics = sensor.text()
    assert 'capi_stream_dead_lettered_total{reason="rejected_by_meta",stage="deliver"} 1.0' in (
        metrics
    )

    dlq_codec = AvroCodec(schemas.load("dead_letter"))
    letter_texts = []
    reasons = set()
    for record in letters:
        letter = dlq_codec.decode(record.value or b"")
        reasons.add((letter["stage"], letter["reason"]))
        shown = {k: v for k, v in letter.items() if k not in ("original_value", "original_key")}
        letter_texts.append(json.dumps(shown, default=repr))
        letter_texts.append(repr(record.headers))
    assert {("deliver", "rejected_by_meta"), ("deliver", "expired")} <= reasons, reasons
    assert any(s == "deliver" and r.startswith("decode_") for s, r in reasons), reasons
    error_texts = ["".join(traceback.format_exception(e)) for e in errors]

    leaks = (
        _leaks("log", log_lines)
        + _leaks("stdlib log", stdlib_lines)
        + _leaks("metrics", [metrics])
        + _leaks("dead letter", letter_texts)
        + _leaks("exception", error_texts)
        + _leaks("settings", [repr(settings), str(settings), settings.model_dump_json()])
    )
    assert leaks == [], "\n".join(leaks)
