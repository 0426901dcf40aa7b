"""JobLedger: batched transitions keep every job's guarantees."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from db.models import Job, JobStatus


def queued_jobs(count: int) -> list[str]:
    from actors import stores

    with stores.sessions().begin() as session:
        rows = [Job(kind="download", queue="interactive", params={}) for _ in range(count)]
        session.add_all(rows)
    return [row.id for row in rows]


def run_together(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_of_many_threads_claiming_one_job_exactly_one_wins() -> None:
    from actors import stores
    from actors.ledger import JobLedger

    committed: list[dict[str, Any]] = []
    ledger = JobLedger(stores.engine(), on_commit=committed.extend)
    (job_id,) = queued_jobs(1)
    outcomes = run_together([lambda: ledger.claim(job_id, message_id="m")] * 16)
    winners = [outcome for outcome in outcomes if outcome is not None]
    assert len(winners) == 1
    assert winners[0]["status"] == "running" and winners[0]["attempts"] == 1
    assert [job["id"] for job in committed] == [job_id]


def test_claims_and_finishes_of_many_jobs_commit_and_publish_each_once() -> None:
    from actors import stores
    from actors.ledger import JobLedger

    committed: list[dict[str, Any]] = []
    ledger = JobLedger(stores.engine(), on_commit=committed.extend)
    job_ids = queued_jobs(40)
    claimed = run_together([lambda j=j: ledger.claim(j, message_id=f"m-{j}") for j in job_ids])
    assert all(job is not None and job["status"] == "running" for job in claimed)
    finished = run_together(
        [lambda j=j: ledger.finish(j, JobStatus.succeeded, result={"n": j}) for j in job_ids]
    )
    assert [job["result"] for job in finished] == [{"n": j} for j in job_ids]
    assert sorted(job["status"] for job in committed) == ["running"] * 40 + ["succeeded"] * 40
    assert ledger.finish(job_ids[0], JobStatus.failed, error={"message": "late"}) is None
    with stores.sessions()() as session:
        rows = {row.id: row for row in session.query(Job).filter(Job.id.in_(job_ids))}
    assert all(
        row.status == "succeeded" and row.message_id == f"m-{row.id}" for row in rows.values()
    )


def test_a_failed_transaction_reaches_every_waiter(tmp_path: Path) -> None:
    from actors.ledger import JobLedger
    from db.engine import make_engine

    ledger = JobLedger(make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}"))
    with pytest.raises(SQLAlchemyError):
        ledger.claim("8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11", message_id=None)
    # The writer survives and serves the next call.
    with pytest.raises(SQLAlchemyError):
        ledger.requeue("8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11", error=None)
