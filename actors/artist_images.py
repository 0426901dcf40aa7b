"""An artist's image set, made from an uploaded picture (``PUT /api/artists/{id}/image``).

The picture was checked from its header by the web and kept under the artist's folder;
here it is decoded and made into every size (:func:`media.images.make_image_set`) in a
process of its own (memory-capped like a download: decoders of pictures from outside
are attack surface), into a new folder named by the set's version. The row then names
that version, unless a picture uploaded later already won; the older set goes.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

from sqlalchemy import or_, update

from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.job_context import current_job
from actors.job_tracking import job_actor
from actors.sidecars import write_artist_sidecars
from db.models import Artist, JobKind
from db.queues import Queue
from db.settings import get_settings
from media.errors import MediaError
from media.images import make_image_set
from media.isolation import run_isolated

settings = get_settings()


@job_actor(kind=JobKind.artist_image, queue_name=Queue.media, time_limit=5 * 60_000)
def make_artist_image(job_id: str) -> None:
    job = current_job()
    params = job.params
    artist_id, upload = int(params["artist_id"]), str(params["upload"])
    uploaded_at = datetime.fromisoformat(params["uploaded_at"])
    folder = settings.artists_dir / str(artist_id)
    source = folder / upload
    if not upload.startswith("upload-") or "/" in upload or not source.is_file():
        raise MediaError("the uploaded picture is gone", code="file_missing", retryable=False)
    version = upload.removeprefix("upload-")
    job.report(stage="resizing", progress=0.1)
    try:
        made: dict[str, Any] = run_isolated(
            make_image_set,
            kwargs={"source": str(source), "out_dir": str(folder / version)},
            should_cancel=job.cancelled,
            memory_limit=settings.download_memory_limit,
        )
    except MediaError as exc:
        if not exc.retryable:  # nothing will read the picture or its partial set again
            source.unlink(missing_ok=True)
            shutil.rmtree(folder / version, ignore_errors=True)
        raise
    with job.sessions() as session:
        won = session.execute(
            update(Artist)
            .where(
                Artist.id == artist_id,
                or_(Artist.image_uploaded_at.is_(None), Artist.image_uploaded_at < uploaded_at),
            )
            .values(
                image_version=version,
                image_widths=made["widths"],
                image_formats=made["formats"],
                image_uploaded_at=uploaded_at,
            )
        ).rowcount
        session.commit()
        current = session.get(Artist, artist_id)
        keep = current.image_version if current is not None else None
    source.unlink(missing_ok=True)
    for old in folder.iterdir():  # older sets (and a set that lost to a later upload)
        if old.is_dir() and old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    if won:
        write_artist_sidecars(artist_id)  # folder.jpg, in the kodi and jellyfin layouts
    job.result = {"artist_id": artist_id, "widths": made["widths"], "current": bool(won)}
