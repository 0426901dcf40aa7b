"""One part of a batch: its items one after another, each failing alone.

Every bulk operation (thumbnails, analyses, deletes, artist enrichment) is a parent job
whose children are parts of about 20 items (:func:`db.job_service.submit_batch`); a
part's actor hands :func:`run_part` what to do with one item. An item whose work raises
a :class:`media.errors.MediaError` is a failed item with that reason, and the part goes
on; anything else (the database is down, a bug) fails the attempt, and the part is
retried as a whole (each item's work is idempotent, so a retried part redoes nothing
harmful).

The part's result is ``{done, skipped, failed: [{id, reason}], cancelled, worker}``;
its parent sums its parts (:func:`db.job_service.roll_up`). A part asked to stop ends
``cancelled`` after the item in hand, its result saying what it did until then.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from actors.job_context import JobContext
from db.job_service import batch_items
from media.errors import Cancelled, MediaError

#: What one item's work says: True done, False skipped (nothing to do: gone already,
#: nothing missing). A failure raises MediaError.
ItemWork = Callable[[Any], bool]


def run_part(job: JobContext, work: ItemWork, *, stage: str) -> None:
    """Run ``work`` on each item of the part ``job``; sets ``job.result``.

    Raises:
      Cancelled: someone cancelled the part (or its parent); the result says how far
        it got.
    """
    items = batch_items(job.params)
    done, skipped = 0, 0
    failed: list[dict[str, Any]] = []

    def result(cancelled: int = 0) -> dict[str, Any]:
        # Which worker process ran the part (a fleet's parts spread over its machines).
        worker = f"{socket.gethostname()}:{os.getpid()}"
        return {
            "done": done,
            "skipped": skipped,
            "failed": failed,
            "cancelled": cancelled,
            "worker": worker,
        }

    for number, item in enumerate(items):
        if job.cancelled():
            job.result = result(cancelled=len(items) - number)
            raise Cancelled()
        job.report(stage=stage, progress=number / len(items))
        try:
            if work(item):
                done += 1
            else:
                skipped += 1
        except MediaError as exc:
            if exc.code == "cancelled":
                job.result = result(cancelled=len(items) - number)
                raise
            failed.append({"id": item, "reason": exc.message})
    job.result = result()
