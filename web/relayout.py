"""``POST /api/library/relayout``: rename the library in place to the current names.

The request answers at once with a ``relayout`` job (``202``) on the ``bulk`` queue; a
worker plans the moves (a dry run ends with them as its result) and hands them to parts
that move the files and rows (actors/relayout.py). One relayout that moves files runs
at a time: asked again meanwhile, the answer is that one (``200``).
"""

from __future__ import annotations

from functools import partial

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import job_service
from db.models import JobKind
from db.queues import Queue
from web.apidoc import BOOL, Answer, documented, obj, ref
from web.errors import ApiError, read_json_object
from web.jobs import job_owner
from web.videos import submitted


@documented(
    "Rename the library to the current names",
    {
        202: Answer("The relayout job", ref("Job"), headers=("Location",)),
        200: Answer("The relayout already queued or running", ref("Job")),
    },
    errors=(400, 429),
    body=obj({"dry_run": BOOL}, closed=True),
    description="A dry run's result is the moves `{video_id, from, to}` (the first 200) "
    "and their `total`, and nothing is touched; otherwise the job moves every video whose "
    "path is not the current names' (its file, the files beside it with its stem, its "
    "row) in parts, and ends with their summary. Safe to run again.",
)
async def relayout(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    if set(body) != {"dry_run"} or not isinstance(body["dry_run"], bool):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_dry_run",
            'send {"dry_run": true} to list the moves, {"dry_run": false} to make them',
            field="dry_run",
        )
    settings = request.app.state.settings
    submission, outbox = await request.app.state.store.run(
        partial(
            job_service.submit,
            kind=JobKind.relayout,
            queue=Queue.bulk,
            params={"dry_run": body["dry_run"]},
            owner=job_owner(request),
            max_attempts=settings.max_attempts,
            max_active=settings.max_active_jobs,
            max_active_of_owner=settings.max_active_jobs_per_credential,
        ),
        writes=True,
    )
    return await submitted(request, submission, outbox)


routes = [Route("/api/library/relayout", relayout, methods=["POST"])]
