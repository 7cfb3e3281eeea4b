"""The poll thread of a stage and its hand-off to the asyncio loop, behind one async call.

One thread owns the consumer: it polls, prepares (decodes) each batch, hands it to the loop,
and runs the loop's consumer calls between two polls. Everything else runs on the loop. The
loop reaches the consumer only through :meth:`PollBridge.call`; rebalance callbacks reach the
loop through :meth:`PollBridge._on_loop`.

Deadlock rules, each enforced where it is written:

1. Only the poll thread calls the consumer (librdkafka's synchronous commit must not race a
   ``consume`` on another thread): :meth:`call` queues a job that :meth:`_run_jobs` runs.
2. The poll thread never waits on the loop without serving jobs: while no hand-off slot is
   free it runs jobs every 0.1 s (:meth:`_hand_off`), because the loop may be awaiting a
   consumer call before it can take a batch and free a slot.
3. A rebalance callback blocks the poll thread while a loop coroutine settles the partitions
   (:meth:`_on_loop`, bounded by ``callback_timeout_s``). No job can run meanwhile, so that
   coroutine must never await :meth:`call`; its result (the offsets to commit) comes back and
   the callback commits them itself, on the poll thread (:meth:`commit`).
4. At most :data:`HANDOFF_BATCHES` prepared batches wait for the loop; the loop frees one slot
   per batch it takes (:meth:`taken`), so a loop that falls behind stops the polling and
   memory stays bounded.
5. :meth:`call` waits at most :data:`CALL_WAIT_S` for its job: a poll thread stuck in C makes
   the caller fail instead of hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Final, Generic, TypeVar

from stream.core.errors import KafkaError
from stream.core.polled import Polled
from stream.core.records import TopicPartition
from stream.kafka.consumer import StageConsumer
from stream.logs import get_logger
from stream.watchdog import Arm, no_deadline

log = get_logger("capi_stream.poll_bridge")

T = TypeVar("T")
R = TypeVar("R")

#: Prepared batches that may wait for the loop (rule 4).
HANDOFF_BATCHES: Final = 2
#: How long :meth:`PollBridge.call` waits for the poll thread to run its job (rule 5).
CALL_WAIT_S: Final = 60.0
#: The deadline of one blocking librdkafka call on the poll thread (a commit).
COMMIT_TIMEOUT_S: Final = 60.0

Job = tuple[Callable[[], object], "concurrent.futures.Future[object]"]


class PollBridge(Generic[T]):
    """Runs the poll thread; hands each prepared batch to ``deliver`` on the loop.

    ``prepare`` turns a poll batch (its records as columns, :class:`~stream.core.polled.Polled`)
    into what the loop needs; it runs on the poll thread: decode there. ``on_assign`` returns
    True when the new partitions must start paused; ``on_revoke`` returns the ``next_offset``
    per revoked partition to commit before they go.
    """

    def __init__(
        self,
        consumer: StageConsumer,
        topics: list[str],
        *,
        prepare: Callable[[Polled], T],
        deliver: Callable[[T], None],
        on_assign: Callable[[list[TopicPartition]], Awaitable[bool]],
        on_revoke: Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]],
        on_error: Callable[[BaseException], None],
        callback_timeout_s: float,
        close_timeout_s: float,
        arm: Arm = no_deadline,
        max_records: int = 1000,
    ) -> None:
        self._consumer = consumer
        self._topics = topics
        self._prepare = prepare
        self._deliver = deliver
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_error = on_error
        self._callback_timeout_s = callback_timeout_s
        self._close_timeout_s = close_timeout_s
        self._arm = arm
        self._max_records = max_records
        self._handoff = threading.BoundedSemaphore(HANDOFF_BATCHES)
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capi-poll", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: when the thread last polled (monotonic; read by the health server's thread)
        self.polled_at = time.monotonic()

    # -- the loop's side ---------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe and start polling; batches go to ``deliver`` on ``loop``."""
        self._loop = loop
        self._thread.start()

    def taken(self) -> None:
        """The loop took a batch: free its hand-off slot (rule 4). Call once per batch."""
        self._handoff.release()

    async def call(self, job: Callable[[], R]) -> R:
        """Run ``job`` (a consumer call) on the poll thread between two polls; its result."""
        if not self._thread.is_alive():
            raise KafkaError("the consumer is closed")
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self._jobs.put((job, future))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=CALL_WAIT_S)
        except TimeoutError as exc:
            raise KafkaError("the poll thread did not run a consumer call", retriable=True) from exc
        return result  # type: ignore[return-value]

    def post(self, job: Callable[[], object]) -> None:
        """Queue ``job`` for the poll thread without waiting (pause, resume)."""
        self._jobs.put((job, concurrent.futures.Future()))

    def pause(self, tps: Collection[TopicPartition]) -> None:
        """Stop fetching ``tps`` (backpressure); returns at once."""
        frozen = set(tps)
        self.post(lambda: self._consumer.pause(frozen))

    def resume(self, tps: Collection[TopicPartition]) -> None:
        """Fetch ``tps`` again; returns at once."""
        frozen = set(tps)
        self.post(lambda: self._consumer.resume(frozen))

    async def commit(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Commit ``next_offset`` per partition synchronously, on the poll thread (rule 1).

        Partitions revoked between the snapshot and this job are left out: another member may
        own them now, and this older offset would move its commit back.
        """

        def job() -> None:
            owned = self._consumer.assigned()
            self._commit({tp: n for tp, n in next_offsets.items() if tp in owned})

        await self.call(job)

    async def lag(self, tps: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """Records left to read per partition, past transaction markers (no broker call)."""
        frozen = set(tps)
        return await self.call(lambda: self._consumer.lag(frozen))

    def stop(self) -> None:
        """Stop polling; the thread then closes the consumer (which runs the revoke callback)."""
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end; True when it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- the poll thread ---------------------------------------------------------------------

    def _commit(self, next_offsets: dict[TopicPartition, int]) -> None:
        # librdkafka's synchronous commit has no timeout of its own
        with self._arm("committing offsets", COMMIT_TIMEOUT_S):
            self._consumer.commit(next_offsets)

    def _run(self) -> None:
        consumer = self._consumer
        consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked)
        try:
            self._poll()
        except Exception as exc:  # noqa: BLE001 - handed to the loop, which stops and re-raises
            self._to_loop(self._on_error, explain_fencing(exc))
        finally:
            self._run_jobs()
            # runs the revoke callback (its wait on the loop and its commit are bounded), then
            # leaves the group: librdkafka may hang there when the coordinator is gone
            with self._arm("closing the consumer", self._close_timeout_s):
                consumer.close()

    def _poll(self) -> None:
        consumer, prepare = self._consumer, self._prepare
        while not self._stop.is_set():
            self.polled_at = time.monotonic()
            self._run_jobs()
            polled = consumer.poll_batch(self._max_records, 0.05)
            if polled is not None:
                prepared = prepare(polled)
                if not self._hand_off():
                    return
                self._to_loop(self._deliver, prepared)

    def _hand_off(self) -> bool:
        """Wait for a hand-off slot, serving jobs meanwhile (rule 2); False when stopping."""
        while not self._handoff.acquire(timeout=0.1):
            self.polled_at = time.monotonic()
            self._run_jobs()
            if self._stop.is_set():
                return False
        return True

    def _to_loop(self, func: Callable[[R], None], arg: R) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(func, arg)

    def _run_jobs(self) -> None:
        while True:
            try:
                job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(job())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)

    def _on_loop(self, coro: Awaitable[R]) -> R:
        """Block the poll thread until ``coro`` finished on the loop (rule 3: bounded)."""
        assert self._loop is not None
        future: concurrent.futures.Future[R] = asyncio.run_coroutine_threadsafe(
            coro,  # type: ignore[arg-type]
            self._loop,
        )
        return future.result(timeout=self._callback_timeout_s)

    def _assigned(self, tps: list[TopicPartition]) -> None:
        if self._on_loop(self._on_assign(tps)):
            self._consumer.pause(tps)

    def _revoked(self, tps: list[TopicPartition]) -> None:
        next_offsets = self._on_loop(self._on_revoke(tps))
        try:
            self._commit(next_offsets)
        except KafkaError as exc:
            # the partitions are gone either way; their new owner re-reads from the last commit
            log.warning("commit on revoke failed", error=str(exc))


def explain_fencing(exc: Exception) -> Exception:
    """Name the causes when the broker fenced this static member.

    Two causes give librdkafka's one fatal error: another live process took this process's
    ``group.instance.id`` (two hosts or two processes left at one ``--worker`` slot; under
    supervisors they would fence each other in turn), or the group coordinator expired this
    member's session while it could not reach it (a broker outage longer than
    ``session.timeout.ms``) and refuses the old member on its return. Either way the process
    exits (nothing uncommitted is lost) and its supervisor's restart joins afresh.
    """
    if isinstance(exc, KafkaError) and "same group.instance.id" in str(exc):
        return KafkaError(
            "fenced as a static group member: either another deliverer process uses this "
            "process's group.instance.id (give each its own --worker slot, or "
            "deliverer.group_instance_id), or the group coordinator expired this member's "
            "session during an outage (a restart rejoins)"
            f"; {exc}",
            fatal=True,
        )
    return exc
