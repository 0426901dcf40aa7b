"""Job history retention on a real database (SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set), and the query plans that keep the job list and the
pruning fast on a long history."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.sql.expression import Executable

from bench.history import fill, query_plan
from db import retention
from db.job_requests import _page_statement
from db.models import Job, JobStatus, utcnow
from db.retention import RetentionPolicy, prune_batch

POLICY = RetentionPolicy(days=30, failed_days=90)
NOW = utcnow()


def job(
    engine: Engine,
    status: JobStatus,
    *,
    days_ago: float,
    parent: str | None = None,
    retry_of: str | None = None,
) -> str:
    """A job created and (when finished) finished ``days_ago`` days before NOW."""
    at = NOW - timedelta(days=days_ago)
    job_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(Job).values(
                id=job_id,
                kind="download",
                queue="bulk",
                params={},
                status=status,
                attempts=0,
                max_attempts=3,
                parent_id=parent,
                retry_of=retry_of,
                created_at=at,
                updated_at=at,
                finished_at=at if status.finished else None,
            )
        )
    return job_id


def remaining(engine: Engine) -> dict[str, str | None]:
    """Each job left, with what it retries."""
    with engine.connect() as connection:
        return dict(connection.execute(select(Job.id, Job.retry_of)).tuples().all())


def prune_all(engine: Engine, policy: RetentionPolicy, batch_size: int) -> list[int]:
    """The size of each batch until one deletes nothing."""
    sizes = []
    with engine.connect() as connection:
        while size := prune_batch(connection, policy, batch_size=batch_size, now=NOW):
            sizes.append(size)
    return sizes


def test_retention_prunes_finished_jobs_past_their_limit_and_keeps_the_rest(
    engine: Engine,
) -> None:
    S, F, C = JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled
    due = [job(engine, S, days_ago=31), job(engine, C, days_ago=45), job(engine, F, days_ago=91)]
    kept = [
        job(engine, JobStatus.queued, days_ago=400),
        job(engine, JobStatus.running, days_ago=400),
        job(engine, S, days_ago=29),
        job(engine, F, days_ago=31),  # a failure is kept until its own, longer limit
    ]
    # A parent whose child still runs stays, with every child; so does one whose child
    # finished too recently.
    busy = job(engine, S, days_ago=60)
    kept += [
        busy,
        job(engine, S, days_ago=60, parent=busy),
        job(engine, JobStatus.running, days_ago=60, parent=busy),
    ]
    fresh = job(engine, S, days_ago=60)
    kept += [
        fresh,
        job(engine, S, days_ago=60, parent=fresh),
        job(engine, S, days_ago=1, parent=fresh),
    ]
    # A parent and all its children due: they go together.
    done = job(engine, S, days_ago=60)
    due += [
        done,
        job(engine, S, days_ago=60, parent=done),
        job(engine, C, days_ago=50, parent=done),
    ]
    # A cancelled job retried into a recent failure: the retry stays, unlinked.
    cancelled = job(engine, C, days_ago=40)
    retry = job(engine, F, days_ago=39, retry_of=cancelled)
    due.append(cancelled)
    kept.append(retry)

    assert sum(prune_all(engine, POLICY, batch_size=1_000)) == len(due)
    left = remaining(engine)
    assert sorted(left) == sorted(kept)
    assert left[retry] is None


def test_small_batches_remove_everything_due_in_several_transactions(engine: Engine) -> None:
    lone = [job(engine, JobStatus.succeeded, days_ago=40 + n) for n in range(9)]
    parent = job(engine, JobStatus.failed, days_ago=100)
    children = [job(engine, JobStatus.failed, days_ago=100, parent=parent) for _ in range(6)]
    kept = job(engine, JobStatus.succeeded, days_ago=2)

    sizes = prune_all(engine, POLICY, batch_size=4)

    assert len(sizes) >= 4 and max(sizes) <= 4
    assert sum(sizes) == len(lone) + 1 + len(children)
    assert list(remaining(engine)) == [kept]


@pytest.mark.parametrize(
    ("policy", "left"),
    [
        (RetentionPolicy(days=0, failed_days=0), {"succeeded", "failed"}),
        (RetentionPolicy(days=0, failed_days=90), {"succeeded"}),
        (RetentionPolicy(days=30, failed_days=0), {"failed"}),
    ],
)
def test_zero_days_keeps_jobs_forever(
    engine: Engine, policy: RetentionPolicy, left: set[str]
) -> None:
    job(engine, JobStatus.succeeded, days_ago=10_000)
    job(engine, JobStatus.failed, days_ago=10_000)
    prune_all(engine, policy, batch_size=10)
    with engine.connect() as connection:
        assert set(connection.execute(select(Job.status)).scalars()) == left


def retention_statements() -> dict[str, tuple[Executable, dict[str, Any]]]:
    cutoffs = POLICY.cutoffs(NOW)
    statuses = tuple(cutoffs)
    bounds = {f"cutoff_{status}": at for status, at in cutoffs.items()}
    ids = ["a", "b"]
    return {
        "prune roots": (
            retention._roots_statement(JobStatus.succeeded, statuses),
            {**bounds, "rows": 10},
        ),
        "prune children": (
            retention._children_statement(statuses),
            {**bounds, "roots": ids, "rows": 10},
        ),
        "prune childless": (retention._CHILDLESS, {"ids": ids}),
        "prune unlink": (retention._UNLINK, {"ids": ids}),
        "prune delete": (retention._DELETE, {"ids": ids}),
    }


LIST_FILTERS = ("status", "kind", "parent_id", "cursor")


def list_statements() -> dict[str, tuple[Executable, dict[str, Any]]]:
    values = {
        "status": "running",
        "kind": "download",
        "parent_id": "a",
        "cursor_created": NOW,
        "cursor_id": "a",
        "rows": 51,
    }
    statements = {}
    for flags in itertools.product([False, True], repeat=4):
        name = " ".join(n for n, on in zip(LIST_FILTERS, flags, strict=True) if on)
        statements[f"list {name or 'all'}"] = (_page_statement(*flags), values)
    return statements


def plan(engine: Engine, statement: Executable, parameters: dict[str, Any]) -> str:
    with engine.connect() as connection:
        if engine.dialect.name != "sqlite":
            # An empty table is read whole whatever its indexes: forbid the scans and
            # sorts an index can replace, so the plan shows whether one can (the bench,
            # bench/history.py, shows PostgreSQL picks them itself on a million rows).
            connection.exec_driver_sql("SET enable_seqscan = off")
            connection.exec_driver_sql("SET enable_sort = off")
        return query_plan(connection, statement, parameters)


@pytest.mark.parametrize("statistics", [False, True], ids=["empty", "analyzed"])
@pytest.mark.parametrize("name", [*list_statements(), *retention_statements()])
def test_the_job_list_and_the_pruning_read_through_indexes_never_whole_or_sorted(
    engine: Engine, name: str, statistics: bool
) -> None:
    if statistics:
        # The bench's shape (most jobs top-level and finished), analyzed: SQLite's
        # statistics once made it reach the top-level jobs through the parent index.
        fill(engine, 3_000)
    details = plan(engine, *{**list_statements(), **retention_statements()}[name])
    assert details, name
    if engine.dialect.name == "sqlite":
        assert "TEMP B-TREE" not in details, details
        for step in details.split(" | "):
            # Only the unfiltered first page reads from the start, of the list's index.
            assert not step.startswith("SCAN") or (
                name == "list all" and step == "SCAN jobs USING INDEX ix_jobs_created_at_id"
            ), details
    else:
        assert "Seq Scan" not in details and "Sort" not in details, details
        assert "Index" in details, details
    if name == "prune roots" and engine.dialect.name == "sqlite":
        # A range of the top-level jobs by when they finished, whatever the statistics.
        assert "ix_jobs_root_status_finished_at (status=? AND finished_at<?)" in details
    if name.startswith("list") and engine.dialect.name == "sqlite":
        # Each filter reads the index of its most selective column, in the list's order
        # (PostgreSQL weighs its statistics: with a kind every job has, the list's own
        # index serves as well).
        filters = name.split()[1:]
        first = next((n for n in ("parent_id", "status", "kind") if n in filters), None)
        index = f"ix_jobs_{first}_created_at_id" if first else "ix_jobs_created_at_id"
        assert index in details, details
        if "cursor" in filters:
            assert "(created_at,id)<(?,?)" in details, details  # a range, not a filter


def test_the_migrations_build_the_job_indexes_the_model_declares(engine: Engine) -> None:
    declared = {index.name for index in retention.JOBS.indexes}
    built = {index["name"] for index in inspect(engine).get_indexes("jobs")}
    assert built == declared
