"""The largest record a stage may produce: what the broker and our own producer will accept.

A record that is too large is refused twice over: librdkafka fails ``produce()`` with
``MSG_SIZE_TOO_LARGE`` when key + value + headers exceed the producer's ``message.max.bytes``,
and the broker refuses a record batch larger than the topic's ``max.message.bytes``. Either way
the stage used to exit and re-read the same record forever (issue 10, part 2). The stages read
the limit once at start with :func:`max_record_bytes` and turn any output over it into a dead
letter (``record_too_large``) before producing.

The limit compares against key + value + header keys and values, as
:func:`stream.core.dead_letter.record_size` counts them. What that sum leaves out is the framing
around the bytes, so :data:`SAFETY_MARGIN` is taken off:

* the record batch header: 61 bytes (magic v2), one batch per record at worst;
* the record's own framing: length, attributes, timestamp and offset deltas, key and value
  lengths, header count, all varints: at most 36 bytes (librdkafka's
  ``RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD``);
* each header's two length varints: at most 10 bytes a header.

That is ~200 bytes for our few headers; 8 KiB leaves room for a deliver-stage dead letter that
copies up to a few hundred original headers, at less than 1 % of the 1,000,000 byte default.
Compression only makes the batch smaller, so the uncompressed count is the safe side.

    >>> max_record_bytes(admin_config, producer_config, ["capi.events.enriched", "capi.events.dlq"])
    991808   # min(1,048,588 broker default, 1,000,000 producer default) - 8,192
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from stream.core.errors import KafkaError
from stream.kafka.errors import translate

#: librdkafka's default ``message.max.bytes`` (the producer's own cap on one record).
PRODUCER_DEFAULT_MAX_BYTES: Final = 1_000_000
#: Apache Kafka's default ``max.message.bytes``: assumed for a topic whose broker does not report
#: it (some Kafka-compatible brokers, such as the demo's embedded one, describe no such config).
BROKER_DEFAULT_MAX_BYTES: Final = 1_048_588
#: Bytes kept free for the record batch and record framing (see the module docstring).
SAFETY_MARGIN: Final = 8 * 1024
#: Below this a limit leaves no room for a bounded dead letter: a configuration mistake.
MIN_RECORD_BYTES: Final = 64 * 1024


def max_record_bytes(
    admin_config: Mapping[str, Any],
    producer_config: Mapping[str, Any],
    topics: Sequence[str],
    timeout_s: float = 30.0,
) -> int:
    """Bytes of key + value + headers a record for any of ``topics`` may have, margin taken off.

    The smallest of :func:`record_limits` (the producer's own limit when ``topics`` is empty).
    """
    limits = record_limits(admin_config, producer_config, topics, timeout_s)
    if limits:
        return min(limits.values())
    return _less_margin("producer message.max.bytes", _producer_limit(producer_config))


def record_limits(
    admin_config: Mapping[str, Any],
    producer_config: Mapping[str, Any],
    topics: Sequence[str],
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Per topic, the bytes of key + value + headers a record for it may have.

    The smaller of the topic's ``max.message.bytes`` (asked of the broker once for all topics)
    and the producer's ``message.max.bytes`` (librdkafka's default when unset), less
    :data:`SAFETY_MARGIN`. A topic whose broker describes no ``max.message.bytes`` counts with
    Kafka's default. Raises :class:`KafkaError` when the broker does not answer or a topic does
    not exist (both retriable: a restart tries again), and (fatal) when a limit is below
    :data:`MIN_RECORD_BYTES`.
    """
    producer = ("producer message.max.bytes", _producer_limit(producer_config))
    limits: dict[str, int] = {}
    for topic, value in _topic_limits(admin_config, topics, timeout_s).items():
        ours = (f"topic {topic} max.message.bytes", value)
        limits[topic] = _less_margin(*min(ours, producer, key=lambda item: item[1]))
    return limits


def _less_margin(where: str, smallest: int) -> int:
    limit = smallest - SAFETY_MARGIN
    if limit < MIN_RECORD_BYTES:
        raise KafkaError(
            f"{where} is {smallest} bytes: too small to produce records and bounded dead letters "
            f"(at least {MIN_RECORD_BYTES + SAFETY_MARGIN} needed)",
            fatal=True,
        )
    return limit


def _producer_limit(producer_config: Mapping[str, Any]) -> int:
    value = producer_config.get("message.max.bytes")
    if value is None:
        return PRODUCER_DEFAULT_MAX_BYTES
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise KafkaError(f"message.max.bytes is not a number of bytes: {value!r}") from exc


def _topic_limits(
    admin_config: Mapping[str, Any], topics: Sequence[str], timeout_s: float
) -> dict[str, int]:
    if not topics:
        return {}
    admin = AdminClient(dict(admin_config))
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in dict.fromkeys(topics)]
    limits: dict[str, int] = {}
    try:
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource, future in futures.items():
            try:
                entries = future.result(timeout=timeout_s)
            except KafkaException as exc:
                if _missing_topic(exc):
                    # said as such: a stage must not read it as "no limit reported" and start
                    raise KafkaError(
                        f"topic {resource.name} does not exist (capi-stream topics create "
                        "makes the stages' topics)",
                        retriable=True,
                    ) from exc
                raise
            entry = entries.get("max.message.bytes")
            reported = entry.value if entry is not None else None
            value = int(reported) if reported is not None else BROKER_DEFAULT_MAX_BYTES
            limits[resource.name] = value
    except KafkaException as exc:
        raise translate(exc, "reading the topics' max.message.bytes") from exc
    except TimeoutError as exc:
        raise KafkaError(
            f"reading the topics' max.message.bytes: no answer in {timeout_s} s", retriable=True
        ) from exc
    return limits


def _missing_topic(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, RdKafkaError) and error.code() == RdKafkaError.UNKNOWN_TOPIC_OR_PART
