"""Benchmark 7, a long job history: the job list (``GET /api/jobs``'s
:func:`db.job_requests.jobs_page_json`, called on a sync connection as the web's
ConnectionRunner calls it) and one retention batch (:func:`db.retention.prune_batch`)
on 1,000,000 job rows, on SQLite and, when ``BENCH_DATABASE_URL`` (or
``TEST_DATABASE_URL``) names a PostgreSQL server, on PostgreSQL in a schema of its own.

Anchors, measured in the same run on the same database engine: the default page of the
list on 1,000 rows of the same shape, for the list's figures; a batch of the same size
on 10,000 rows, for the retention batch. The rows span 120 days: four in ten are
children of a bulk parent, most are finished (85 % succeeded, 10 % failed, 5 %
cancelled) and the last day holds the queued and running ones. With the default
retention (30 days, 90 for failures) about three quarters are due.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.sql.expression import Executable

from bench.report import table
from db.engine import make_engine
from db.job_requests import _page_statement, jobs_page_json
from db.jobs import encode_cursor
from db.migrate import upgrade
from db.models import JobStatus, utcnow
from db.retention import RetentionPolicy, _roots_statement, prune_batch
from db.settings import _database_url

SPAN_DAYS = 120
BATCH = 1_000
POLICY = RetentionPolicy(days=30, failed_days=90)

# One statement makes the rows: n = 0 .. rows-1, oldest first. A block of ten is a
# parent (n % 10 = 0) with four children, then five lone jobs.
_SHAPE = {
    "parent": "CASE WHEN n % 10 BETWEEN 1 AND 4 THEN {id_of_block} END",
    "status": """CASE
        WHEN n > {rows} - {rows} / {span} AND n % 100 < 2 THEN 'running'
        WHEN n > {rows} - {rows} / {span} AND n % 100 < 10 THEN 'queued'
        WHEN (n * 7919) % 100 < 85 THEN 'succeeded'
        WHEN (n * 7919) % 100 < 95 THEN 'failed'
        ELSE 'cancelled' END""",
}
SQLITE_FILL = """
WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < {rows}),
rows AS (
  SELECT n, {status} AS status,
    julianday('now') - {span} + n * {span}.0 / {rows} AS day
  FROM seq)
INSERT INTO jobs (id, kind, status, queue, params, attempts, max_attempts, parent_id,
                  created_at, updated_at, finished_at)
SELECT printf('%08x-0000-4000-8000-%012x', n, n), 'download', status, 'bulk', '{{}}', 1, 3,
  {parent},
  strftime('%Y-%m-%d %H:%M:%f', day) || '000', strftime('%Y-%m-%d %H:%M:%f', day) || '000',
  CASE WHEN status IN ('queued', 'running') THEN NULL
       ELSE strftime('%Y-%m-%d %H:%M:%f', day + 60 / 86400.0) || '000' END
FROM rows
"""
SQLITE_ID_OF_BLOCK = "printf('%08x-0000-4000-8000-%012x', n - n % 10, n - n % 10)"
POSTGRES_FILL = """
INSERT INTO jobs (id, kind, status, queue, params, attempts, max_attempts, parent_id,
                  created_at, updated_at, finished_at)
SELECT {id_of_n}, 'download', status, 'bulk', '{{}}', 1, 3, {parent}, day, day,
  CASE WHEN status IN ('queued', 'running') THEN NULL ELSE day + interval '60 seconds' END
FROM (
  SELECT n, {status} AS status,
    now() - interval '{span} days' + n * interval '{span} days' / {rows} AS day
  FROM generate_series(0::bigint, {rows} - 1) AS n) AS made
