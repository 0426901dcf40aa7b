"""JobContext: what a running job actor knows about its job, and :func:`current_job`,
which gives it to the actor's code on the thread that runs it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import sessionmaker

from actors import stores
from actors.reporter import JobReporter
from media.errors import Cancelled


@dataclass
class JobContext:
    """What a running job actor knows about its job."""

    job: dict[str, Any]
    reporter: JobReporter
    #: What the job produced; stored on the row when the actor returns. (Actors return
    #: None: Dramatiq discards return values unless a results backend is configured.)
    result: dict[str, Any] | None = None
    #: Set by the job watcher when someone asks the job to stop.
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    #: Set once the job's ``running`` event is out; its progress waits for it.
    announced: threading.Event | None = None
    #: Set by an actor whose job became the parent of the parts it submitted
    #: (:func:`db.job_service.hand_to_parts`): the parts' roll-ups end it, not its return.
    handed_to_parts: bool = False

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job["params"])

    @property
    def sessions(self) -> sessionmaker:
        return stores.sessions()

    def cancelled(self) -> bool:
        """Has someone asked this job to stop? (Cheap: poll it as often as you like.)"""
        return self.cancel_requested.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def report(
        self,
        *,
        stage: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        **live_fields: Any,
    ) -> None:
        """Report progress (throttled); ``progress`` None means unknown."""
        self.job.update(stage=stage or self.job["stage"], progress=progress)
        if message is not None:
            self.job["message"] = message
        self.job["live"] = live_fields
        self.reporter.progress(self.job, announced=self.announced)


_current = threading.local()


def current_job() -> JobContext:
    """The job of the actor running on this thread."""
    context = running_here()
    if context is None:
        raise RuntimeError("current_job() called outside a job actor")
    return context


def running_here() -> JobContext | None:
    """The job of the actor running on this thread, if any."""
    context: JobContext | None = getattr(_current, "context", None)
    return context


def run_here(context: JobContext | None) -> None:
    """Make ``context`` the job of this thread (None: the job ended)."""
    _current.context = context
