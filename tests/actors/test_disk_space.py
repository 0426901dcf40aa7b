"""A full disk, for real: the library and the work folder on a small tmpfs (mounted as
root, as CI runs), downloads through the real web app, worker, yt-dlp and ffmpeg. A
file that does not fit fails at once with ``disk_full`` and leaves nothing behind; the
next one that fits still downloads; ``/readyz`` and the storage API tell in advance."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.disk import MB, disk_usage, free_bytes
from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import (
    MediaServer,
    api_client,
    live_server,
    make_video,
    mounted_tmpfs,
    wait_for_job,
)

TMPFS_BYTES = 8 * MB
RESERVE = 1 * MB
ROOM = TMPFS_BYTES - RESERVE


class BareServer:
    """Serves one video two ways MediaServer does not: ``/bare/<name>.mp4`` without a
    Content-Length (the end is the connection closing, as a live stream's), and
    ``/held/<name>.mp4`` with its Content-Length but the body held back until
    ``release`` is set, counting the body bytes it sent (``sent``)."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.release = threading.Event()
        self.sent: dict[str, int] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = owner.video.read_bytes()
                held = self.path.startswith("/held/")
                if not held and not self.path.startswith("/bare/"):
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "video/mp4")
                if held:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                owner.sent.setdefault(self.path, 0)
                if held and not owner.release.wait(timeout=120):
                    return
                try:
                    for offset in range(0, len(data), 64 * 1024):
                        self.wfile.write(data[offset : offset + 64 * 1024])
                        owner.sent[self.path] += len(data[offset : offset + 64 * 1024])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("disk-space")
    made = {
        "small": sample_video,
        "big": make_video(folder / "big.mp4", seconds=30),  # over the room, under the disk
        "huge": make_video(folder / "huge.mp4", seconds=40),  # over the whole disk
    }
    sizes = {name: path.stat().st_size for name, path in made.items()}
    assert sizes["small"] < MB and ROOM < sizes["big"] < TMPFS_BYTES < sizes["huge"], sizes
    return made


@pytest.fixture(scope="module")
def big_server(videos: dict[str, Path]) -> Iterator[MediaServer]:
    server = MediaServer(video=videos["big"]).start()
    yield server
    server.stop()


