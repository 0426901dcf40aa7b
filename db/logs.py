"""How every process logs: one set-up for the web, the workers and the scheduler.

``VIDFLEET_LOG_FORMAT=text`` (the default) keeps lines for people; ``json`` writes one
JSON object a line for a log shipper: ``time``, ``level``, ``logger``, ``message``,
``pid``, ``exc_info`` (the traceback, as text) when there is one, and the
``request_id`` and ``job_id`` of the request or job the line was logged in.

Those ids live in context variables, so every line logged while a request or a job is
handled carries them, whatever module logs it: the web's request-id middleware sets the
request's (asyncio gives each request task its own context), JobTracking sets the job's
on the worker thread that runs it (each thread has its own context). The formatter reads
them when it formats a line, on the thread that logged it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from db.settings import Settings

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: uvicorn's own loggers, which have handlers of their own and don't propagate to the root.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the request and job ids of its context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id, job_id = REQUEST_ID.get(), JOB_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # default=str: a message's arguments are already formatted; this only guards
        # against an odd object a handler's caller put on the record.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: Settings, *, text_format: str = TEXT_FORMAT) -> None:
    """Set up this process's logging from the settings.

    A process whose root logger has no handler yet (the web under uvicorn, the
    scheduler) gets one on stderr at ``VIDFLEET_LOG_LEVEL``. A process whose root
    logger already has one keeps it and its level (a Dramatiq worker process, whose
    handler writes to the pipe its parent reads; a test runner's capture) and, in the
    JSON format, only has its lines formatted as JSON, uvicorn's own included.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=settings.log_level, format=text_format)
    if settings.log_format == "json":
        formatter = JsonFormatter()
        for logger in (root, *(logging.getLogger(name) for name in SERVER_LOGGERS)):
            for handler in logger.handlers:
                handler.setFormatter(formatter)


@contextmanager
def job_logged(job_id: str) -> Iterator[None]:
    """Lines logged in the block carry ``job_id``."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)
