"""Dramatiq actors: ``dramatiq actors`` runs a worker, ``periodiq actors`` the scheduler.

Importing this package sets up the broker and declares every actor.
"""

from actors.analyze import analyze_video
from actors.artist_images import make_artist_image
from actors.broker import broker
from actors.bulk_delete import delete_videos
from actors.bulk_thumbnails import make_thumbnails
from actors.download import download_video
from actors.enrich import enrich_artists
from actors.library_sweeps import analyze_unanalysed_videos, sweep_missing_thumbnails
from actors.lifeline import lifeline_sweep
from actors.playlists import sync_due_playlists, sync_playlist
from actors.refresh_hooks import send_refresh
from actors.relayout import move_videos, relayout_library
from actors.retention import prune_job_history
from actors.stream_cache import sweep_stream_cache, warm_stream_cache
from actors.temp_janitor import sweep_temp_downloads

__all__ = [
    "analyze_unanalysed_videos",
    "analyze_video",
    "make_artist_image",
    "broker",
    "delete_videos",
    "make_thumbnails",
    "download_video",
    "enrich_artists",
    "lifeline_sweep",
    "sync_due_playlists",
    "sync_playlist",
    "prune_job_history",
    "send_refresh",
    "move_videos",
    "relayout_library",
    "sweep_missing_thumbnails",
    "sweep_stream_cache",
    "sweep_temp_downloads",
    "warm_stream_cache",
]
