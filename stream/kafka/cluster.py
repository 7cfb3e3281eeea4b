"""The cluster as commands meet it: wait (bounded) for it to answer; describe our topics.

Wait, a bounded time, for the cluster to answer before a command or stage starts using it.

librdkafka never gives up on an unreachable broker: a producer queues and retries for
``message.timeout.ms`` (minutes), an admin request waits out its timeout, and every reconnect
logs a line. So commands first ask for the cluster's metadata, up to
``kafka_connect_timeout_s``: when the first short probe fails they say ONCE that they wait, and
when the time is up they fail with ONE line naming the bootstrap servers and librdkafka's last
reason (e.g. ``Connection refused``), which the CLI maps to exit 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.config import Settings
from stream.core.errors import ConfigError, KafkaError
from stream.kafka.errors import translate

#: The first metadata request's timeout: a reachable cluster answers in milliseconds.
FIRST_PROBE_S = 1.0

# librdkafka's answers meaning "no broker answered (yet)"; anything else (authentication, ...)
# will not heal by waiting and fails at once
_UNREACHABLE = frozenset({
    RdKafkaError._TRANSPORT,
    RdKafkaError._TIMED_OUT,
    RdKafkaError._ALL_BROKERS_DOWN,
    RdKafkaError._RESOLVE,
})  # fmt: skip


class _LastProblem(logging.Handler):
    """Keeps the last warning or error librdkafka logged (the reason a connect failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # "FAIL [rdkafka#producer-1] [thrd:...]: 127.0.0.1:1/bootstrap: Connect to ... refused"
        self.text = record.getMessage().rsplit("]: ", 1)[-1]


def wait_for_cluster(
    settings: Settings,
    on_wait: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the cluster answers a metadata request; :class:`KafkaError` after
    ``settings.kafka_connect_timeout_s``. ``on_wait`` gets one progress line, only if waiting."""
    config: dict[str, Any] = settings.admin_config()
    servers = str(config.get("bootstrap.servers", settings.bootstrap_servers))
    timeout_s = settings.kafka_connect_timeout_s
    problem = _LastProblem()
    probe_log = logging.Logger("capi_stream.librdkafka.probe")  # private: not in the registry
    probe_log.addHandler(problem)
    config["logger"] = probe_log
    admin = AdminClient(config)
    deadline = clock() + timeout_s
    first = True
    while True:
        started = clock()
        ask = min(deadline - started, FIRST_PROBE_S) if first else deadline - started
        try:
            admin.list_topics(timeout=max(ask, 0.001))
            return
        except KafkaException as exc:
            err: Any = exc.args[0] if exc.args else None
            if not isinstance(err, RdKafkaError) or err.code() not in _UNREACHABLE:
                raise translate(exc, f"connecting to Kafka at {servers}") from exc
        if first:
            first = False
            on_wait(f"waiting up to {timeout_s:g} s for Kafka at {servers}")
        now = clock()
        if now >= deadline:
            admin.poll(0)  # serves the client's queued log lines to `problem`
            reason = f" ({problem.text})" if problem.text else ""
            raise KafkaError(
                f"cannot reach Kafka at {servers} within {timeout_s:g} s{reason}", retriable=True
            )
        if now - started < min(ask, 0.2):  # an answer that came back at once: do not spin
            time.sleep(min(0.2, deadline - now))


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic as the cluster describes it to us: partitions, or why there are none."""

    name: str
    partitions: int = 0
    #: librdkafka's error name (``UNKNOWN_TOPIC_OR_PART``, ``TOPIC_AUTHORIZATION_FAILED``) or None
    error: str | None = None

    @property
    def exists(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What ``capi-stream check`` reports about the cluster."""

    brokers: int
    cluster_id: str | None
    topics: tuple[TopicState, ...]


def describe_topics(settings: Settings, names: list[str], timeout_s: float = 10.0) -> ClusterState:
    """Ask the cluster about each topic in ``names`` (a metadata request each: a topic we may
    not describe answers ``TOPIC_AUTHORIZATION_FAILED`` instead of vanishing from a listing).

    :class:`KafkaError` when the cluster does not answer at all."""
    admin = _describing_admin(settings)
    try:
        cluster = admin.list_topics(timeout=timeout_s)
        states = [_topic_state(admin, name, timeout_s) for name in names]
    except KafkaException as exc:
        raise translate(exc, "describing topics") from exc
    return ClusterState(len(cluster.brokers), cluster.cluster_id, tuple(states))


def describe_topic(settings: Settings, name: str, timeout_s: float = 10.0) -> TopicState:
    """One topic as the cluster describes it (see :func:`describe_topics`); never creates it."""
    try:
        return _topic_state(_describing_admin(settings), name, timeout_s)
    except KafkaException as exc:
        raise translate(exc, f"describing topic {name}") from exc


def _describing_admin(settings: Settings) -> AdminClient:
    # asking about one topic by name must not create it on a broker that auto-creates topics
    # (an admin client is a producer to librdkafka, whose default allows it)
    return AdminClient({**settings.admin_config(), "allow.auto.create.topics": False})


def _topic_state(admin: AdminClient, name: str, timeout_s: float) -> TopicState:
    meta = admin.list_topics(topic=name, timeout=timeout_s).topics.get(name)
    if meta is None:
        return TopicState(name, error="UNKNOWN_TOPIC_OR_PART")
    if meta.error is not None:
        return TopicState(name, error=meta.error.name())
    return TopicState(name, partitions=len(meta.partitions))


#: A topic created a moment ago may be unknown to the broker asked until its metadata lands.
_UNKNOWN_TOPIC_RETRIES = 3
_UNKNOWN_TOPIC_PAUSE_S = 0.3


def require_topic(settings: Settings, topic: str, *, create: str, verb: str) -> None:
    """Stop before any record is read when ``topic`` cannot take records: one line, not a
    librdkafka error per record. ``create`` says how to make the topic, ``verb`` what the
    command was about to do to it. Only a verdict that waiting will not change stops it: any
    other answer (``LEADER_NOT_AVAILABLE`` just after creation) is left to the producer."""
    for attempt in range(_UNKNOWN_TOPIC_RETRIES):
        state = describe_topic(settings, topic, settings.kafka_connect_timeout_s)
        if state.error != "UNKNOWN_TOPIC_OR_PART":
            break
        if attempt + 1 < _UNKNOWN_TOPIC_RETRIES:
            time.sleep(_UNKNOWN_TOPIC_PAUSE_S)
    else:
        raise ConfigError(f"topic {topic} does not exist: {create}")
    if state.error == "TOPIC_AUTHORIZATION_FAILED":
        raise KafkaError(f"cannot {verb} topic {topic}: not authorized ({state.error})")
