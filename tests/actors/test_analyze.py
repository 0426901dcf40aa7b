"""After every download, an ``analyze`` job of its own (not a child of the download) on
the ``media`` queue probes the file, grades it and makes its thumbnails; its failure
never touches the download."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from media.ffmpeg import ffmpeg_path
from tests.support import wait_for, wait_for_job


@pytest.fixture(scope="module")
def black_then_sharp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of black, then four of a detailed test pattern, with a tone."""
    path = tmp_path_factory.mktemp("analyze") / "black-then-sharp.mp4"
    subprocess.run(
        [
            ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "color=black:size=640x360:rate=25:duration=2",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=6",
            "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]",
            "-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast",
            "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def analysis_of(api: httpx.Client, video_id: int) -> dict[str, Any]:
    """The analyze job of a video, once it finished."""

    def finished() -> dict[str, Any] | None:
        for job in api.get("/api/jobs?kind=analyze&limit=100").json()["items"]:
            if job["params"] == {"video_id": video_id} and job["finished_at"]:
                return dict(job)
        return None

    return wait_for(finished, timeout=60, what="the analysis to finish")


def failed_analysis(api: httpx.Client, video_id: int) -> dict[str, Any]:
    """The failed analyze job of a video, once there is one."""

    def failed() -> dict[str, Any] | None:
        for job in api.get("/api/jobs?kind=analyze&status=failed").json()["items"]:
            if job["params"] == {"video_id": video_id}:
                return dict(job)
        return None

    return wait_for(failed, what="the analysis to fail")


def test_a_downloaded_video_gets_its_analysis_and_a_thumbnail_that_is_not_black(
    api: httpx.Client, worker: Any, media_server: Any, black_then_sharp: Path
) -> None:
    media_server.files["black-then-sharp.mp4"] = black_then_sharp
    job = api.post(
        "/api/videos/download", json={"url": media_server.url("/file/black-then-sharp.mp4")}
    ).json()
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done
    video_id = done["result"]["video_id"]

    analysis = analysis_of(api, video_id)
    assert analysis["status"] == "succeeded", analysis
    assert analysis["queue"] == "media" and analysis["parent_id"] is None
    video = api.get(f"/api/videos/{video_id}").json()
    assert video["probe"]["streams"] and video["quality"]["audio"] is True
    assert video["analyzed_at"] and video["thumbnail_widths"]
    thumbnail = api.get(video["thumbnail_url"])
    assert thumbnail.status_code == 200
    image = Image.open(io.BytesIO(thumbnail.content)).convert("L")
    assert ImageStat.Stat(image).mean[0] > 40  # not the black opening
    for width in video["thumbnail_widths"]:
        for ext in ("webp", "jpg"):
            served = api.get(f"/thumbnails/{video_id}/{width}.{ext}")
            assert served.status_code == 200
            assert Image.open(io.BytesIO(served.content)).width == min(width, 640)


def test_a_failed_analysis_leaves_the_download_and_its_video_alone(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    from actors import stores
    from actors.analyze import analyze_later
    from db.models import Video

    job = api.post("/api/videos/download", json={"url": media_server.url("/media/gone.mp4")})
    done = wait_for_job(api, job.json()["id"])
    video_id = done["result"]["video_id"]
    analysis_of(api, video_id)
    with stores.sessions()() as session:
        path = settings.media_root / session.get(Video, video_id).path
    path.unlink()  # the file is gone before a second analysis
    analyze_later(video_id, after_job=done["id"])
    failed = failed_analysis(api, video_id)
    assert failed["error"]["type"] == "file_missing" and failed["attempts"] == 1
    assert api.get(f"/api/jobs/{done['id']}").json()["status"] == "succeeded"
    assert api.get(f"/api/videos/{video_id}").status_code == 200


def test_a_video_deleted_while_it_is_analysed_leaves_no_thumbnails_behind(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any, monkeypatch: Any
) -> None:
    from actors import analyze, stores
    from actors.analyze import analyze_later
    from db import library

    job = api.post("/api/videos/download", json={"url": media_server.url("/media/deleted.mp4")})
    done = wait_for_job(api, job.json()["id"])
    video_id = done["result"]["video_id"]
    analysis_of(api, video_id)
    real = analyze.run_isolated

    def analysed_then_deleted(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)  # the thumbnails are written by now
        with stores.sessions()() as session:  # the delete lands before the row update
            library.remove_video(session, video_id)
            session.commit()
        return found

    monkeypatch.setattr(analyze, "run_isolated", analysed_then_deleted)
    assert (settings.thumbnails_dir / str(video_id)).is_dir()
    analyze_later(video_id, after_job=done["id"])
    failed = failed_analysis(api, video_id)
    assert failed["error"]["type"] == "not_found", failed
    assert not (settings.thumbnails_dir / str(video_id)).exists()
