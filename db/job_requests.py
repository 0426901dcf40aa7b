"""The two job requests the web serves most, as sync functions of one connection (run
through :class:`db.engine.ConnectionRunner`): submitting a job, and reading a page of
the job history (as the JSON text of the page).

Their statements are built once, with bind parameters: building a statement (and its
cache key) anew on every request cost more than running it (as for the transitions in
:mod:`db.jobs`). A submission asks everything it must know before the insert (the
fleet's and the owner's active jobs, an active job holding the same work, the URL in
the library) in one statement.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    String,
    Table,
    TextClause,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    type_coerce,
)
from sqlalchemy.exc import IntegrityError

from db.jobs import (
    JOBS,
    PUBLIC_FIELDS,
    TIME_FIELDS,
    contains_pattern,
    decode_cursor,
    dedupe_key,
    encode_cursor,
    iso,
    job_to_dict,
    text_matches,
)
from db.models import JobStatus, Video, utcnow

VIDEOS: Table = Video.__table__  # type: ignore[assignment]


def _is_active() -> TextClause:
    # Spelled as the partial indexes' WHERE (db.models), so SQLite can use them: with
    # bound values it could not prove a row matches the index's condition.
    return text("jobs.status IN ('queued', 'running')")


def _build_admission() -> Select[Any]:
    def active_count() -> Select[Any]:
        return select(func.count()).select_from(JOBS).where(_is_active())

    of_owner = active_count().where(JOBS.c.owner == bindparam("owner"))
    holder = select(JOBS.c.id).where(_is_active(), JOBS.c.dedupe_key == bindparam("dedupe_key"))
    in_library = select(VIDEOS.c.id).where(VIDEOS.c.source_url == bindparam("library_url"))
    return select(
        active_count().scalar_subquery().label("in_all"),
        of_owner.scalar_subquery().label("of_owner"),
        holder.limit(1).scalar_subquery().label("active_id"),
        in_library.limit(1).scalar_subquery().label("video_id"),
    )


_ADMISSION = _build_admission()
_ACTIVE_HOLDER = select(*JOBS.c).where(_is_active(), JOBS.c.dedupe_key == bindparam("dedupe_key"))
_INSERT_JOB = insert(JOBS).returning(*JOBS.c)


@dataclass(frozen=True)
class Submission:
    """What :func:`submit_job` did.

    ``job`` is the public form of the new job (``created``) or of the active job that
    already holds the same work. Without a job, ``video_id`` (the URL is already in the
    library) or ``over_cap`` (``"fleet"`` or ``"owner"``: that many jobs are active
    already) says why none was created.
    """

    job: dict[str, Any] | None = None
    created: bool = False
    video_id: int | None = None
    over_cap: str | None = None


def submit_job(
    connection: Connection,
    *,
    kind: str,
    queue: str,
    params: dict[str, Any],
    owner: str,
    max_attempts: int,
    max_active: int,
    max_active_of_owner: int,
    library_url: str | None = None,
) -> Submission:
    """A new queued job, committed, unless (in this order) an active job already holds
    the same work, ``library_url`` is already a video of the library, or the fleet
    (``max_active``) or ``owner`` (``max_active_of_owner``) has as many queued and
    running jobs as allowed. The partial unique index on the dedupe key settles a race
    between two submissions of the same work: the loser answers with the winner's job.
    """
    key = dedupe_key(kind, params)
    facts = connection.execute(
        _ADMISSION, {"owner": owner, "dedupe_key": key, "library_url": library_url}
    ).one()
    if facts.active_id is not None:
        active = _active_holder(connection, key)
        if active is not None:
            return Submission(job=active)
    if library_url is not None and facts.video_id is not None:
        return Submission(video_id=facts.video_id)
    if facts.in_all >= max_active:
        return Submission(over_cap="fleet")
    if facts.of_owner >= max_active_of_owner:
        return Submission(over_cap="owner")
    now = utcnow()
    values = {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "status": JobStatus.queued,
        "queue": queue,
        "params": params,
        "attempts": 0,
        "max_attempts": max_attempts,
        "owner": owner,
        "dedupe_key": key,
        "created_at": now,
        "updated_at": now,
    }
    try:
        row = connection.execute(_INSERT_JOB, values).mappings().one()
        connection.commit()
    except IntegrityError:
        connection.rollback()
        active = _active_holder(connection, key)
        if active is None:
            raise
        return Submission(job=active)
    return Submission(job=job_to_dict(row), created=True)


def _active_holder(connection: Connection, key: str | None) -> dict[str, Any] | None:
    row = connection.execute(_ACTIVE_HOLDER, {"dedupe_key": key}).mappings().first()
    return job_to_dict(row) if row is not None else None


_JSON_FIELDS = ("params", "result", "error")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@lru_cache(maxsize=32)
def _page_statement(
    status: bool, kind: bool, parent_id: bool, cursor: bool, text: bool = False
) -> Select[Any]:
    # The JSON and time columns come as the driver gives them: on SQLite, text that
    # jobs_page_json puts into the page as it is (JSON) or reads with fromisoformat,
    # much cheaper than SQLAlchemy's decoding followed by encoding it all again.
    columns = [
        type_coerce(column, String) if column.name in _JSON_FIELDS + TIME_FIELDS else column
        for column in JOBS.c
    ]
    query = select(*columns).order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
    if status:
        query = query.where(JOBS.c.status == bindparam("status", type_=JOBS.c.status.type))
    if kind:
        query = query.where(JOBS.c.kind == bindparam("kind"))
    if parent_id:
        query = query.where(JOBS.c.parent_id == bindparam("parent_id"))
    if text:
        query = query.where(text_matches(bindparam("text_pattern")))
    if cursor:
        created = bindparam("cursor_created", type_=JOBS.c.created_at.type)
        job_id = bindparam("cursor_id", type_=JOBS.c.id.type)
        # A row value, not "a < x OR (a = x AND b < y)": SQLite reads that OR by walking
        # the index from the newest job and testing each, so a page deep in a long
        # history read every newer entry first; a row value is a range of the index.
        query = query.where(tuple_(JOBS.c.created_at, JOBS.c.id) < tuple_(created, job_id))
    return query.limit(bindparam("rows"))


def _time(value: datetime | str | None) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _iso(value: datetime | str | None) -> str | None:
    """:func:`db.jobs.iso` of a time column as the driver gave it."""
    moment = _time(value)
    if moment is not None and moment.tzinfo is None:
        return moment.isoformat() + "Z"  # what iso() makes of a naive (UTC) time, faster
    return iso(moment)


def _job_json(row: RowMapping, raw_json: bool) -> str:
    """The JSON text of ``job_to_dict(row)`` (same fields, same values)."""
    data: dict[str, Any] = {name: row[name] for name in PUBLIC_FIELDS}
    data["status"] = str(data["status"])
    for name in TIME_FIELDS:
        data[name] = _iso(row[name])
    if not raw_json:
        return _encode(data)
    spliced = [f',"{name}":{data.pop(name) or "null"}' for name in _JSON_FIELDS]
    return _encode(data)[:-1] + "".join(spliced) + "}"


def jobs_page_json(
    connection: Connection,
    *,
    status: str | None = None,
    kind: str | None = None,
    parent_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    q: str | None = None,
) -> str:
    """One page of the job history, newest first, as :func:`db.jobs.list_jobs_query`
    reads it (``q``: the jobs whose URL, title or error contains it, in any case), as
    the JSON text of ``{"items": [<job_to_dict of each job>], "next": <the cursor of
    the next page, or null on the last one>}``.

    Raises:
      InvalidCursor: a cursor we did not hand out.
    """
    parameters: dict[str, Any] = {"rows": limit + 1}
    if status:
        parameters["status"] = status
    if kind:
        parameters["kind"] = kind
    if parent_id:
        parameters["parent_id"] = parent_id
    if q:
        parameters["text_pattern"] = contains_pattern(q)
    if cursor:
        parameters["cursor_created"], parameters["cursor_id"] = decode_cursor(cursor)
    statement = _page_statement(bool(status), bool(kind), bool(parent_id), bool(cursor), bool(q))
    rows = connection.execute(statement, parameters).mappings().all()
    page, more = rows[:limit], len(rows) > limit
    # SQLite hands back the JSON columns' own text; a driver with JSON types of its
    # own (psycopg) hands back values, which are encoded.
    raw_json = connection.dialect.name == "sqlite"
    items = ",".join(_job_json(row, raw_json) for row in page)
    after = None
    if more:
        last = {"created_at": _time(page[-1]["created_at"]), "id": page[-1]["id"]}
        after = encode_cursor(cast(RowMapping, last))  # it reads these two fields only
    return f'{{"items":[{items}],"next":{_encode(after)}}}'
