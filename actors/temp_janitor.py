"""``sweep_temp_downloads`` (hourly, on ``maintenance``): removes the work folders of
downloads that are over (:mod:`media.work_folders`).

A folder goes only when its job is no longer queued or running (a queued retry resumes
its partial file) and nothing in it changed for hours: longer than a download may run,
so that not even a download the lifeline gave up for dead while its process went on
writing (cut off from Redis) loses its files. Folders not named by a job id are not a
download's and stay.

Each machine has its own work folder under its ``$VIDFLEET_DATA_DIR``: a run cleans the
folder of the machine whose worker took the message.
"""

from __future__ import annotations

import logging

from actors import stores
from actors.periodic import periodic_actor
from db import sweeps
from db.settings import get_settings
from media.work_folders import remove_work_folder, stale_work_folders

logger = logging.getLogger(__name__)

#: Hours without a change before a dead download's folder may go (or the download
#: time limit, when that is longer).
UNCHANGED_FOR_S = 6 * 3600


@periodic_actor()
def sweep_temp_downloads() -> None:
    settings = get_settings()
    unchanged_for = max(UNCHANGED_FOR_S, settings.download_time_limit)
    stale = stale_work_folders(settings.tmp_dir, older_than_s=unchanged_for)
    if not stale:
        return
    with stores.engine().connect() as connection:
        active = sweeps.active_job_ids(connection, stale)
    removed = 0
    for job_id, path in stale.items():
        if job_id in active:
            continue
        try:
            remove_work_folder(path)
        except OSError as exc:
            logger.warning("temp downloads: the work folder of %s stays: %s", job_id, exc)
            continue
        removed += 1
    logger.info(
        "temp downloads: removed %d work folders of ended downloads, kept %d of active ones",
        removed,
        len(stale.keys() & active),
    )
