"""A schema registry that fails for a while loses no event and dead-letters no good one.

The normalize stage resolves a writer schema id the first time a record carries it. When the
registry cannot answer (a refused or dropped connection, a 503 while it restarts, a proxy's bare
404 page), the record is not at fault: the stage must re-read the batch and try again, not
dead-letter it as ``decode_unknown_schema``, and not crash with a raw traceback. Only the
registry's own "no schema has this id" (HTTP 404 with error code 40403) dead-letters.

The faults come from a small HTTP proxy in front of the session's real registry (Apicurio):
the registry keeps its schemas while the proxy answers as a failing one would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.kafka.registry import Registry
from stream.normalizer import Normalizer
from tests.factories import raw_event
from tests.integration.helpers import produce, read_all, stage_names, stage_settings, wait_until

pytestmark = pytest.mark.integration

EVENTS = 50
FAULT_S = 4.0  # how long the proxy fails every request once the new schema's records arrive


class FaultyRegistry:
    """A proxy to ``upstream`` (the registry's base URL) that fails as :attr:`mode` says:
    ``pass``, ``bare_404`` (a 404 page without the registry's error code), ``http_503``, or
    ``drop`` (the connection closed without an answer)."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        self.faulted = 0
        proxy = self
        client = httpx.Client(base_url=upstream, timeout=10)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if proxy.mode != "pass":
                    proxy.faulted += 1
                if proxy.mode == "drop":
                    self.close_connection = True
                    return
                if proxy.mode in ("bare_404", "http_503"):
                    status = 404 if proxy.mode == "bare_404" else 503
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                got = client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(got.content)))
                self.end_headers()
                self.wfile.write(got.content)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *_: Any) -> None:
                pass  # quiet: the test reports what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._client = client
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyRegistry:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


@pytest.fixture
def faulty(schema_registry_url: str) -> Iterator[tuple[FaultyRegistry, str]]:
    upstream, _, path = schema_registry_url.partition("/apis/")
    with FaultyRegistry(upstream) as proxy:
        yield proxy, f"{proxy.base}/apis/{path}"


def _newer_raw_schema() -> dict[str, Any]:
    """The raw schema with one more optional field: a producer's newer, compatible version."""
    schema = dict(schemas.load("conversion_event"))
    extra = {"name": "note_for_tests", "type": ["null", "string"], "default": None}
    schema["fields"] = [*schema["fields"], extra]
    return schema


@pytest.mark.parametrize("mode", ["drop", "http_503", "bare_404"])
def test_a_failing_registry_delays_records_of_a_new_schema_and_dead_letters_none(  # noqa: PLR0917
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    faulty: tuple[FaultyRegistry, str],
    mode: str,
) -> None:
    """The stage starts through the proxy; records written with a newer schema id arrive and
    the proxy fails every request (``mode``) for FAULT_S: the stage re-reads the batch until
    the registry answers, then enriches every record once (exactly once); no dead letter."""
    proxy, url = faulty
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=1)
    newer = _newer_raw_schema()
    registry = Registry(schema_registry_url)
    try:
        newer_id = registry.register(schemas.subject(names["raw"]), newer)
    finally:
        registry.close()
    codec = AvroCodec(newer, wire_format="confluent", schema_id=newer_id)
    now = int(time.time())
    ids = [f"reg-{i}" for i in range(EVENTS)]
    records = [
        (i.encode(), codec.encode({**raw_event(event_id=i, event_time=now - 60, pixel_id="111"),
                                   "note_for_tests": "v2"}))
        for i in ids
    ]  # fmt: skip
    settings = stage_settings(
        kafka_bootstrap, names, schema_registry_url=url, wire_format="confluent",
        normalizer={"call_timeout_s": 30.0},
    )  # fmt: skip
    stage = Normalizer(settings)
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    stats = stage.stats
    try:
        wait_until(stage.ready, 60, "the stage's partitions")
        proxy.mode = mode
        produce(kafka_bootstrap, names["raw"], records)
        failing = wait_until(lambda: stats.aborted >= 1, 30, "a batch re-read for the registry")
        time.sleep(max(0.0, failing + FAULT_S - time.monotonic()))
        proxy.mode = "pass"
        wait_until(lambda: stats.enriched + stats.dead_lettered >= EVENTS, 60, "every record")
    finally:
        proxy.mode = "pass"
        stage.stop()
        thread.join(60)
    assert not thread.is_alive()
    print(f"{mode}: {proxy.faulted} requests failed, {stats.aborted} batches re-read")
    assert proxy.faulted >= 1
    assert stats.dead_lettered == 0
    enriched = read_all(kafka_bootstrap, names["enriched"], expected=EVENTS, idle_s=0.5)
    assert sorted(r.key for r in enriched) == sorted(i.encode() for i in ids)
    assert read_all(kafka_bootstrap, names["dlq"], idle_s=0.5) == []


def test_an_id_the_registry_does_not_know_is_dead_lettered(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    faulty: tuple[FaultyRegistry, str],
) -> None:
    """The registry's own answer "schema not found" (404, error code 40403) is about the record:
    it becomes a decode_unknown_schema dead letter and the stage moves on."""
    _, url = faulty
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=1)
    codec = AvroCodec(schemas.load("conversion_event"), wire_format="confluent", schema_id=987_654)
    value = codec.encode(raw_event(event_id="ghost", event_time=int(time.time()) - 60))
    produce(kafka_bootstrap, names["raw"], [(b"ghost", value)])
    settings = stage_settings(
        kafka_bootstrap, names, schema_registry_url=url, wire_format="confluent"
    )
    stats = Normalizer(settings).run(max_idle_s=3)
    assert (stats.consumed, stats.dead_lettered) == (1, 1)
    (dead,) = read_all(kafka_bootstrap, names["dlq"], expected=1, idle_s=0.5)
    assert dict(dead.headers)["capi.reason"] == b"decode_unknown_schema"
