"""JobLedger: group commit for the job transitions of one worker process.

Every job a worker runs costs two transitions (claim, then finish or requeue). Done one
transaction each, the transaction overhead costs more than the work of a short job. The
ledger has one writer thread: a worker thread hands it a transition and waits; the
writer takes every transition waiting at that moment and commits them together (all
claims in one ``UPDATE ... WHERE id IN (...) RETURNING``). An idle worker pays no added
latency: a lone transition is committed at once. Each transition stays conditional on
the job's status, so the guarantees of :mod:`db.jobs` hold row by row.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from db import jobs
from db.models import JobStatus

logger = logging.getLogger(__name__)

MAX_BATCH = 256


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
    outcome: Future[dict[str, Any] | None] = field(default_factory=Future)


class JobLedger:
    """Commits job transitions in batches on a writer thread of its own.

    Parameters:
      engine: the database of the ``jobs`` table.
      on_commit: called on the writer thread with the new public form of every job a
        transaction changed, before any waiter resumes (JobTracking publishes them, so
        a job's state event always goes out before its progress events).
      max_batch: the most transitions one transaction takes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.engine = engine
        self.on_commit = on_commit
        self.max_batch = max_batch
        self._pending: queue.SimpleQueue[_Transition] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- what worker threads call; each blocks until its transition is committed
    def claim(self, job_id: str, *, message_id: str | None) -> dict[str, Any] | None:
        """queued -> running; None when the job was not queued."""
        return self._submit(_Transition(job_id, "claim", message_id=message_id))

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

    def _submit(self, transition: _Transition) -> dict[str, Any] | None:
        self._ensure_writer()
        self._pending.put(transition)
        return transition.outcome.result()

    # -- the writer
    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_forever, name="vidfleet-job-ledger", daemon=True
                )
                self._writer.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Transition]) -> None:
        try:
            outcomes = self._apply(batch)
        except BaseException as exc:  # every waiter learns the transaction failed
            logger.warning("job ledger transaction failed", exc_info=True)
            for transition in batch:
                transition.outcome.set_exception(exc)
            return
        changed = [outcome for outcome in outcomes if outcome is not None]
        if changed and self.on_commit is not None:
            try:
                self.on_commit(changed)
            except Exception:
                logger.warning("job ledger on_commit failed", exc_info=True)
        for transition, outcome in zip(batch, outcomes, strict=True):
            transition.outcome.set_result(outcome)

    def _apply(self, batch: list[_Transition]) -> list[dict[str, Any] | None]:
        claims: dict[str, str | None] = {}
        for transition in batch:
            if transition.kind == "claim":
                claims.setdefault(transition.job_id, transition.message_id)
        outcomes: list[dict[str, Any] | None] = []
        with self.engine.begin() as connection:
            won = jobs.claim_many(connection, claims)
            for transition in batch:
                if transition.kind == "claim":
                    # Two deliveries of one job in one batch: only the first may win.
                    outcomes.append(won.pop(transition.job_id, None))
                elif transition.kind == "finish":
                    assert transition.status is not None
                    outcomes.append(
                        jobs.finish(
                            connection,
                            transition.job_id,
                            transition.status,
                            result=transition.result,
                            error=transition.error,
                            attempt=transition.attempt,
                        )
                    )
                else:
                    outcomes.append(
                        jobs.requeue(
                            connection,
                            transition.job_id,
                            error=transition.error,
                            attempt=transition.attempt,
                            refund=transition.refund,
                            note=transition.note,
                        )
                    )
        return outcomes
