"""Real parts for the tests: generated media, a local media HTTP server, a uvicorn
server in a thread, and helpers that wait with a deadline instead of sleeping."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from media.ffmpeg import ffmpeg_path
from web.ws_protocol import WebSocketProtocol

T = TypeVar("T")

SVG_WITH_SCRIPT = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<script>alert(document.domain)</script><rect width="64" height="64"/></svg>'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "",
    error: type[Exception] = AssertionError,
) -> T:
    """Poll ``check`` until it returns something truthy, or raise ``error`` at the
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.0f}s waiting for {what or check}")
        time.sleep(interval)  # the poll interval of a wait with a deadline


def empty_the_stores(settings: Any) -> None:
    """Empty tables, an empty Redis, no media and no temp downloads."""
    from sqlalchemy import delete

    from actors import stores
    from db.models import Artist, Job, Playlist, PlaylistEntry, ScheduleRun, User, Video

    stores.redis_client().flushall()
    with stores.sessions().begin() as session:
        session.execute(delete(ScheduleRun))
        session.execute(delete(PlaylistEntry))
        session.execute(delete(Playlist))
        session.execute(delete(Video))
        session.execute(delete(Artist))
        session.execute(delete(Job).where(Job.parent_id.is_not(None)))
        session.execute(delete(Job))
        session.execute(delete(User))  # and their API tokens, by the foreign key
    shutil.rmtree(settings.media_root, ignore_errors=True)
    shutil.rmtree(settings.tmp_dir, ignore_errors=True)
    shutil.rmtree(settings.stream_cache_dir, ignore_errors=True)
    shutil.rmtree(settings.thumbnails_dir, ignore_errors=True)
    shutil.rmtree(settings.artists_dir, ignore_errors=True)


def make_video(
    path: Path, *, seconds: float = 3, size: str = "640x360", bitrate: str = "2M"
) -> Path:
    """An H.264 + AAC mp4 made from FFmpeg's lavfi test sources."""
    return make_clip(path, video=f"testsrc2=size={size}:rate=25", seconds=seconds, bitrate=bitrate)


def make_clip(
    path: Path,
    *,
    video: str | None = "testsrc2=size=640x360:rate=25",
    seconds: float = 3,
    tone: bool = True,
    gop: int | None = None,
    bitrate: str | None = None,
) -> Path:
    """An H.264 (``video``: a lavfi graph, whose output may be labelled ``[out0]``) and/or
    AAC (a 440 Hz tone) mp4 of ``seconds``, with a keyframe every ``gop`` frames."""
    argv = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        argv += ["-f", "lavfi", "-i", video]
    if tone:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if video:
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        argv += ["-g", str(gop)] if gop else []
        argv += ["-b:v", bitrate] if bitrate else []
    if tone:
        argv += ["-c:a", "aac"]
    argv += ["-t", f"{seconds:g}", "-movflags", "+faststart", str(path)]
    subprocess.run(argv, check=True)
    return path


def video_page(
    name: str, content_url: str, seconds: int, chapters: list[tuple[str, int, int]]
) -> str:
    """An HTML page whose JSON-LD VideoObject names the file at ``content_url`` and its
    chapters (``(title, start, end)``), as yt-dlp's generic extractor reads them."""
    data = {
        "@context": "https://schema.org", "@type": "VideoObject", "name": name,
        "contentUrl": content_url, "duration": f"PT{seconds}S",
        "hasPart": [
            {"@type": "Clip", "name": title, "startOffset": start, "endOffset": end}
            for title, start, end in chapters
        ],
    }  # fmt: skip
    return (
        '<!doctype html><html><head><script type="application/ld+json">'
        f"{json.dumps(data)}</script></head><body></body></html>"
    )


#: Two cues, as SubRip.
SRT = """1
00:00:00,000 --> 00:00:01,500
Hello from the first line

2
00:00:01,500 --> 00:00:03,000
And the second one
"""


