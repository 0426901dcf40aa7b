"""Subtitles and chapters on a real worker, end to end: a page whose ``<video>`` has a
``<track>`` (SubRip, generated here), and a file with a subtitle stream of its own,
both end up as WebVTT beside the video (``<stem>.en.vtt``), named in its row, served
by ``/subtitles`` and removed with the video; chapters from a page's JSON-LD are stored
and returned; hostile languages stay in the video's folder, and a subtitle that cannot
be fetched never fails the video."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VIEWER_TOKEN
from tests.support import SRT, video_page, wait_for_job, with_subtitles


@pytest.fixture
def subtitles_on(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    """Downloads keep English subtitles (and, for the hostile test, whatever it sets)."""
    from actors import download

    chosen = dataclasses.replace(settings, subtitle_langs=("en.*",))
    monkeypatch.setattr(download, "settings", chosen)
    return lambda **changes: monkeypatch.setattr(
        download, "settings", dataclasses.replace(chosen, **changes)
    )


@pytest.fixture(scope="module")
def srt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subs") / "lines.srt"
    path.write_text(SRT)
    return path


def track_page(media_server: Any, name: str, tracks: dict[str, str]) -> str:
    """The URL of a page with one ``<video>`` of the sample clip and a ``<track>`` per
    ``{srclang: src}``."""
    elements = "".join(
        f'<track kind="subtitles" srclang="{lang}" src="{src}">' for lang, src in tracks.items()
    )
    media_server.pages[name] = (
        f"<!doctype html><html><head><title>{name}</title></head><body><video controls>"
        f'<source src="/media/{name}.mp4" type="video/mp4">{elements}</video></body></html>'
    )
    return str(media_server.url(f"/page/{name}"))


def download(api: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    body = {"url": url, "artist": "Subtitled Artist", "title": "Sung Here", **extra}
    response = api.post("/api/videos/download", json=body)
    assert response.status_code == 202, response.text
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    return dict(api.get(f"/api/videos/{job['result']['video_id']}").json())


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_a_track_of_the_page_becomes_webvtt_beside_the_video_served_and_deleted_with_it(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any, srt_file: Path,
    subtitles_on: Any, server: Any,
) -> None:  # fmt: skip
    media_server.files["lines.srt"] = srt_file
    url = track_page(media_server, "with-track", {"en": "/file/lines.srt"})

    video = download(api, url)

    stem = Path(video["path"]).stem
    assert stem.startswith("Sung Here [")
    beside = f"{Path(video['path']).parent.as_posix()}/{stem}.en.vtt"
    assert files_under(settings.media_root) == {video["path"], beside}
    vtt = (settings.media_root / beside).read_text()
    assert vtt.startswith("WEBVTT") and "Hello from the first line" in vtt
    assert video["subtitles"] == [
        {"lang": "en", "automatic": False, "url": f"/subtitles/{video['id']}/en"}
    ]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
    ) as viewer:
        served = viewer.get(f"/subtitles/{video['id']}/en")
        assert served.status_code == 200
        assert served.headers["content-type"] == "text/vtt; charset=utf-8"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.text == vtt
        for missing in ("fr", "..%2F..%2Fapp.db", "en.vtt"):
            answer = viewer.get(f"/subtitles/{video['id']}/{missing}")
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert viewer.get(f"/subtitles/{video['id'] + 1000}/en").status_code == 404
    assert httpx.get(f"{server.url}/subtitles/{video['id']}/en").status_code == 401

    deleted = wait_for_job(api, api.delete(f"/api/videos/{video['id']}").json()["id"])
    assert deleted["status"] == "succeeded", deleted
    assert files_under(settings.media_root) == set()


def test_a_subtitle_stream_of_the_file_is_extracted_and_a_forced_download_replaces_it(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any, srt_file: Path,
    sample_video: Path, tmp_path: Path, subtitles_on: Any,
) -> None:  # fmt: skip
    clip = with_subtitles(sample_video, srt_file, tmp_path / "embedded.mkv", lang="eng")
    media_server.files["embedded.mkv"] = clip
    url = media_server.url("/file/embedded.mkv")

    video = download(api, url)

    vtt = Path(video["path"]).with_name(f"{Path(video['path']).stem}.en.vtt").as_posix()
    assert files_under(settings.media_root) == {video["path"], vtt}
    assert (settings.media_root / vtt).read_text().startswith("WEBVTT")
    assert [sub["lang"] for sub in video["subtitles"]] == ["en"]
    assert api.get(video["subtitles"][0]["url"]).status_code == 200

    # Again, forced, with subtitles turned off: the old file goes with the old version.
    subtitles_on(subtitle_langs=())
    again = download(api, url, force=True)
    assert again["id"] == video["id"] and again["subtitles"] == []
    assert files_under(settings.media_root) == {again["path"]}
    assert api.get(f"/subtitles/{video['id']}/en").status_code == 404


def test_chapters_of_the_source_are_stored_and_returned(
    api: httpx.Client, worker: Any, media_server: Any, subtitles_on: Any
) -> None:
    media_server.pages["chaptered.html"] = video_page(
        "Chaptered",
        media_server.url("/media/chaptered.mp4"),
        3,
        [("Intro", 0, 1), ("Verse", 1, 3)],
    )

    video = download(api, media_server.url("/page/chaptered.html"))

    assert video["chapters"] == [
        {"start": 0.0, "end": 1.0, "title": "Intro", "source": "chapters"},
        {"start": 1.0, "end": 3.0, "title": "Verse", "source": "chapters"},
    ]
    listed = api.get("/api/videos").json()["items"]
    assert "chapters" not in listed[0]  # the list stays light: one video's JSON has them


def test_hostile_languages_stay_in_the_folder_and_a_missing_subtitle_fails_nothing(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any, srt_file: Path,
    subtitles_on: Any,
) -> None:  # fmt: skip
    media_server.files["lines.srt"] = srt_file
    subtitles_on(subtitle_langs=("all",))
    tracks = {
        "../../x": "/file/lines.srt",
        "y" * 300: "/file/lines.srt",
        "de": "/missing/de.srt",  # a 404: left out, the rest kept
        "en": "/file/lines.srt",
    }
    video = download(api, track_page(media_server, "hostile", tracks))

    langs = sorted(sub["lang"] for sub in video["subtitles"])
    assert langs == ["en", "x", "y" * 24]
    folder = Path(video["path"]).parent
    stem = Path(video["path"]).stem
    expected = {video["path"]} | {f"{folder.as_posix()}/{stem}.{lang}.vtt" for lang in langs}
    assert files_under(settings.media_root) == expected
    # No subtitle file anywhere else under the data dir (the work folder is gone too).
    everywhere = {path.resolve() for path in settings.data_dir.rglob("*") if path.is_file()}
    vtts = {path for path in everywhere if ".vtt" in path.name or ".srt" in path.name}
    assert vtts == {(settings.media_root / path).resolve() for path in expected - {video["path"]}}
    for sub in video["subtitles"]:
        assert api.get(sub["url"]).text.startswith("WEBVTT")


def test_a_row_naming_a_subtitle_outside_the_library_is_not_deleted_at_all(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    from actors import stores
    from db.models import Video
    from tests.actors.test_bulk_delete import add_video

    video_id = add_video(settings, "Kept/clip.mp4")
    outside = settings.data_dir / "outside.vtt"
    outside.write_text("WEBVTT\n")
    with stores.sessions().begin() as session:
        row = session.get(Video, video_id)
        assert row is not None
        row.subtitles = [{"lang": "en", "path": "../outside.vtt", "automatic": False}]

    assert api.get(f"/subtitles/{video_id}/en").status_code == 404  # never served either
    done = wait_for_job(api, api.delete(f"/api/videos/{video_id}").json()["id"])

    assert done["result"]["failed"] == [
        {"id": video_id, "reason": "its file lies outside the media root: nothing was deleted"}
    ]
    assert outside.exists() and (settings.media_root / "Kept/clip.mp4").exists()
