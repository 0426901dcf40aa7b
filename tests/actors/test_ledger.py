"""JobLedger: batched transitions keep every job's guarantees."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from db.models import Job, JobStatus
from tests.db.databases import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of its own: SQLite, and PostgreSQL when the tests have one."""
    from db.engine import make_engine

    with migrated_database(request.param, tmp_path) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


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


def test_one_batch_finishes_many_jobs_and_fences_off_a_stale_attempt(engine: Engine) -> None:
    from actors.ledger import JobLedger, _Transition
    from db import jobs
    from db.engine import session_factory

    with session_factory(engine).begin() as session:
        rows = [Job(kind="download", queue="interactive", params={}) for _ in range(5)]
        session.add_all(rows)
    done, also_done, broken, taken_over, queued = (row.id for row in rows)
    committed: list[dict[str, Any]] = []
    ledger = JobLedger(engine, on_commit=committed.extend)
    for job_id in (done, also_done, broken, taken_over):
        assert ledger.claim(job_id, message_id=f"m-{job_id}") is not None
    # The lifeline gave attempt 1 of one job up; another worker claimed attempt 2.
    with engine.begin() as connection:
        assert jobs.requeue(connection, taken_over, error=None, attempt=1) is not None
        assert jobs.claim(connection, taken_over, message_id="m-2") is not None
    committed.clear()

    error = {"type": "Boom", "message": "boom", "retryable": False}
    batch = [
        _Transition(queued, "claim", message_id="m-q"),
        _Transition(done, "finish", attempt=1, status=JobStatus.succeeded),
        _Transition(taken_over, "finish", attempt=1, status=JobStatus.succeeded),
        _Transition(broken, "finish", attempt=1, status=JobStatus.failed, error=error),
        _Transition(also_done, "finish", attempt=1, status=JobStatus.succeeded, result={"n": 1}),
        _Transition(taken_over, "finish", attempt=2, status=JobStatus.succeeded),
    ]
    assert ledger._commit(batch) == []  # one transaction, nothing left to retry
    outcomes = [transition.outcome.result() for transition in batch]

    assert outcomes[0] is not None and outcomes[0]["status"] == "running"
    assert outcomes[1] is not None and outcomes[1]["status"] == "succeeded"
    assert outcomes[2] is None  # the stale attempt's finish is void
    assert outcomes[3] is not None and outcomes[3]["status"] == "failed"
    assert outcomes[3]["error"] == error
    assert outcomes[4] is not None and outcomes[4]["result"] == {"n": 1}
    assert outcomes[5] is not None and outcomes[5]["attempts"] == 2
    # Each change published once, after the commit; the claim after the finishes.
    assert [(job["id"], job["status"]) for job in committed] == [
        (done, "succeeded"),
        (broken, "failed"),
        (also_done, "succeeded"),
        (taken_over, "succeeded"),
        (queued, "running"),
    ]
    with engine.connect() as connection:
        rows_now = {
            row.id: row
            for row in connection.execute(select(Job.id, Job.status, Job.attempts, Job.result))
        }
    assert {job_id: (row.status, row.attempts) for job_id, row in rows_now.items()} == {
        done: ("succeeded", 1),
        also_done: ("succeeded", 1),
        broken: ("failed", 1),
        taken_over: ("succeeded", 2),
        queued: ("running", 1),
    }
    assert rows_now[also_done].result == {"n": 1} and rows_now[done].result is None


def test_a_transition_returns_after_its_change_is_published_and_a_failed_publish_is_survived(
    engine: Engine,
) -> None:
    from actors.ledger import JobLedger
    from db.engine import session_factory

    with session_factory(engine).begin() as session:
        rows = [Job(kind="download", queue="interactive", params={}) for _ in range(3)]
        session.add_all(rows)
    first, second, third = (row.id for row in rows)
    published: list[tuple[str, str]] = []

    def publish(changed: list[dict[str, Any]]) -> None:
        if any(job["id"] == second for job in changed):
            raise ConnectionError("Redis went away")
        published.extend((job["id"], job["status"]) for job in changed)

    ledger = JobLedger(engine, on_commit=publish)
    claimed = ledger.claim(first, message_id="m-1")
    # The claim's waiter resumes only once its event is out (JobTracking relies on it:
    # a job's state event goes before its progress events and before the ack).
    assert claimed is not None and published == [(first, "running")]
    done = ledger.finish(first, JobStatus.succeeded, attempt=1)
    assert done is not None and published[-1] == (first, "succeeded")
    # A publish that fails does not hold the waiter or stop the next batches' events.
    assert ledger.claim(second, message_id="m-2") is not None
    assert ledger.claim(third, message_id="m-3") is not None
    assert published[-1] == (third, "running")


def test_a_claim_given_announced_returns_at_its_commit_and_its_finish_goes_out_after_it(
    engine: Engine,
) -> None:
    from actors.ledger import JobLedger
    from db.engine import session_factory

    with session_factory(engine).begin() as session:
        row = Job(kind="download", queue="interactive", params={})
        session.add(row)
    job_id = row.id
    published: list[tuple[str, str]] = []
    publishing = threading.Event()
    release = threading.Event()

    def publish(changed: list[dict[str, Any]]) -> None:
        publishing.set()
        assert release.wait(10)
        published.extend((job["id"], job["status"]) for job in changed)

    ledger = JobLedger(engine, on_commit=publish)
    announced = threading.Event()
    claimed = ledger.claim(job_id, message_id="m-1", announced=announced)
    # Committed, and back while its event is still on the way.
    assert claimed is not None and claimed["status"] == "running"
    assert publishing.wait(10) and not announced.is_set() and published == []
    finished: list[dict[str, Any] | None] = []
    finisher = threading.Thread(
        target=lambda: finished.append(ledger.finish(job_id, JobStatus.succeeded, attempt=1))
    )
    finisher.start()
    release.set()
    assert announced.wait(10)
    finisher.join(10)
    # The finish waited for its own event, which went out after the claim's.
    assert finished and finished[0] is not None
    assert published == [(job_id, "running"), (job_id, "succeeded")]


def test_a_claim_that_changes_nothing_is_announced_at_once(engine: Engine) -> None:
    from actors.ledger import JobLedger

    ledger = JobLedger(engine, on_commit=lambda changed: None)
    announced = threading.Event()
    missing = "8f14e45f-ceea-467a-9a4f-1f7b2c4e0c11"
    assert ledger.claim(missing, message_id=None, announced=announced) is None
    assert announced.is_set()


def test_transactions_committed_while_a_publish_was_out_go_out_together_in_commit_order(
    engine: Engine,
) -> None:
    from actors.ledger import JobLedger, _Transition

    calls: list[list[str]] = []
    ledger = JobLedger(engine, on_commit=lambda changed: calls.append([j["id"] for j in changed]))
    transitions = [_Transition(f"job-{index}", "claim") for index in range(3)]
    # What the writer hands the publisher: three transactions, committed one after another.
    for transition in transitions:
        job = {"id": transition.job_id, "status": "running"}
        ledger._committed.put(([job], [transition], [job]))
    ledger._publish_committed()
    assert calls == [["job-0", "job-1", "job-2"]]
    assert [t.outcome.result() for t in transitions] == [
        {"id": f"job-{index}", "status": "running"} for index in range(3)
    ]
