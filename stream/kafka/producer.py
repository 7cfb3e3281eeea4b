"""The producer seam: transactional (exactly-once) and idempotent (at-least-once) producing.

Every blocking call runs under a deadline of ``call_timeout_s`` (an :class:`~stream.watchdog.Arm`
ends the process when it passes: librdkafka's own timeouts are not always honoured, see
:mod:`stream.watchdog`). Inside that deadline the transactional calls follow librdkafka's rules:

========================== ============================ =========================================
call                        retriable error              abortable / any other error
========================== ============================ =========================================
init_transactions           call again                   fatal: raised
send_offsets_to_transaction call again                   abortable or fatal: raised
commit_transaction          call again (it resumes)      abortable or fatal: raised
abort_transaction           call again                   fatal: raised
========================== ============================ =========================================

The caller aborts and re-reads on an abortable error and ends the process on a fatal one: a
fresh process's ``init_transactions`` fences this one and re-reads from the committed offsets.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.core.errors import KafkaError
from stream.core.records import TopicPartition
from stream.kafka.errors import translate
from stream.logs import get_logger
from stream.watchdog import Arm, no_deadline

log = get_logger("capi_stream.producer")

Headers = Sequence[tuple[str, bytes]]

#: Each attempt's librdkafka timeout ends this long before the watchdog's deadline, so a library
#: that honours its timeout answers first and the call can be retried within the deadline.
_ATTEMPT_MARGIN_S: Final = 1.0
_MIN_ATTEMPT_S: Final = 0.5
_RETRY_PAUSE_S: Final = (0.1, 2.0)  # first and longest pause between retried attempts


class StageProducer:
    """Produces records; in transactional mode, batches them with input offsets atomically.

    Delivery failures are collected from librdkafka's callbacks and raised by :meth:`flush`, so a
    record that never reached the broker can never be mistaken for delivered.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        transactional: bool,
        arm: Arm = no_deadline,
        call_timeout_s: float = 60.0,
    ) -> None:
        # the callback acts on failures only: librdkafka then calls it for failures only, not
        # once per record (a Python call per record in the normalize stage's hot loop)
        self._producer = Producer({"delivery.report.only.error": True, **config})
        self.transactional = transactional
        self._arm = arm
        self.call_timeout_s = call_timeout_s
        self._failures: list[str] = []
        # whether every failure since the last flush is one librdkafka calls retriable: a record
        # the broker refuses for good (MSG_SIZE_TOO_LARGE) fails the same way when produced again
        self._failures_retriable = True
        if transactional:
            # fences any earlier instance with the same transactional.id and aborts its open
            # transaction, so a restart after kill -9 does not wait for the transaction timeout
            self._transact("init_transactions", self._producer.init_transactions)

    def _on_delivery(self, err: RdKafkaError | None, msg: Any) -> None:
        if err is not None:
            # the topic, so a refused dead letter is told from a refused output record
            self._failures.append(f"{err.name()} on {msg.topic()}: {err.str()}")
            self._failures_retriable &= bool(err.retriable())

    def produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Queue one record; waits (within the deadline) for queue space when the queue is full."""
        try:
            self._produce(topic, key, value, headers)
        except BufferError:
            with self._arm("produce (queue full)", self.call_timeout_s):
                while True:
                    self._producer.poll(0.1)
                    try:
                        self._produce(topic, key, value, headers)
                        return
                    except BufferError:
                        continue

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        try:
            self._producer.produce(
                topic, value=value, key=key, headers=list(headers), on_delivery=self._on_delivery
            )
        except KafkaException as exc:
            raise translate(exc, f"producing to {topic}") from exc

    def poll(self) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record; raise if any failed or is still queued."""
        timeout_s = self.call_timeout_s if timeout_s is None else timeout_s
        with self._arm("flush", timeout_s + _ATTEMPT_MARGIN_S):
            left = self._producer.flush(timeout_s)
        if left:
            raise KafkaError(f"{left} records still queued after {timeout_s:.0f}s", retriable=True)
        if self._failures:
            failures, self._failures = self._failures, []
            retriable, self._failures_retriable = self._failures_retriable, True
            raise KafkaError(
                f"{len(failures)} records not delivered: {failures[0]}", retriable=retriable
            )

    # -- transactions --------------------------------------------------------------------------

    def begin(self) -> None:
        """Begin a transaction (local to the client: no broker call)."""
        try:
            with self._arm("begin_transaction", self.call_timeout_s):
                self._producer.begin_transaction()
        except KafkaException as exc:
            raise translate(exc, "begin_transaction") from exc

    def commit(self, offsets: Mapping[TopicPartition, int], group_metadata: Any) -> None:
        """Add the input ``next_offset`` per partition to the transaction and commit it."""
        parts = [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        if parts:
            self._transact(
                "send_offsets_to_transaction",
                lambda t: self._producer.send_offsets_to_transaction(parts, group_metadata, t),
            )
        self._transact("commit_transaction", self._producer.commit_transaction)
        self._failures.clear()
        self._failures_retriable = True

    def abort(self) -> None:
        """Abort the open transaction; its records are never seen by read_committed readers."""
        self._failures.clear()
        self._failures_retriable = True
        self._transact("abort_transaction", self._producer.abort_transaction)

    def _transact(self, name: str, call: Callable[[float], object]) -> None:
        """Run ``call(timeout_s)``, calling again on retriable errors, all within one deadline.

        A retriable error leaves the transaction as it was (librdkafka: "the operation may be
        retried"); a commit that timed out resumes where it stopped. When the deadline passes
        the watchdog ends the process, retries or not.
        """
        with self._arm(name, self.call_timeout_s):
            deadline = time.monotonic() + self.call_timeout_s
            pause = _RETRY_PAUSE_S[0]
            while True:
                attempt_s = max(deadline - time.monotonic() - _ATTEMPT_MARGIN_S, _MIN_ATTEMPT_S)
                try:
                    call(attempt_s)
                    return
                except KafkaException as exc:
                    error = translate(exc, name)
                    if not error.retriable or error.abortable or error.fatal:
                        raise error from exc
                    log.warning("retrying", call=name, error=str(error), pause_s=pause)
                time.sleep(pause)  # a retriable answer can come at once: do not spin
                pause = min(pause * 2, _RETRY_PAUSE_S[1])

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (bounded), then release the client; never raises.

        A producer in a fatal state (fenced) raises its fatal error from ``flush`` again; at
        close that would only hide the error that ended the stage, so it is logged instead.
        """
        with self._arm("closing the producer", timeout_s + _ATTEMPT_MARGIN_S):
            try:
                self._producer.flush(timeout_s)
            except KafkaException as exc:
                log.warning("closing a failed producer", error=str(translate(exc, "flush")))
            except SystemError as exc:
                # confluent-kafka wraps the fatal error raised while serving a delivery callback
                # in a SystemError ("returned a result with an exception set"): the same case
                log.warning("closing a failed producer", error=str(exc.__cause__ or exc))
            # close() aborts an open transaction and only warns when it cannot (fenced): say so
            # in our log rather than as a RuntimeWarning (an error under warnings-as-errors)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._producer.close()
            for warning in caught:
                log.warning("closing the producer", error=str(warning.message))
