"""JobLedger: group commit for the job transitions of one worker process.

Every job a worker runs costs two transitions (claim, then finish or requeue). Done one
transaction each, the transaction overhead costs more than the work of a short job. The
ledger has one writer thread: a worker thread hands it a transition and waits; the
writer takes every transition waiting at that moment and commits them together: all
claims in one ``UPDATE ... WHERE id IN (...) RETURNING``, and the finishes that end alike
(succeeded with no result, say) in one ``UPDATE ... WHERE (id = ... AND attempts = ...)
OR ... RETURNING``. A second thread publishes each committed transaction's changes (with
those of any committed while it was busy) and then wakes its waiters, while the writer
commits the next; a claim that asked to learn of its event apart (``announced``) is
woken by the writer at the commit instead, so its job starts while its event is on the
way. An idle worker pays no added latency: a lone transition is committed at once.
Each transition stays conditional on the job's status (and a finish on its attempt), so
the guarantees of :mod:`db.jobs` hold row by row.

When the database is unavailable (:func:`actors.stores.database_unavailable`: refused,
dropped, timed out, locked past the busy timeout) the writer keeps the batch and tries
it again with a backoff capped at a couple of seconds, taking in what arrives
meanwhile; it logs one warning when the outage starts and one info line when the
database answers again. A finish or requeue is never given up: its worker thread waits
and learns the real outcome once the database is back (void, None, when the lifeline
took the job over meanwhile: every finish is fenced by its attempt). A claim waits only
``claim_patience`` seconds (see :meth:`JobLedger.claim`). Any other error fails every
waiter of the transaction at once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from actors.stores import DatabaseUnavailable, Outage, database_unavailable
from db import jobs
from db.models import JobStatus

logger = logging.getLogger(__name__)

MAX_BATCH = 256
#: How long a claim waits for an unavailable database before it is given up.
CLAIM_PATIENCE_S = 10.0
#: The backoff between two tries of a batch while the database is unavailable.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


class _Outcome:
    """How a worker thread waits for its transition: a lock the writer releases once the
    outcome is known. (A Future does the same through a Condition, whose waiter list
    and notify cost the writer more per transition.)"""

    __slots__ = ("_done", "_error", "_ready", "_value")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._done = False
        self._value: dict[str, Any] | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: dict[str, Any] | None) -> None:
        self._value, self._done = value, True
        self._ready.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._done = error, True
        self._ready.release()

    def result(self) -> dict[str, Any] | None:
        """Wait for the outcome (once: only the transition's own worker thread asks)."""
        self._ready.acquire()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class _Transition:
    job_id: str
    kind: str  # "claim" | "finish" | "requeue"
    message_id: str | None = None
    attempt: int | None = None
    refund: bool = False
    note: str | None = None
    status: JobStatus | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    announced: threading.Event | None = None  # a claim that resumes at its commit
    outcome: _Outcome = field(default_factory=_Outcome)
    submitted: float = field(default_factory=time.monotonic)


class JobLedger:
    """Commits job transitions in batches on a writer thread of its own.

    Parameters:
      engine: the database of the ``jobs`` table.
      on_commit: called with the new public form of every job a transaction changed,
        after the commit and before any of its waiters resumes, but for claims given an
        ``announced`` event, which is set once the call returned (JobTracking publishes
        the changes, so a job's state event always goes out before its message is acked,
        and its progress waits for ``announced``). It runs on a thread of its own, in the
        order the transactions committed, while the writer commits the next; one call
        may carry several transactions, those that committed while the previous call
        ran.
      max_batch: the most transitions one transaction takes.
      claim_patience: seconds a claim waits for an unavailable database.
      outage: how the writer backs off and logs a database outage.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
        max_batch: int = MAX_BATCH,
        claim_patience: float = CLAIM_PATIENCE_S,
        outage: Outage | None = None,
    ) -> None:
        self.engine = engine
        self.on_commit = on_commit
        self.max_batch = max_batch
        self.claim_patience = claim_patience
        self.outage = outage or Outage(
            "job ledger",
            "the database",
            logger=logger,
            first_delay=RETRY_FIRST_S,
            max_delay=RETRY_MAX_S,
        )
        self._pending: queue.SimpleQueue[_Transition] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._committed: queue.SimpleQueue[
            tuple[list[dict[str, Any]], list[_Transition], list[dict[str, Any] | None]]
        ] = queue.SimpleQueue()
        self._publisher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ending: dict[int, str] = {}  # finishes and requeues not settled yet

    # -- what worker threads call; each blocks until its transition is committed
    def claim(
        self,
        job_id: str,
        *,
        message_id: str | None,
        announced: threading.Event | None = None,
    ) -> dict[str, Any] | None:
        """queued -> running; None when the job was not queued.

        Without ``announced`` it returns once on_commit has announced the change; with
        it, at the commit, and ``announced`` is set once the change is announced (at
        once when nothing was changed). A job's finish is announced after its claim
        either way: on_commit takes the transactions in commit order.

        Raises :class:`~actors.stores.DatabaseUnavailable` when the database has not
        answered for ``claim_patience`` seconds. Waiting longer would hold a worker
        thread (and the messages Dramatiq prefetched for it) for the whole outage and
        keep the worker from stopping; failing at the first error would bounce every
        message on a one-second PostgreSQL restart. So a claim rides out a short outage
        here and then gives up: nothing was written, no attempt was counted, and
        JobTracking sends the message back to the queue to be tried later (see
        ``JobTracking.before_process_message``)."""
        return self._submit(
            _Transition(job_id, "claim", message_id=message_id, announced=announced)
        )

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        attempt: int | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """running -> succeeded | failed | cancelled (on ``attempt``, when given)."""
        return self._submit(
            _Transition(
                job_id, "finish", attempt=attempt, status=status, result=result, error=error
            )
        )

    def requeue(
        self,
        job_id: str,
        *,
        attempt: int | None = None,
        error: dict[str, Any] | None,
        refund: bool = False,
        note: str | None = None,
    ) -> dict[str, Any] | None:
        """running -> queued, for a retry (on ``attempt``, when given; ``refund``: the
        attempt does not count; ``note``: why it waits)."""
        return self._submit(
            _Transition(job_id, "requeue", attempt=attempt, error=error, refund=refund, note=note)
        )

    def ending_job_ids(self) -> list[str]:
        """The jobs whose finish or requeue is waiting to be committed. Their worker
        threads are still alive and waiting: JobTracking's watcher keeps their
        heartbeats going, so a database outage alone does not get them given up."""
        with self._lock:
            return list(self._ending.values())

    def _submit(self, transition: _Transition) -> dict[str, Any] | None:
        self._ensure_writer()
        ending = transition.kind != "claim"
        if ending:
            with self._lock:
                self._ending[id(transition)] = transition.job_id
        try:
            self._pending.put(transition)
            return transition.outcome.result()
        finally:
            if ending:
                with self._lock:
                    self._ending.pop(id(transition), None)

    # -- the writer
    def _ensure_writer(self) -> None:
        writer = self._writer
        if writer is not None and writer.is_alive():
            return
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_forever, name="vidfleet-job-ledger", daemon=True
                )
                self._writer.start()

    def _write_forever(self) -> None:
        batch: list[_Transition] = []
        while True:
            if not batch:
                batch = [self._pending.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            try:
                batch = self._commit(batch)
            except BaseException as exc:  # a bug here must not leave waiters hanging
                logger.exception("job ledger writer failed")
                for transition in batch:
                    if not transition.outcome.done():
                        transition.outcome.set_exception(exc)
                batch = []

    def _commit(self, batch: list[_Transition]) -> list[_Transition]:
        """Commit ``batch`` in one transaction; returns what to try again because the
        database was unavailable (after waiting out the backoff), else nothing."""
        try:
            outcomes = self._apply(batch)
        except BaseException as exc:
            if isinstance(exc, Exception) and database_unavailable(exc):
                return self._wait_to_retry(batch, exc)
            # Every waiter learns the transaction failed.
            logger.warning("job ledger transaction failed", exc_info=True)
            for transition in batch:
                transition.outcome.set_exception(exc)
            return []
        self.outage.answered()
        # In the order they were applied (claims last), so a job's events go out in the
        # order its row changed.
        changed = [
            outcome
            for transition, outcome in sorted(
                zip(batch, outcomes, strict=True), key=lambda pair: pair[0].kind == "claim"
            )
            if outcome is not None
        ]
        # Claims that learn of their announcement apart start their jobs now: a job
        # thread's wait for the publish is most of what a short job costs.
        for transition, outcome in zip(batch, outcomes, strict=True):
            if transition.announced is not None:
                transition.outcome.set_result(outcome)
        if changed and self.on_commit is not None:
            # The publisher thread announces the batch and then wakes its waiters, while
            # this thread commits the next one: the two stores' round trips overlap.
            self._ensure_publisher()
            self._committed.put((changed, batch, outcomes))
        else:
            self._settle(batch, outcomes)
        return []

    # -- the publisher: on_commit, then the waiters, batch by batch in commit order
    def _ensure_publisher(self) -> None:
        publisher = self._publisher
        if publisher is not None and publisher.is_alive():
            return
        with self._lock:
            if self._publisher is None or not self._publisher.is_alive():
                self._publisher = threading.Thread(
                    target=self._publish_forever, name="vidfleet-job-events", daemon=True
                )
                self._publisher.start()

    def _publish_forever(self) -> None:
        while True:
            self._publish_committed()

    def _publish_committed(self) -> None:
        """Wait for a committed transaction, announce its changes with those of every
        other one committed meanwhile (while the last publish was on its way), in commit
        order and in one call, then wake their waiters: under load, one round trip and
        one wake-up of this thread serve several transactions."""
        committed = [self._committed.get()]
        while True:
            try:
                committed.append(self._committed.get_nowait())
            except queue.Empty:
                break
        try:
            assert self.on_commit is not None
            self.on_commit([job for changed, _, _ in committed for job in changed])
        except BaseException:  # the rows are committed: their waiters learn them anyway
            logger.warning("job ledger on_commit failed", exc_info=True)
        for _, batch, outcomes in committed:
            self._settle(batch, outcomes)

    @staticmethod
    def _settle(batch: list[_Transition], outcomes: list[dict[str, Any] | None]) -> None:
        """Wake the waiters of an announced transaction (claims that resumed at the
        commit learn that their change is out)."""
        for transition, outcome in zip(batch, outcomes, strict=True):
            if transition.announced is not None:
                transition.announced.set()
            else:
                transition.outcome.set_result(outcome)

    def _wait_to_retry(self, batch: list[_Transition], error: Exception) -> list[_Transition]:
        time.sleep(self.outage.failed(error))  # the backoff itself, on the writer thread
        now = time.monotonic()
        keep: list[_Transition] = []
        for transition in batch:
            if transition.kind == "claim" and now - transition.submitted >= self.claim_patience:
                unavailable = DatabaseUnavailable(
                    f"the database did not answer for {self.claim_patience:g} s"
                )
                unavailable.__cause__ = error
                transition.outcome.set_exception(unavailable)
            else:
                keep.append(transition)
        return keep

    def _apply(self, batch: list[_Transition]) -> list[dict[str, Any] | None]:
        claims: dict[str, str | None] = {}
        # Fenced finishes with the same outcome share one statement (a batch of jobs
        # that succeeded with no result is one UPDATE); the others go one by one.
        finishes: dict[tuple[Any, ...], list[tuple[int, int]]] = {}  # -> (index, attempt)
        for index, transition in enumerate(batch):
            if transition.kind == "claim":
                claims.setdefault(transition.job_id, transition.message_id)
            elif transition.kind == "finish" and transition.attempt is not None:
                key = (
                    transition.status,
                    _canonical(transition.result),
                    _canonical(transition.error),
                )
                finishes.setdefault(key, []).append((index, transition.attempt))
        outcomes: dict[int, dict[str, Any] | None] = {}
        with self.engine.begin() as connection:
            # Finishes and requeues before claims: after an outage one batch can hold a
            # job's requeue and the claim by its retry message, and the attempt that
            # ended must end before the next one starts.
            for fenced in finishes.values():
                first = batch[fenced[0][0]]
                assert first.status is not None
                moved = jobs.finish_many(
                    connection,
                    first.status,
                    [(batch[index].job_id, attempt) for index, attempt in fenced],
                    result=first.result,
                    error=first.error,
                )
                for index, attempt in fenced:
                    job_id = batch[index].job_id
                    job = moved.get(job_id)
                    # Two finishes of one job in one batch (a stale attempt's and the
                    # current one's): the row names the attempt that passed its fence.
                    if job is not None and job["attempts"] == attempt:
                        outcomes[index] = moved.pop(job_id)
                    else:
                        outcomes[index] = None
            for index, transition in enumerate(batch):
                if index in outcomes:
                    continue
                if transition.kind == "finish":
                    assert transition.status is not None
                    outcomes[index] = jobs.finish(
                        connection,
                        transition.job_id,
                        transition.status,
                        result=transition.result,
                        error=transition.error,
                        attempt=transition.attempt,
                    )
                elif transition.kind == "requeue":
                    outcomes[index] = jobs.requeue(
                        connection,
                        transition.job_id,
                        error=transition.error,
                        attempt=transition.attempt,
                        refund=transition.refund,
                        note=transition.note,
                    )
            won = jobs.claim_many(connection, claims)
            for index, transition in enumerate(batch):
                if transition.kind == "claim":
                    # Two deliveries of one job in one batch: only the first may win.
                    outcomes[index] = won.pop(transition.job_id, None)
        return [outcomes[index] for index in range(len(batch))]


def _canonical(value: dict[str, Any] | None) -> str | None:
    """A result or error as a key: finishes whose outcomes are equal share a statement."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str)