@pytest.fixture
def bare_servers(videos: dict[str, Path]) -> Iterator[dict[str, BareServer]]:
    servers = {name: BareServer(videos[name]) for name in ("big", "huge")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", TMPFS_BYTES) as mount_point:
        yield mount_point


def on_disks(
    monkeypatch: pytest.MonkeyPatch, settings: Any, *, library: Path, data: Path, reserve: int
) -> Any:
    """The suite's settings with the library, the data dir (whose ``tmp`` is the work
    folder; the database stays where it is) and the reserve moved, for the download
    actor too (it reads ``settings`` from its module at call time)."""
    from actors import download

    moved = dataclasses.replace(settings, media_root=library, data_dir=data, min_free_bytes=reserve)
    assert moved.tmp_dir == data / "tmp"
    monkeypatch.setattr(download, "settings", moved)
    return moved


def download(api: httpx.Client, url: str) -> dict[str, Any]:
    response = api.post("/api/videos/download", json={"url": url})
    assert response.status_code == 202, response.text
    return wait_for_job(api, response.json()["id"])


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def assert_failed_disk_full(job: dict[str, Any], where: str, *paths: Path) -> str:
    assert job["status"] == "failed", job
    assert job["attempts"] == 1, "disk_full must not be retried"
    error = job["error"]
    assert error["type"] == "disk_full" and error["retryable"] is False, error
    message = error["message"]
    assert f"not enough disk space in {where}" in message and "MB free" in message, message
    assert "needed" in message, message
    assert "/" not in message and not any(str(path) in message for path in paths), message
    return str(message)


@pytest.mark.parametrize(
    "how",
    [
        "announced",  # a Content-Length over the room: yt-dlp refuses it up front
        "unannounced",  # no length: stopped as it outgrows the room
        "unannounced, no reserve",  # no length, no reserve: a real ENOSPC mid-write
    ],
)
def test_a_file_that_does_not_fit_fails_at_once_and_leaves_nothing_but_the_next_one_fits(
    how: str,
    api: httpx.Client,
    worker: Any,
    media_server: MediaServer,
    big_server: MediaServer,
    bare_servers: dict[str, BareServer],
    settings: Any,
    tmpfs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reserve = 0 if how.endswith("no reserve") else RESERVE
    moved = on_disks(
        monkeypatch, settings, library=tmpfs / "library", data=tmpfs / "data", reserve=reserve
    )
    url = {
        "announced": big_server.url("/media/too-big.mp4"),
        "unannounced": bare_servers["big"].url("/bare/too-big.mp4"),
        "unannounced, no reserve": bare_servers["huge"].url("/bare/too-big.mp4"),
    }[how]
    before = free_bytes(tmpfs)

    failed = download(api, url)

    assert_failed_disk_full(failed, "the work folder", tmpfs, moved.tmp_dir)
    assert files_under(tmpfs) == [], "a partial file was left behind"
    assert free_bytes(tmpfs) == before, "the partial file's bytes are not free again"
    assert not (moved.tmp_dir / failed["id"]).exists()

    fits = download(api, media_server.url(f"/media/fits-after-{len(how)}.mp4"))
    assert fits["status"] == "succeeded", fits
    video = api.get(f"/api/videos/{fits['result']['video_id']}").json()
    filed = files_under(moved.media_root)
    assert [path.relative_to(moved.media_root).as_posix() for path in filed] == [video["path"]]
    assert files_under(moved.tmp_dir) == []


@pytest.mark.parametrize("tmpfs_holds", ["work folder and library", "library"])
def test_an_announced_size_over_the_free_space_is_refused_before_a_byte_is_written(
    tmpfs_holds: str,
    api: httpx.Client,
    worker: Any,
    bare_servers: dict[str, BareServer],
    settings: Any,
    tmpfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmpfs / "data" if tmpfs_holds == "work folder and library" else tmp_path / "data"
    moved = on_disks(monkeypatch, settings, library=tmpfs / "library", data=data, reserve=RESERVE)
    server = bare_servers["big"]
    before = free_bytes(tmpfs)

    failed = download(api, server.url("/held/announced.mp4"))

    # The body was still held back when the job failed: yt-dlp decided on the
    # Content-Length alone, so it had not one byte of the file to write.
    assert server.sent and set(server.sent.values()) == {0}, server.sent
    where = "the work folder" if tmpfs_holds == "work folder and library" else "the library"
    message = assert_failed_disk_full(failed, where, tmpfs, tmp_path)
    assert f"{before / MB:.1f} MB free" in message
    assert free_bytes(tmpfs) == before
    assert files_under(tmpfs) == [] and files_under(moved.tmp_dir) == []


def test_a_disk_that_fills_up_during_the_move_into_the_library_leaves_no_partial_copy(
    api: Any,
    worker: Any,
    media_server: MediaServer,
    settings: Any,
    tmpfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The work folder on the normal disk, the library on the tmpfs: the move is a
    copy. Another writer takes the library's space between the check and the copy
    (a real file on the real disk; only its timing is arranged), so the copy itself
    hits ENOSPC half-way."""
    from actors import download as actor

    moved = on_disks(
        monkeypatch, settings, library=tmpfs / "library", data=tmp_path / "data", reserve=RESERVE
    )
    real_stage = actor.stage_in_library
    left: dict[str, int] = {}

    def another_writer_fills_the_disk_first(source: Path, *args: Any) -> Any:
        with open(tmpfs / "another-writer", "wb") as filler:
            os.posix_fallocate(filler.fileno(), 0, free_bytes(tmpfs) - source.stat().st_size // 2)
        left["free"] = free_bytes(tmpfs)
        return real_stage(source, *args)

    monkeypatch.setattr(actor, "stage_in_library", another_writer_fills_the_disk_first)
    failed = download(api, media_server.url("/media/fills-the-library.mp4"))

    message = assert_failed_disk_full(failed, "the library", tmpfs, tmp_path)
    # ENOSPC in the copy, not the check before it (which names the reserve).
    assert "reserve" not in message, message
    assert files_under(moved.media_root) == [], "the partial copy was left in the library"
    assert free_bytes(tmpfs) == left["free"], "the partial copy's bytes are not free again"
    assert not (moved.tmp_dir / failed["id"]).exists()

    (tmpfs / "another-writer").unlink()
    monkeypatch.setattr(actor, "stage_in_library", real_stage)
    fits = download(api, media_server.url("/media/copied-into-the-library.mp4"))
    assert fits["status"] == "succeeded", fits
    assert [path.name for path in files_under(moved.media_root)] == [
        Path(api.get(f"/api/videos/{fits['result']['video_id']}").json()["path"]).name
    ]
    assert files_under(moved.tmp_dir) == []


def test_readyz_and_the_storage_api_report_free_space_and_degrade_below_the_reserve(
    settings: Any, tmpfs: Path, tmp_path: Path
) -> None:
    from web.app import create_app

    moved = dataclasses.replace(
        settings, media_root=tmpfs / "library", data_dir=tmp_path / "data", min_free_bytes=RESERVE
    )
    with (
        live_server(create_app(moved)) as server,
        api_client(server.url, ADMIN_TOKEN) as admin,
        api_client(server.url, VIEWER_TOKEN) as viewer,
        api_client(server.url, None) as anonymous,
    ):
        ready = admin.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.json()
        storage = ready.json()["storage"]
        assert storage["library"] == {"free_bytes": TMPFS_BYTES, "total_bytes": TMPFS_BYTES}
        assert storage["reserve_bytes"] == RESERVE
        work = disk_usage(tmp_path)  # the shared disk: others write to it meanwhile
        assert storage["work"]["total_bytes"] == work.total_bytes
        assert abs(storage["work"]["free_bytes"] - work.free_bytes) < 256 * MB

        system = viewer.get("/api/system/storage")
        assert system.status_code == 200
        assert system.json()["library"] == storage["library"]
        assert system.json()["reserve_bytes"] == RESERVE and system.json()["degraded"] is False
        assert anonymous.get("/api/system/storage").status_code == 401

        with open(tmpfs / "filler", "wb") as filler:
            os.posix_fallocate(filler.fileno(), 0, TMPFS_BYTES - RESERVE // 2)

        low = admin.get("/readyz")
        assert low.status_code == 200 and low.json()["status"] == "degraded", low.json()
        assert low.json()["storage"]["library"]["free_bytes"] == RESERVE // 2
        system = admin.get("/api/system/storage")
        assert system.json()["degraded"] is True
        assert system.json()["library"]["free_bytes"] == RESERVE // 2
        for answer in (ready, low, system):
            assert str(tmpfs) not in answer.text and str(tmp_path) not in answer.text
