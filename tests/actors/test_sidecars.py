"""The kodi/jellyfin layouts on a real worker, web app, yt-dlp and ffmpeg: a downloaded
clip gets its NFO, then its -thumb.jpg once analysed; its artist's folder gets
artist.nfo and, after an image upload, folder.jpg; deleting the videos removes them
(the artist's files and folder with the last one). The default layout writes none. A
full disk (a real tmpfs) never fails the download nor leaves half a sidecar, and the
next rewrite puts them right."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import update

from tests.fake_musicbrainz import FakeMusicBrainz, artist, hit, search
from tests.support import mounted_tmpfs, wait_for, wait_for_job


@pytest.fixture
def jellyfin(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Any:
    """The suite's settings in the jellyfin layout, for the sidecars' writer."""
    from actors import sidecars

    layout = dataclasses.replace(settings, library_layout="jellyfin")
    monkeypatch.setattr(sidecars, "settings", layout)
    return layout


def download(api: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    response = api.post("/api/videos/download", json={"url": url, **params})
    assert response.status_code == 202, response.text
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    return api.get(f"/api/videos/{job['result']['video_id']}").json()  # type: ignore[no-any-return]


def analysed(api: httpx.Client, video_id: int) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        for job in api.get("/api/jobs?kind=analyze").json()["items"]:
            if job["params"] == {"video_id": video_id} and job["finished_at"]:
                return dict(job)
        return None

    job = wait_for(finished, what=f"the analysis of video {video_id}")
    assert job["status"] == "succeeded", job
    return job


def delete(api: httpx.Client, video_id: int) -> None:
    job = wait_for_job(api, api.delete(f"/api/videos/{video_id}").json()["id"])
    assert job["status"] == "succeeded" and job["result"]["done"] == 1, job


def nfo(path: Path) -> ET.Element:
    data = path.read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"')
    return ET.fromstring(data)


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


def test_a_downloaded_clip_gets_its_nfo_thumb_and_artist_files_and_loses_them_with_it(
    api: httpx.Client, worker: Any, media_server: Any, jellyfin: Any
) -> None:
    root = jellyfin.media_root
    first = download(
        api, media_server.url("/media/side-one.mp4"), artist="Sigur Rós", title="Hoppípolla"
    )
    video = root / first["path"]
    folder = video.parent
    assert first["path"] == "Sigur Rós/Hoppípolla [side-one].mp4"
    written = nfo(folder / "Hoppípolla [side-one].nfo")
    assert written.tag == "musicvideo"
    assert written.findtext("title") == "Hoppípolla"
    assert [e.text for e in written.findall("artist")] == ["Sigur Rós"]
    unique = written.find("uniqueid")
    assert unique is not None and unique.text == "side-one"
    assert unique.attrib == {"type": "generic", "default": "true"}
    assert written.findtext("sourceurl") == media_server.url("/media/side-one.mp4")
    assert written.findtext("runtime") == "1"  # a 3-second clip: one minute, never 0

    # The analysis makes the thumbnails: the largest JPEG goes beside the video, and the
    # NFO names it.
    analysed(api, first["id"])
    thumb = folder / "Hoppípolla [side-one]-thumb.jpg"
    widths = api.get(f"/api/videos/{first['id']}").json()["thumbnail_widths"]
    largest = jellyfin.thumbnails_dir / str(first["id"]) / f"{max(widths)}.jpg"
    assert thumb.read_bytes() == largest.read_bytes()
    assert Image.open(thumb).format == "JPEG"
    assert nfo(folder / "Hoppípolla [side-one].nfo").findtext("thumb") == thumb.name

    # The artist's folder: artist.nfo at once; folder.jpg once an image is uploaded.
    assert nfo(folder / "artist.nfo").findtext("name") == "Sigur Rós"
    assert not (folder / "folder.jpg").exists()
    upload = api.put(f"/api/artists/{first['artist_id']}/image", content=jpeg())
    assert upload.status_code == 202, upload.text
    assert wait_for_job(api, upload.json()["id"])["status"] == "succeeded"
    artist = api.get(f"/api/artists/{first['artist_id']}").json()
    image_set = jellyfin.artists_dir / str(artist["id"])
    (version,) = [path for path in image_set.iterdir() if path.is_dir()]
    assert (folder / "folder.jpg").read_bytes() == (version / "1024.jpg").read_bytes()
    assert nfo(folder / "artist.nfo").findtext("thumb") == "folder.jpg"

    # A second video of the artist: deleting the first leaves the artist's files.
    second = download(
        api, media_server.url("/media/side-two.mp4"), artist="Sigur Rós", title="Glósóli"
    )
    analysed(api, second["id"])
    delete(api, first["id"])
    assert sorted(path.name for path in folder.iterdir()) == [
        "Glósóli [side-two]-thumb.jpg",
        "Glósóli [side-two].mp4",
        "Glósóli [side-two].nfo",
        "artist.nfo",
        "folder.jpg",
    ]
    # The last one takes the artist's files and the folder with it.
    delete(api, second["id"])
    assert not folder.exists()
    assert list(root.iterdir()) == []


def test_a_forced_re_download_under_a_new_title_moves_its_sidecars_along(
    api: httpx.Client, worker: Any, media_server: Any, jellyfin: Any
) -> None:
    url = media_server.url("/media/renamed.mp4")
    before = download(api, url, artist="Renamed", title="Old Name")
    folder = (jellyfin.media_root / before["path"]).parent
    analysed(api, before["id"])
    assert (folder / "Old Name [renamed]-thumb.jpg").is_file()
    after = download(api, url, artist="Renamed", title="New Name", force=True)
    assert after["id"] == before["id"] and after["path"] == "Renamed/New Name [renamed].mp4"

    def both_analyses_done() -> bool:
        jobs = api.get("/api/jobs?kind=analyze").json()["items"]
        return len(jobs) == 2 and all(job["finished_at"] for job in jobs)

    wait_for(both_analyses_done, what="the second analysis")
    assert sorted(path.name for path in folder.iterdir()) == [
        "New Name [renamed]-thumb.jpg",
        "New Name [renamed].mp4",
        "New Name [renamed].nfo",
        "artist.nfo",
    ]
    assert nfo(folder / "New Name [renamed].nfo").findtext("title") == "New Name"


def test_an_enrichment_brings_the_artist_nfo_up_to_date(
    api: httpx.Client, worker: Any, media_server: Any, jellyfin: Any, monkeypatch: Any
) -> None:
    from actors import enrich

    mbid = "9fe4d1d6-27e3-4a7c-9b1f-2a5b8d2e6f01"
    musicbrainz = FakeMusicBrainz().start()
    try:
        musicbrainz.searches["Nina Simone"] = [search(hit("Nina Simone", mbid, 100))]
        musicbrainz.lookups[mbid] = [
            artist(mbid, "Nina Simone", country="US", begin="1933-02-21", genres={"jazz": 7})
        ]
        monkeypatch.setattr(
            enrich, "settings", dataclasses.replace(jellyfin, musicbrainz_url=musicbrainz.url)
        )
        clip = download(api, media_server.url("/media/nina.mp4"), artist="Nina Simone")
        artist_nfo = (jellyfin.media_root / clip["path"]).parent / "artist.nfo"
        assert nfo(artist_nfo).findtext("musicBrainzArtistID") is None
        bulk = api.post("/api/artists/bulk/enrich", json={"ids": [clip["artist_id"]]}).json()
        assert wait_for_job(api, bulk["id"])["result"]["done"] == 1
    finally:
        musicbrainz.stop()
    written = nfo(artist_nfo)
    assert written.findtext("name") == "Nina Simone"
    assert written.findtext("musicBrainzArtistID") == mbid
    assert (written.findtext("country"), written.findtext("formed")) == ("US", "1933")
    assert [e.text for e in written.findall("genre")] == ["jazz"]


def test_the_default_layout_writes_no_sidecars(
    api: httpx.Client, worker: Any, media_server: Any, settings: Any
) -> None:
    assert settings.library_layout == "default"
    clip = download(api, media_server.url("/media/plain.mp4"), artist="Plain", title="Clip")
    analysed(api, clip["id"])
    folder = (settings.media_root / clip["path"]).parent
    assert [path.name for path in folder.iterdir()] == ["Clip [plain].mp4"]
    delete(api, clip["id"])
    assert not folder.exists()


def fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte; the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        while True:
            try:
                file.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler


@pytest.fixture
def full_disk_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> Iterator[Any]:
    """The library on a 4 MB tmpfs, in the jellyfin layout, for the actors that write
    it (no reserve kept free: the disk may fill to its last byte)."""
    from actors import analyze, download, sidecars

    with mounted_tmpfs(tmp_path / "tmpfs", 4 * 1024**2) as disk:
        moved = dataclasses.replace(
            settings, media_root=disk / "media", library_layout="jellyfin", min_free_bytes=0
        )
        for module in (download, analyze, sidecars):
            monkeypatch.setattr(module, "settings", moved)
        yield moved


def test_a_full_disk_fails_no_download_leaves_no_half_sidecar_and_the_next_rewrite_mends(
    api: httpx.Client,
    worker: Any,
    media_server: Any,
    sample_video: Path,
    full_disk_library: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from actors import stores
    from db.models import Video

    root = full_disk_library.media_root
    disk = root.parent
    # Room for the video's pages and not one more: every sidecar write fails.
    filler = fill(disk)
    pages = -(-sample_video.stat().st_size // 4096)
    os.truncate(filler, filler.stat().st_size - pages * 4096)

    clip = download(api, media_server.url("/media/full.mp4"), artist="Full", title="Disk")
    analysed(api, clip["id"])
    video = root / clip["path"]
    assert video.read_bytes() == sample_video.read_bytes()
    assert [path.name for path in video.parent.iterdir()] == [video.name]  # no temp file
    assert "could not write the sidecars of video" in caplog.text
    assert "No space left on device" in caplog.text

    # Room again: the next rewrite (here a thumbnails run) writes every sidecar.
    filler.unlink()
    rerun = api.post("/api/videos/bulk/thumbnails", json={"ids": [clip["id"]]}).json()
    assert wait_for_job(api, rerun["id"])["result"]["done"] == 1
    sidecar = video.with_suffix(".nfo")
    assert sorted(path.name for path in video.parent.iterdir()) == sorted(
        [video.name, sidecar.name, "Disk [full]-thumb.jpg", "artist.nfo"]
    )
    assert nfo(sidecar).findtext("album") is None

    # A rewrite that no longer fits keeps the whole old file, not half of a new one.
    with stores.sessions().begin() as session:
        session.execute(update(Video).where(Video.id == clip["id"]).values(album="Later"))
    filler = fill(disk)
    rerun = api.post("/api/videos/bulk/thumbnails", json={"ids": [clip["id"]]}).json()
    assert wait_for_job(api, rerun["id"])["result"]["done"] == 1
    assert nfo(sidecar).findtext("album") is None
    assert len(list(video.parent.iterdir())) == 4
    filler.unlink()