"""


def _pg_id(n: str) -> str:
    return f"lpad(to_hex({n}), 8, '0') || '-0000-4000-8000-' || lpad(to_hex({n}), 12, '0')"


def fill(engine: Engine, rows: int) -> None:
    """Insert ``rows`` jobs of the shape above into the empty ``jobs`` table."""
    values = {"rows": rows, "span": SPAN_DAYS}
    status = _SHAPE["status"].format(**values)
    if engine.dialect.name == "sqlite":
        parent = _SHAPE["parent"].format(id_of_block=SQLITE_ID_OF_BLOCK)
        sql = SQLITE_FILL.format(status=status, parent=parent, **values)
    else:
        parent = _SHAPE["parent"].format(id_of_block=_pg_id("n - n % 10"))
        sql = POSTGRES_FILL.format(status=status, parent=parent, id_of_n=_pg_id("n"), **values)
        sql = sql.replace("%", "%%")  # psycopg reads a lone % as a placeholder
    with engine.begin() as connection:
        connection.exec_driver_sql(sql)
        connection.exec_driver_sql("ANALYZE")


@dataclass
class Figure:
    """One timed operation: its samples in ms, and which anchor it is read against."""

    label: str
    anchor: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10)[-1] if len(self.samples) > 1 else 0.0


@dataclass
class HistoryResult:
    """The figures of each database, by label; labels ending in "(anchor)" are anchors."""

    databases: dict[str, list[Figure]] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)

    def render(self) -> str:
        parts = []
        for name, figures in self.databases.items():
            anchors = {f.anchor: f.median for f in figures if f.label.endswith("(anchor)")}
            rows = [
                [
                    f.label,
                    str(len(f.samples)),
                    f"{f.median:.2f}",
                    f"{f.p90:.2f}",
                    f"{f.median / anchors[f.anchor]:.2f}x",
                ]
                for f in figures
            ]
            parts.append(f"Job history on {name} (ms per call; ratio of medians to the anchor)")
            parts.append(table(["operation", "calls", "median", "p90", "vs anchor"], rows))
            parts += [f"  plan {line}" for line in self.plans.get(name, [])]
        return "\n".join(parts)


def timed(work: Callable[[], Any], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def list_figures(engine: Engine, *, rows: int, calls: int) -> list[Figure]:
    """The list's default page on ``engine`` (of ``rows`` jobs); on more than the
    anchor's 1,000, its filters and a page halfway down too."""
    with engine.connect() as connection:
        if rows <= 1_000:
            page = Figure(f"list, first page, {rows:,} rows (anchor)", "list")
            page.samples = timed(partial(jobs_page_json, connection), calls)
            return [page]
        middle = connection.execute(
            text("SELECT parent_id FROM jobs WHERE parent_id IS NOT NULL LIMIT 1 OFFSET :n"),
            {"n": rows // 5},
        ).scalar_one()
        deep = _cursor_at(connection, rows // 2)
        cases: list[tuple[str, dict[str, Any]]] = [
            ("first page", {}),
            ("?status=running", {"status": "running"}),
            ("?status=failed", {"status": "failed"}),
            ("?kind=download", {"kind": "download"}),
            ("?parent_id=<a parent>", {"parent_id": middle}),
            ("?status=succeeded&kind=download", {"status": "succeeded", "kind": "download"}),
            (f"page at row {rows // 2:,} (cursor)", {"cursor": deep}),
            (f"?status=failed, page at row {rows // 2:,}", {"status": "failed", "cursor": deep}),
        ]
        figures = []
        for label, query in cases:
            figure = Figure(f"list, {label}, {rows:,} rows", "list")
            jobs_page_json(connection, **query)  # warm
            figure.samples = timed(partial(jobs_page_json, connection, **query), calls)
            figures.append(figure)
        return figures


def _cursor_at(connection: Connection, offset: int) -> str:
    row = (
        connection.execute(
            text(
                "SELECT created_at, id FROM jobs"
                " ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET :n"
            ),
            {"n": offset},
        )
        .mappings()
        .one()
    )
    created = row["created_at"]
    if isinstance(created, str):  # SQLite's text
        created = datetime.fromisoformat(created)
    return encode_cursor({"created_at": created, "id": row["id"]})  # type: ignore[arg-type]


def prune_figure(engine: Engine, table_size: str, *, batches: int) -> Figure:
    """``batches`` retention batches of up to BATCH jobs, each timed on its own."""
    figure = Figure(f"prune batch of {BATCH:,}, {table_size}", "prune")
    with engine.connect() as connection:
        for _ in range(batches):
            started = time.perf_counter()
            removed = prune_batch(connection, POLICY, batch_size=BATCH)
            figure.samples.append((time.perf_counter() - started) * 1000)
            if removed < BATCH:
                raise RuntimeError(f"a batch removed {removed} jobs, fewer than {BATCH}")
    return figure


def query_plan(connection: Connection, statement: Executable, parameters: dict[str, Any]) -> str:
    """The database's plan for ``statement`` (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on
    PostgreSQL), as one line of its steps. The statement runs with EXPLAIN in front, so
    SQLAlchemy binds its parameters and expands its lists as it would to run it; a
    statement that writes is rolled back."""
    sqlite = connection.dialect.name == "sqlite"

    def explain(
        _conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool
    ) -> tuple[str, Any]:
        return f"{'EXPLAIN QUERY PLAN' if sqlite else 'EXPLAIN'} {sql}", params

    event.listen(connection, "before_cursor_execute", explain, retval=True)
    try:
        cursor = connection.execute(statement, parameters).cursor
        rows = cursor.fetchall() if cursor is not None else []
    finally:
        event.remove(connection, "before_cursor_execute", explain)
        connection.rollback()
    return " | ".join(str(row[-1] if sqlite else row[0]).strip() for row in rows)


def plans(engine: Engine) -> list[str]:
    """The plans the database picks by itself, with the statistics of the big table:
    a retention batch's search with three quarters of the rows due (a first run on a
    long history) and with one in 120 due (the hourly runs after it), and the list's
    rarest filter."""
    cases: list[tuple[str, Executable, dict[str, Any]]] = []
    for label, policy in (
        ("prune roots, backlog", POLICY),
        ("prune roots, steady", RetentionPolicy(days=SPAN_DAYS - 1, failed_days=SPAN_DAYS - 1)),
    ):
        cutoffs = policy.cutoffs(utcnow())
        bounds = {f"cutoff_{status}": at for status, at in cutoffs.items()}
        roots = _roots_statement(JobStatus.succeeded, tuple(cutoffs))
        cases.append((label, roots, {**bounds, "rows": BATCH}))
    list_running = _page_statement(True, False, False, False)
    cases.append(("list ?status=running", list_running, {"status": "running", "rows": 51}))
    with engine.connect() as connection:
        return [f"{label}: {query_plan(connection, st, ps)}" for label, st, ps in cases]


@contextmanager
def databases(root: Path, server: str | None) -> Iterator[Callable[[str], str]]:
    """Makes migrated, empty databases by name: SQLite files under ``root``, or, given a
    PostgreSQL ``server``, schemas of their own there (dropped afterwards)."""
    schemas: list[str] = []
    admin = create_engine(_database_url(server, root)) if server else None

    def make(name: str) -> str:
        if admin is None:
            url = f"sqlite:///{root / name}.db"
        else:
            schema = f"vf_bench_{uuid.uuid4().hex[:10]}"
            with admin.begin() as connection:
                connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            base = admin.url.render_as_string(hide_password=False)
            url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        upgrade(url)
        return url

    try:
        yield make
    finally:
        if admin is not None:
            with admin.begin() as connection:
                for schema in schemas:
                    connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()


def run_history(*, quick: bool = False) -> HistoryResult:
    """The list and retention figures on SQLite, and on PostgreSQL when one is given."""
    rows = 100_000 if quick else 1_000_000
    calls, batches = (20, 5) if quick else (100, 20)
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    result = HistoryResult()
    for backend, url in [("SQLite", None)] + ([("PostgreSQL", server)] if server else []):
        with (
            tempfile.TemporaryDirectory(prefix="vidfleet-history-") as tmp,
            databases(Path(tmp), url) as make,
        ):
            small, medium, large = (make_engine(make(n)) for n in ("small", "medium", "big"))
            started = time.monotonic()
            for engine, count in ((small, 1_000), (medium, 10_000), (large, rows)):
                fill(engine, count)
            name = f"{backend}, {rows:,} rows (filled in {time.monotonic() - started:.0f} s)"
            figures = list_figures(small, rows=1_000, calls=calls)
            figures += list_figures(large, rows=rows, calls=calls)
            result.plans[name] = plans(large)
            figures.append(prune_figure(medium, "10,000 rows (anchor)", batches=3))
            figures.append(prune_figure(large, f"{rows:,} rows", batches=batches))
            for engine in (small, medium, large):
                engine.dispose()
        result.databases[name] = figures
    return result
