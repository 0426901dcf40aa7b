"""A download's whole path: POST -> worker -> library -> stream, live over a WebSocket."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from websockets.sync.client import connect

from tests.conftest import ADMIN_TOKEN
from tests.support import frames_to_events, wait_for_job

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_download_is_accepted_at_once_reported_live_filed_and_streamed(
    server: Any, api: Any, worker: Any, media_server: Any, settings: Any, sample_video: Path
) -> None:
    from actors import stores
    from db.models import Video

    url = media_server.url("/slow/first-song.mp4")
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    # The job id is not known before the POST: collect every event, keep this job's.
    job_id_box: dict[str, str] = {}

    def listen() -> None:
        with connect(server.ws_url, additional_headers=AUTH, open_timeout=10) as ws:
            # Redis is empty at the start of each test: "0-0" replays the stream from its
            # start, so no event is missed however late the subscription lands.
            ws.send('{"action": "subscribe", "jobs": ["*"], "since": "0-0"}')
            ready.set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for event in frames_to_events(ws.recv(timeout=deadline - time.monotonic())):
                    events.append(event)
                    job = event["job"]
                    if job["id"] == job_id_box.get("id") and job["status"] == "succeeded":
                        return

    listener = threading.Thread(target=listen)
    listener.start()
    assert ready.wait(10)
    response = api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202, response.text
    job = response.json()
    job_id_box["id"] = job["id"]
    assert job["status"] == "queued"
    assert response.headers["location"] == f"/api/jobs/{job['id']}"

    finished = wait_for_job(api, job["id"])
    assert finished["status"] == "succeeded", finished
    listener.join(30)
    mine = [e["job"] for e in events if e["job"]["id"] == job["id"]]
    statuses = [j["status"] for j in mine]
    assert statuses[0] == "queued"
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
    running = [j for j in mine if j["status"] == "running"]
    progress = [j["progress"] for j in running if j["progress"] is not None]
    assert len(progress) >= 2, mine
    assert progress == sorted(progress), progress
    assert any(j["stage"] == "downloading" for j in running)

    video_id = finished["result"]["video_id"]
    video = api.get(f"/api/videos/{video_id}").json()
    assert video["title"] == "first-song"
    assert video["extractor"] == "generic"
    assert video["extractor_id"] == "first-song"
    assert video["source_url"] == url
    assert (video["width"], video["height"]) == (640, 360)
    assert (video["vcodec"], video["acodec"]) == ("h264", "aac")
    assert 2.5 < video["duration"] < 3.5
    path = settings.media_root / video["path"]
    assert path.read_bytes() == sample_video.read_bytes()
    assert video["size"] == sample_video.stat().st_size
    assert path.is_relative_to(settings.media_root)
    assert not (settings.tmp_dir / job["id"]).exists()
    with stores.sessions()() as session:
        assert session.scalar(select(func.count()).select_from(Video)) == 1

    original = sample_video.read_bytes()
    ranged = api.get(f"/stream/{video_id}", headers={"Range": "bytes=100-1099"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 100-1099/{len(original)}"
    assert ranged.content == original[100:1100]
    whole = api.get(f"/stream/{video_id}")
    assert whole.status_code == 200 and whole.content == original
