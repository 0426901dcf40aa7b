"""Job state changes and queries, shared by the web (async) and the actors (sync).

Each transition is one conditional UPDATE (``WHERE status = ...``): the caller learns
from RETURNING whether it won, so two workers can never both run one job.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    RowMapping,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from db.models import ACTIVE, Job, JobKind, JobStatus, utcnow

PUBLIC_FIELDS = (
    "id", "kind", "status", "queue", "params", "result", "error", "progress", "stage",
    "message", "attempts", "max_attempts", "parent_id", "retry_of",
)  # fmt: skip
TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")
CANCELLED = {"type": "cancelled", "message": "cancelled on request", "retryable": False}
JOBS: Table = Job.__table__  # type: ignore[assignment]
#: What the transitions return: what :func:`job_to_dict` reads, and nothing else.
PUBLIC_COLUMNS = tuple(JOBS.c[name] for name in (*PUBLIC_FIELDS, *TIME_FIELDS))


class InvalidCursor(ValueError):
    """A list cursor that we did not hand out."""


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC here."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def job_to_dict(job: Job | RowMapping | dict[str, Any]) -> dict[str, Any]:
    """The public JSON form of a job (the API and the progress events use it), from an
    ORM object or a row (by column name) read from the ``jobs`` table."""
    get = job.__getitem__ if isinstance(job, RowMapping | dict) else partial(getattr, job)
    data: dict[str, Any] = {name: get(name) for name in PUBLIC_FIELDS}
    data["status"] = str(data["status"])
    for name in TIME_FIELDS:
        data[name] = iso(get(name))
    return data


@dataclass(frozen=True)
class _DriverStatement:
    """A prebuilt transition compiled for one dialect, run on the DB-API cursor itself.

    SQLAlchemy's execution of a cached statement (its execution context, parameter
    processing and result objects) cost the job ledger more than the database's own work
    on a batch. This keeps what matters of it: the dialect's SQL text, its bind
    processors (enums, JSON, SQLite's datetimes) and result processors, applied to the
    same values, so a row comes back exactly as through ``connection.execute``; DB-API
    errors are wrapped as SQLAlchemy wraps them, so callers tell outages apart the same
    way (:mod:`db.outages`).

    Parameters:
      sql: the statement's text in the dialect's paramstyle.
      order: the parameter names in positional order, or None for a named paramstyle.
      defaults: the values of the statement's literal parameters.
      binds: the bind processor of each parameter that has one.

    Every transition returns :data:`PUBLIC_COLUMNS`.
    """

    sql: str
    order: tuple[str, ...] | None
    defaults: dict[str, Any]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]

    @classmethod
    def compile(cls, statement: Update, dialect: Dialect) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect)
        # Only our plain bind names: nothing expands or escapes them.
        assert not compiled.escaped_bind_names and not compiled.post_compile_params
        # One parameter may appear more than once (``now``); it is processed once.
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in binds.items()
        }
        return cls(
            sql=str(compiled),
            order=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
            defaults={
                name: bind.effective_value for name, bind in binds.items() if not bind.required
            },
            binds=tuple((name, process) for name, process in processors.items() if process),
        )

    def run(self, connection: Connection, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Execute with ``parameters`` (by name) in ``connection``'s transaction; returns
        the public form of each row the statement returned."""
        if not connection.in_transaction():
            connection.begin()  # what SQLAlchemy's autobegin would have done
        values = {**self.defaults, **parameters}
        for name, process in self.binds:
            values[name] = process(values[name])
        arguments: Any = values if self.order is None else tuple(values[n] for n in self.order)
        proxied = connection.connection
        dialect = connection.dialect
        cursor = proxied.cursor()
        try:
            cursor.execute(self.sql, arguments)
            rows = cursor.fetchall()
            columns = _public_columns(dialect, tuple(column[1] for column in cursor.description))
        except dialect.loaded_dbapi.Error as error:
            disconnected = dialect.is_disconnect(error, proxied.dbapi_connection, cursor)
            if disconnected:
                connection.invalidate(error)
            raise DBAPIError.instance(
                self.sql,
                arguments,
                error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=disconnected,
                dialect=dialect,
            ) from error
        finally:
            cursor.close()
        return [
            {
                name: value if convert is None else convert(value)
                for (name, convert), value in zip(columns, row, strict=True)
            }
            for row in rows
        ]


@lru_cache(maxsize=32)
def _public_columns(
    dialect: Dialect, type_codes: tuple[Any, ...]
) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """The names of :data:`PUBLIC_COLUMNS` and how each raw value becomes its public
    form: the column's result processor (which may depend on the type the driver
    reports: PostgreSQL's numeric types), then what :func:`job_to_dict` does to it, in
    one pass over the row."""
    columns = []
    for column, type_code in zip(PUBLIC_COLUMNS, type_codes, strict=True):
        process = column.type.dialect_impl(dialect).result_processor(dialect, type_code)
        public = iso if column.key in TIME_FIELDS else str if column.key == "status" else None
        columns.append((column.key, _then(process, public)))
    return tuple(columns)


def _then(
    first: Callable[[Any], Any] | None, second: Callable[[Any], Any] | None
) -> Callable[[Any], Any] | None:
    """``second(first(value))``, either of them optional."""
    if first is None or second is None:
        return first or second
    return lambda value: second(first(value))


@lru_cache(maxsize=512)
def _driver_statement(statement: Update, dialect: Dialect) -> _DriverStatement:
    return _DriverStatement.compile(statement, dialect)


def _run(
    connection: Connection | Session, statement: Update, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run one of the prebuilt transitions below: the public form of each row it moved."""
    if isinstance(connection, Session):
        connection = connection.connection()
    return _driver_statement(statement, connection.dialect).run(connection, parameters)


def _bound_values(names: tuple[str, ...]) -> dict[str, Any]:
    """``SET name = :new_name`` for each column in ``names``."""
    return {name: bindparam(f"new_{name}", type_=JOBS.c[name].type) for name in names}


@lru_cache(maxsize=32)
def _transition_statement(names: tuple[str, ...], fenced: bool) -> Update:
    # Built once per shape and reused: constructing the statement (and its cache key)
    # anew on every call cost more than running it.
    statement = update(JOBS).where(
        JOBS.c.id == bindparam("job_id"),
        JOBS.c.status == bindparam("from_status", type_=JOBS.c.status.type),
    )
    if fenced:
        statement = statement.where(JOBS.c.attempts == bindparam("attempt"))
    return statement.values(**_bound_values(names)).returning(*PUBLIC_COLUMNS)


def _transition(
    connection: Connection | Session,
    job_id: str,
    from_status: JobStatus,
    values: dict[str, Any],
    attempt: int | None = None,
) -> dict[str, Any] | None:
    """One conditional UPDATE ... RETURNING: the job's new public form, or None when the
    job was not in ``from_status`` (someone else moved it first). With ``attempt``, the
    job must also still be on that attempt: a worker that was given up for dead cannot
    finish a job another worker has taken over."""
    values = {**values, "updated_at": utcnow()}
    statement = _transition_statement(tuple(sorted(values)), attempt is not None)
    parameters = {f"new_{name}": value for name, value in values.items()}
    if attempt is not None:
        parameters["attempt"] = attempt
    rows = _run(connection, statement, {"job_id": job_id, "from_status": from_status, **parameters})
    return rows[0] if rows else None


class _NotByIndex(ColumnElement[Any]):
    """A column in a condition that SQLite must not answer from an index on it: rendered
    ``+column`` on SQLite (its documented way to say so), as the column elsewhere.

    Without statistics SQLite chose the status index for ``id IN (...) AND status =
    'queued'``, so a claim of 4 jobs read every queued row (1000 in the bench) instead of
    looking the 4 up by id."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(_NotByIndex)
def _render_column(element: _NotByIndex, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(_NotByIndex, "sqlite")
def _render_sqlite_column(element: _NotByIndex, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.column, **kw))


def _status_is(name: str) -> ColumnElement[bool]:
    """``status = :name``, for statements that find their rows by id."""
    return _NotByIndex(JOBS.c.status) == bindparam(name, type_=JOBS.c.status.type)


@lru_cache(maxsize=256)
def _claim_statement(count: int) -> Update:
    # One statement per batch size, built once: each job gets the id of the message that
    # claims it in the same UPDATE (a CASE over the ids) rather than in a second one.
    job_ids = [bindparam(f"job_id_{index}", type_=JOBS.c.id.type) for index in range(count)]
    message_ids = case(
        *(
            (JOBS.c.id == job_id, bindparam(f"message_id_{index}", type_=JOBS.c.message_id.type))
            for index, job_id in enumerate(job_ids)
        ),
    )
    return (
        update(JOBS)
        .where(JOBS.c.id.in_(job_ids), _status_is("queued"))
        .values(
            status=bindparam("running", type_=JOBS.c.status.type),
            attempts=JOBS.c.attempts + 1,
            started_at=bindparam("now"),
            updated_at=bindparam("now"),
            stage="starting",
            message=null(),
            error=null(),
            message_id=message_ids,
        )
        .returning(*PUBLIC_COLUMNS)
    )


def claim_many(
    connection: Connection | Session, claims: dict[str, str | None]
) -> dict[str, dict[str, Any]]:
    """queued -> running for many jobs in one statement (``job id -> message id``);
    returns the public form of each job this call won, by id."""
    if not claims:
        return {}
    parameters: dict[str, Any] = {
        "queued": JobStatus.queued,
        "running": JobStatus.running,
        "now": utcnow(),
    }
    for index, (job_id, message_id) in enumerate(claims.items()):
        parameters[f"job_id_{index}"] = job_id
        parameters[f"message_id_{index}"] = message_id
    return {job["id"]: job for job in _run(connection, _claim_statement(len(claims)), parameters)}


def claim(
    connection: Connection | Session, job_id: str, *, message_id: str | None
) -> dict[str, Any] | None:
    """queued -> running; counts the attempt. None when the job was not queued."""
    return claim_many(connection, {job_id: message_id}).get(job_id)


def _finish_values(
    status: JobStatus, result: dict[str, Any] | None, error: dict[str, Any] | None
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "dedupe_key": None,
        "error": error,
        "stage": str(status),
    }
    if result is not None:
        values["result"] = result
    if status is JobStatus.succeeded:
        values["progress"] = 1.0
    return values


def finish(
    connection: Connection | Session,
    job_id: str,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    from_status: JobStatus = JobStatus.running,
    attempt: int | None = None,
) -> dict[str, Any] | None:
    """running -> succeeded | failed | cancelled (or queued -> cancelled)."""
    values = _finish_values(status, result, error)
    return _transition(connection, job_id, from_status, values, attempt)


@lru_cache(maxsize=256)
def _fenced_many_statement(names: tuple[str, ...], count: int) -> Update:
    # One per shape and count, like the claim's. (id = :j AND attempts = :a) OR ...: one
    # job may appear with two attempts, and both databases look each term up by id.
    fences = or_(
        *(
            and_(
                JOBS.c.id == bindparam(f"job_id_{index}", type_=JOBS.c.id.type),
                JOBS.c.attempts == bindparam(f"attempt_{index}", type_=JOBS.c.attempts.type),
            )
            for index in range(count)
        )
    )
    return (
        update(JOBS)
        .where(fences, _status_is("from_status"))
        .values(**_bound_values(names))
        .returning(*PUBLIC_COLUMNS)
    )


def finish_many(
    connection: Connection | Session,
    status: JobStatus,
    fences: list[tuple[str, int]],
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """running -> succeeded | failed | cancelled for many jobs in one statement, all with
    the same ``result`` and ``error``, each fenced by its attempt (``(job id, attempt)``
    pairs): a job moves only if it is still running that attempt. Returns the public
    form of each job this call moved, by id (its ``attempts`` is the fence it passed)."""
    if not fences:
        return {}
    values = {**_finish_values(status, result, error), "updated_at": utcnow()}
    statement = _fenced_many_statement(tuple(sorted(values)), len(fences))
    parameters = {f"new_{name}": value for name, value in values.items()}
    parameters["from_status"] = JobStatus.running
    for index, (job_id, attempt) in enumerate(fences):
        parameters[f"job_id_{index}"] = job_id
        parameters[f"attempt_{index}"] = attempt
    return {job["id"]: job for job in _run(connection, statement, parameters)}


def cancel_queued(connection: Connection | Session, job_id: str) -> dict[str, Any] | None:
    """queued -> cancelled: the job never starts (its message is dropped on delivery)."""
    return finish(
        connection, job_id, JobStatus.cancelled, error=CANCELLED, from_status=JobStatus.queued
    )


def active_jobs_query(owner: str) -> Select[Any]:
    """How many jobs are queued or running: ``(in all, of owner)``, in one round trip
    of two counts that each read only an index (the status index, and the partial
    index on the owner of active jobs)."""
    active = select(func.count()).select_from(JOBS).where(JOBS.c.status.in_(ACTIVE))
    return select(active.scalar_subquery(), active.where(JOBS.c.owner == owner).scalar_subquery())


def new_retry(
    connection: Connection | Session, job_id: str, *, owner: str | None = None
) -> dict[str, Any] | None:
    """A queued copy of a failed or cancelled job, with ``retry_of`` pointing at it,
    asked for by ``owner``; None when the job is not failed or cancelled. May raise
    IntegrityError when another active job holds the same dedupe key."""
    old = (
        connection.execute(
            select(*JOBS.c).where(
                JOBS.c.id == job_id,
                JOBS.c.status.in_([JobStatus.failed, JobStatus.cancelled]),
            )
        )
        .mappings()
        .first()
    )
    if old is None:
        return None
    now = utcnow()
    row = (
        connection.execute(
            insert(JOBS)
            .values(
                id=str(uuid.uuid4()),
                kind=old["kind"],
                status=JobStatus.queued,
                queue=old["queue"],
                params=old["params"],
                attempts=0,
                max_attempts=old["max_attempts"],
                parent_id=old["parent_id"],
                retry_of=old["id"],
                owner=owner,
                dedupe_key=dedupe_key(old["kind"], old["params"]),
                created_at=now,
                updated_at=now,
            )
            .returning(*JOBS.c)
        )
        .mappings()
        .one()
    )
    return job_to_dict(row)


def dedupe_key(kind: str, params: dict[str, Any]) -> str | None:
    """What makes two active jobs the same work: a download of the same URL, an
    analysis of the same video, a sync of the same playlist, a relayout that moves
    files (two at once would move the same videos; dry runs touch nothing)."""
    if kind == JobKind.relayout:
        return None if params.get("dry_run") else "relayout"
    if url := params.get("url"):
        return f"{kind}:{url}"
    if (video_id := params.get("video_id")) is not None:
        return f"{kind}:video:{video_id}"
    if (playlist_id := params.get("playlist_id")) is not None:
        return f"{kind}:playlist:{playlist_id}"
    return None


def requeue(
    connection: Connection | Session,
    job_id: str,
    *,
    error: dict[str, Any] | None,
    attempt: int | None = None,
    refund: bool = False,
    note: str | None = None,
) -> dict[str, Any] | None:
    """running -> queued, for a retry: the error of the attempt stays visible. With
    ``refund`` (and ``attempt``), the attempt does not count: the job did not fail (its
    worker was stopped, or a limit made it wait: ``note`` says which)."""
    values: dict[str, Any] = {
        "status": JobStatus.queued,
        "error": error,
        "stage": "waiting" if note else "retrying",
        "message": note,
    }
    if refund and attempt is not None:
        values["attempts"] = attempt - 1
    return _transition(connection, job_id, JobStatus.running, values, attempt)


def queued_since(connection: Connection | Session, job_id: str) -> datetime | None:
    """When a job that is still queued was created; None if it is not queued."""
    return connection.execute(
        select(JOBS.c.created_at).where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.queued)
    ).scalar()


def note_waiting(connection: Connection | Session, job_id: str, note: str) -> dict[str, Any] | None:
    """A queued job waits for a slot: its stage and message say so (queued -> queued),
    without a claim or an attempt. None if it is not queued any more."""
    return _transition(connection, job_id, JobStatus.queued, {"stage": "waiting", "message": note})


def save_progress(connection: Connection | Session, job_id: str, fields: dict[str, Any]) -> None:
    """Store the latest progress of a running job (throttled by the reporter)."""
    connection.execute(
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.running)
        .values(**fields, updated_at=utcnow())
    )


def encode_cursor(job: RowMapping) -> str:
    raw = f"{job['created_at'].isoformat()}|{job['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        if not job_id.isprintable():  # a NUL would have PostgreSQL refuse the query
            raise ValueError(job_id)
        return datetime.fromisoformat(created), job_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor(cursor) from exc


#: What a search of the job history (``q``) reads: the URL and title it was asked for
#: and the message of its error.
SEARCHED_TEXT = (("params", "url"), ("params", "title"), ("error", "message"))
LIKE_ESCAPE = "\\"


def contains_pattern(text: str) -> str:
    """The LIKE pattern of the values that contain ``text`` as it is: its own ``%``,
    ``_`` and escape characters match themselves (see :data:`LIKE_ESCAPE`)."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return f"%{text}%"


def text_matches(pattern: Any) -> ColumnElement[bool]:
    """Jobs one of whose :data:`SEARCHED_TEXT` values is LIKE ``pattern`` (a value or a
    bind parameter), in any case: ILIKE on PostgreSQL; ``lower()`` on both sides on
    SQLite, which folds ASCII letters only. A JSON path, so a key's name never matches;
    a job without that value (NULL) matches on the others."""
    return or_(
        *(
            JOBS.c[column][key].as_string().ilike(pattern, escape=LIKE_ESCAPE)
            for column, key in SEARCHED_TEXT
        )
    )


def list_jobs_query(
    *,
    status: str | None = None,
    kind: str | None = None,
    parent_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    q: str | None = None,
) -> Select[Any]:
    """Newest first, as plain rows (``.mappings()``; no ORM objects to build for a page);
    fetch ``limit + 1`` rows to know whether there is a next page. ``q``: the jobs whose
    URL, title or error message contains it (:func:`text_matches`)."""
    query = select(*JOBS.c).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    if parent_id:
        query = query.where(Job.parent_id == parent_id)
    if q:
        query = query.where(text_matches(contains_pattern(q)))
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    return query