def with_subtitles(clip: Path, srt: Path, out: Path, *, lang: str | None = "eng") -> Path:
    """``clip`` with ``srt`` as a subtitle stream (mov_text in .mp4, SubRip in .mkv),
    tagged with ``lang``."""
    codec = "mov_text" if out.suffix == ".mp4" else "srt"
    argv = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip)]
    argv += ["-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", "-c:s", codec]
    argv += ["-metadata:s:s:0", f"language={lang}"] if lang else []
    subprocess.run([*argv, str(out)], check=True)
    return out


def rss_feed(title: str, links: list[str]) -> bytes:
    """An RSS 2.0 channel with one item per link, as a podcast or a video channel
    publishes (yt-dlp's generic extractor lists the items of such a feed)."""
    items = "".join(
        f"<item><title>entry {number}</title><link>{escape(link)}</link></item>"
        for number, link in enumerate(links, 1)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title>{items}</channel></rss>"
    ).encode()


@dataclass
class MediaServer:
    """Serves ``/media/<anything>.mp4`` (the same generated file under any name, so each
    test gets its own yt-dlp id), ``/slow/<name>.mp4`` throttled (about 3 s),
    ``/crawl/<name>.mp4`` throttled harder (about 15 s), ``/missing/...`` 404,
    ``/flaky/<name>.mp4`` 503 for the first ``flaky_failures`` requests of each path,
    ``/stall/<name>.mp4`` one chunk and then silence for ``stall_for`` seconds,
    ``/text/<name>.mp4`` (a file that is not media), ``/svg/<name>.mp4`` (an SVG with
    a script, claiming to be video/mp4: FFmpeg can open it), ``/playlist/<name>.html`` (a
    page embedding three videos, which yt-dlp's generic extractor reads as a playlist) and
    ``/file/<name>``, the file ``files[name]`` (a test's own clip) and ``/page/<name>``,
    the HTML ``pages[name]``."""

    video: Path
    port: int = 0
    chunk: int = 16 * 1024
    slow_delay: float = 0.05
    crawl_delay: float = 0.3
    flaky_failures: int = 2
    stall_for: float = 20.0
    hits: dict[str, int] = field(default_factory=dict)
    ranges: list[tuple[str, int]] = field(default_factory=list)  # (path, first byte)
    cookies: list[str] = field(default_factory=list)  # Cookie headers received
    files: dict[str, Path] = field(default_factory=dict)  # served as /file/<name>
    feeds: dict[str, list[str]] = field(default_factory=dict)  # /feed/<name>.xml's links
    pages: dict[str, str] = field(default_factory=dict)  # served as /page/<name>, text/html
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> MediaServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.handle_request(body=False)

            def do_GET(self) -> None:
                self.handle_request(body=True)

            def handle_request(self, *, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                owner.hits[path] = owner.hits.get(path, 0) + 1
                if self.headers.get("Cookie"):
                    owner.cookies.append(self.headers["Cookie"])
                if path.startswith("/missing/"):
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                if path.startswith("/flaky/") and owner.hits[path] <= owner.flaky_failures:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
                    return
                if path.startswith("/playlist/"):
                    videos = "".join(
                        f'<video src="/media/list-{n}-{path.rsplit("/", 1)[-1]}.mp4"></video>'
                        for n in range(3)
                    )
                    page = f"<!doctype html><html><body>{videos}</body></html>".encode()
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    if body:
                        self.wfile.write(page)
                    return
                if path.startswith("/page/") and path[6:] in owner.pages:
                    html = owner.pages[path[6:]].encode()
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(html)))
                    self.end_headers()
                    if body:
                        self.wfile.write(html)
                    return
                feed_name = path.removeprefix("/feed/").removesuffix(".xml")
                if path.startswith("/feed/") and feed_name in owner.feeds:
                    feed = rss_feed(feed_name, owner.feeds[feed_name])
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "application/rss+xml")
                    self.send_header("Content-Length", str(len(feed)))
                    self.end_headers()
                    if body:
                        self.wfile.write(feed)
                    return
                if path.startswith("/text/"):
                    data = b"this is not a video\n" * 100
                elif path.startswith("/svg/"):
                    data = SVG_WITH_SCRIPT
                elif path.startswith("/file/") and path[6:] in owner.files:
                    data = owner.files[path[6:]].read_bytes()
                elif path.startswith(("/media/", "/slow/", "/crawl/", "/flaky/", "/stall/")):
                    data = owner.video.read_bytes()
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and range_header.startswith("bytes="):
                    start = int(range_header[6:].split("-", 1)[0] or 0)
                    owner.ranges.append((path, start))
                    self.send_response(HTTPStatus.PARTIAL_CONTENT)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                delay = {"slow": owner.slow_delay, "crawl": owner.crawl_delay}.get(
                    path.split("/")[1], 0.0
                )
                try:
                    if path.startswith("/stall/"):
                        self.wfile.write(data[start : start + owner.chunk])
                        self.wfile.flush()
                        time.sleep(owner.stall_for)  # then nothing: a stalled server
                        return
                    for offset in range(start, len(data), owner.chunk):
                        self.wfile.write(data[offset : offset + owner.chunk])
                        if delay:
                            self.wfile.flush()
                            time.sleep(delay)  # the throttle itself
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class LiveServer:
    """A uvicorn server running an app in a background thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                ws=WebSocketProtocol,
                ws_max_size=65536,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, what="uvicorn to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextmanager
def live_server(app: Any) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def api_client(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=15)


def wait_for_job(client: httpx.Client, job_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``GET /api/jobs/{id}`` until the job is finished."""

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.1, what=f"job {job_id} to finish")


