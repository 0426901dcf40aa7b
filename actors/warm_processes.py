"""WarmMediaProcesses: a worker keeps a warm fork server for its downloads.

A download runs in a process of its own (:func:`media.isolation.run_isolated`), and so
does a playlist's listing (:func:`media.playlists.list_playlist`). Each worker starts,
at boot, the fork server those processes are forked from, with yt-dlp and the egress
guard imported and what every download would build first prepared
(:func:`media.download.prepare_downloads`), so that no download pays an interpreter
start, the import of yt-dlp, the compilation of its extractors' URL patterns, the list
of its extractors or the loading of the CA bundle; the server stops with the worker.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware

from media.download import download_video, prepare_downloads
from media.egress import install_egress_guard
from media.isolation import cool_down, warm_up
from media.playlists import list_playlist


class WarmMediaProcesses(Middleware):
    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        warm_up(download_video, list_playlist, install_egress_guard, prepare=prepare_downloads)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        cool_down()