def frames_to_events(raw: str | bytes) -> list[dict[str, Any]]:
    data = json.loads(raw)
    return data if isinstance(data, list) else [data]


def child_processes(parent: int) -> list[str]:
    """The live (not zombie) children of ``parent``, as command lines; multiprocessing's
    own resource tracker does not count."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and "resource_tracker" not in command:
            found.append(command)
    return found


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` in the process tree."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM the group ``process`` leads (started with ``start_new_session``), and
    SIGKILL it if it has not ended within ``timeout``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def mounted_tmpfs(mount_point: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes on ``mount_point`` (a real, small disk to fill up),
    unmounted afterwards. Skipped where mounting is refused; as root, as in CI, a
    refusal fails instead."""
    import pytest

    mount_point.mkdir(parents=True, exist_ok=True)
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)]
    try:
        mounted = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        problem = mounted.stderr.strip() or f"exit code {mounted.returncode}"
        ok = mounted.returncode == 0
    except FileNotFoundError:
        problem, ok = "mount is not installed", False
    if not ok:
        if os.geteuid() == 0:
            pytest.fail(f"running as root, so a tmpfs must mount: {problem}")
        pytest.skip(f"no tmpfs here (mounting needs root, as in CI): {problem}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            # Still busy: something kept a file open. Detach it anyway, then say so.
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
            raise AssertionError(f"the tmpfs at {mount_point} was still busy")


def library_row(settings: Any, relative: str) -> int:
    """Probe the file at ``relative`` under the media root and give it a library row
    (as a download would); its id."""
    from actors import stores
    from db.models import Video
    from media.probe import probe_file

    path = settings.media_root / relative
    info = probe_file(path)
    with stores.sessions().begin() as session:
        video = Video(
            title=path.stem, duration=info.duration, width=info.width, height=info.height,
            vcodec=info.vcodec, acodec=info.acodec, container=info.container,
            source_url=f"https://example.com/{relative}", extractor="test",
            extractor_id=relative, path=relative, size=path.stat().st_size,
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


@contextmanager
def procfile_workers(log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's worker line, run as honcho and Heroku run it (``sh -c``), in a
    process group of its own with ``env`` on top of ours and its output in ``log``;
    stopped (SIGTERM, then SIGKILL after 60 s) when the block ends."""
    from web.launch import procfile_command

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with log.open("wb") as output:
        fleet = subprocess.Popen(
            ["sh", "-c", procfile_command("worker")],
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PATH": path, **env},
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield fleet
        finally:
            stop_process_group(fleet, timeout=60)
