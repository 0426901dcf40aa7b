"""Benchmark 6, streaming: time to first byte, the two stream backends and how many
streams keep up with real time, against the real app (``web.app:create_app``) under
uvicorn in child processes with the bench env.

Media are made here with the project's FFmpeg (``media.ffmpeg.ffmpeg_path``): an MKV
(1280x720 H.264/AAC, 2 Mbit/s, keyframe every 2 s) and a WebM (640x480 VP9/Opus), put
under the bench env's media root and given library rows with their probe fields, as
``tests/web/test_transcode.py`` does. The client is a minimal HTTP/1.1 reader on
asyncio streams (a fresh connection per request, ``Connection: close``, chunked or
``Content-Length`` bodies), so that 20 clients reading at full speed cost the bench
process little.

1. **TTFB**, request sent to first body byte, p50/p95 over interleaved rounds: direct
   play (the anchor), remux, two transcodes, a cache hit (after one whole transcode)
   and an HLS segment on a fresh cache. Streams are closed after their first byte.
2. **Backends**: one server with ``VIDFLEET_STREAM_BACKEND=ffmpeg`` (the anchor) and
   one with ``=vlc`` side by side: TTFB p50 and, for a whole transcode, the CPU of the
   server's children (``cutime + cstime`` of the uvicorn process, which include its
   reaped children) per minute of the video delivered (the end of its last video
   packet, by PyAV). A WebM is cut off a few seconds after its first byte (VLC's is
   slower than real time here); its length is then its last complete block's time.
3. **Capacity**: N transcodes started at once, each read whole; the slowest client's
   speed as × real time (media duration / time to read it all). N doubles until the
   slowest falls behind. Direct play at 1, 10 and 20 clients: bytes/s ÷ (file size /
   duration).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.env import BenchEnv
from bench.http_latency import UvicornProcess
from bench.report import median, percentile, table

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_TRANSCODES = 16
READ_SIZE = 1 << 20
REQUEST_TIMEOUT_S = 180.0
REAP_TIMEOUT_S = 10.0
CUT_OFF = 1.25  # a capacity client is cut off after this × the media's duration
GOP_S = 2


@dataclass(frozen=True)
class StreamsPlan:
    mkv_seconds: int
    webm_seconds: int
    ttfb_rounds: int
    backend_samples: int
    capacity_levels: tuple[int, ...]
    direct_levels: tuple[int, ...]
    webm_read_s: float  # a whole WebM backend run is cut this long after its first byte


FULL = StreamsPlan(
    mkv_seconds=8,
    webm_seconds=5,
    ttfb_rounds=10,
    backend_samples=2,
    capacity_levels=(1, 2, 4, 8, 16),
    direct_levels=(1, 10, 20),
    webm_read_s=5.0,
)
QUICK = StreamsPlan(
    mkv_seconds=4,
    webm_seconds=3,
    ttfb_rounds=3,
    backend_samples=0,
    capacity_levels=(1, 2, 4),
    direct_levels=(1, 10, 20),
    webm_read_s=3.0,
)


# --- media and library rows -------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    id: int
    path: Path
    duration: float
    size: int
    label: str


def encode_command(path: Path, seconds: int, size: str, codecs: list[str]) -> list[str]:
    from media.ffmpeg import ffmpeg_path

    return [
        ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        *codecs, "-g", str(25 * GOP_S), "-shortest", str(path),
    ]  # fmt: skip


MKV_CODECS = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "2M"]
MKV_CODECS += ["-c:a", "aac"]
WEBM_CODECS = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"]
WEBM_CODECS += ["-b:v", "800k", "-c:a", "libopus"]


def make_media(media_root: Path, plan: StreamsPlan) -> tuple[Path, Path]:
    """Encode the two clips at once (two FFmpeg processes)."""
    folder = media_root / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    mkv, webm = folder / "clip.mkv", folder / "clip.webm"
    jobs = [
        subprocess.Popen(encode_command(mkv, plan.mkv_seconds, "1280x720", MKV_CODECS)),
        subprocess.Popen(encode_command(webm, plan.webm_seconds, "640x480", WEBM_CODECS)),
    ]
    for job in jobs:
        if job.wait() != 0:
            raise RuntimeError(f"ffmpeg could not make the bench media: exit {job.returncode}")
    return mkv, webm


def add_to_library(database_url: str, media_root: Path, path: Path, label: str) -> Clip:
    """A library row for ``path`` with its probe's fields."""
    from db.engine import make_engine, session_factory
    from db.models import Video
    from media.probe import probe_file

    info = probe_file(path)
    relative = path.relative_to(media_root).as_posix()
    engine = make_engine(database_url)
    try:
        with session_factory(engine).begin() as session:
            video = Video(
                title=path.stem, duration=info.duration, width=info.width, height=info.height,
                vcodec=info.vcodec, acodec=info.acodec, container=info.container,
                source_url=f"https://example.com/bench/{relative}", extractor="bench",
                extractor_id=relative, path=relative, size=path.stat().st_size,
            )  # fmt: skip
            session.add(video)
            session.flush()
            video_id = video.id
    finally:
        engine.dispose()
    assert info.duration is not None
    return Clip(video_id, path, info.duration, path.stat().st_size, label)


# --- the servers and their processes ------------------------------------------------------


class StreamServer(UvicornProcess):
    """The app under uvicorn with a stream backend and transcode caps high enough for
    the capacity runs (every client here is 127.0.0.1, so the per-client cap too)."""

    def __init__(self, env: BenchEnv, backend: str) -> None:
        super().__init__(env)
        self.backend = backend
        self.name = f"uvicorn ({backend})"
        self.log_path = env.root / f"uvicorn-streams-{backend}.log"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "VIDFLEET_STREAM_BACKEND": self.backend,
            "VIDFLEET_MAX_TRANSCODES": str(MAX_TRANSCODES),
            "VIDFLEET_MAX_TRANSCODES_PER_CLIENT": str(MAX_TRANSCODES),
        }


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own user+sys, its reaped children's user+sys), in seconds."""
    fields = _stat_fields(pid)  # fields[0] is field 3 of proc(5), "state"
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own / CLOCK_TICKS, children / CLOCK_TICKS


def children_of(pid: int) -> list[str]:
    """The command names of ``pid``'s live (not zombie) children."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = _stat_fields(int(name))
            command = Path(f"/proc/{name}/comm").read_text().strip()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(command)
    return found


async def reaped(pid: int, notes: list[str], what: str) -> None:
    """Wait until ``pid`` has no child left; note it if one outlives the timeout."""
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while children := children_of(pid):
        if time.monotonic() > deadline:
            notes.append(
                f"after {what}: {', '.join(children)} still running {REAP_TIMEOUT_S:.0f} s later"
            )
            return
        await asyncio.sleep(0.02)


# --- the client ---------------------------------------------------------------------------


@dataclass
class Fetch:
    status: int
    headers: dict[str, str]
    ttfb: float = 0.0  # request sent to first body byte, s
    elapsed: float = 0.0  # request sent to the last byte read, s
    body_bytes: int = 0
    complete: bool = False
    first_fragment: float | None = None  # fragmented MP4: the first moof+mdat arrived, s
    body: bytes = b""  # when asked to keep it


async def _body(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncGenerator[bytes, None]:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                return
            while size:
                data = await reader.read(min(size, READ_SIZE))
                if not data:
                    raise ConnectionError("the stream ended inside a chunk")
                size -= len(data)
                yield data
            await reader.readexactly(2)
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining:
            data = await reader.read(min(remaining, READ_SIZE))
            if not data:
                raise ConnectionError("the body ended early")
            remaining -= len(data)
            yield data
    else:
        while data := await reader.read(READ_SIZE):
            yield data


def _vint(data: bytes, offset: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``offset``: (value, its length); -1 = unknown."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


WEBM_CONTAINERS = {0x18538067, 0x1F43B675, 0x1549A966, 0xA0}  # Segment, Cluster, Info, BlockGroup


def webm_media_seconds(data: bytes) -> float:
    """The latest block timestamp among the complete blocks of a (live, unknown-size)
    WebM stream's first ``len(data)`` bytes, in seconds."""
    offset, scale, cluster, latest = 0, 1_000_000, 0, 0.0
    while True:
        element = _vint(data, offset, keep_marker=True)
        if element is None:
            return latest
        ident, id_length = element
        sized = _vint(data, offset + id_length, keep_marker=False)
        if sized is None:
            return latest
        size, size_length = sized
        start = offset + id_length + size_length
        if ident in WEBM_CONTAINERS:
            offset = start  # enter it (its size may be unknown)
            continue
        if size < 0 or start + size > len(data):
            return latest
        payload = data[start : start + size]
        if ident == 0x2AD7B1:  # TimecodeScale
            scale = int.from_bytes(payload, "big")
        elif ident == 0xE7:  # Cluster Timecode
            cluster = int.from_bytes(payload, "big")
        elif ident in (0xA3, 0xA1):  # SimpleBlock, Block
            track = _vint(payload, 0, keep_marker=False)
            if track is not None and len(payload) >= track[1] + 2:
                relative = int.from_bytes(payload[track[1] : track[1] + 2], "big", signed=True)
                latest = max(latest, (cluster + relative) * scale / 1e9)
        offset = start + size


def media_seconds(data: bytes) -> float:
    """The end of the last video packet of a complete stream, by PyAV, in seconds."""
    import io

    import av

    latest = 0.0
    with av.open(io.BytesIO(data), mode="r") as media:
        stream = media.streams.video[0]
        assert stream.time_base is not None
        for packet in media.demux(stream):
            if packet.pts is not None:
                end = packet.pts + (packet.duration or 0)
                latest = max(latest, float(end * stream.time_base))
    return latest


def mp4_first_fragment_end(head: bytes) -> int | None:
    """Where the first ``mdat`` of an MP4 stream ends, once its box header is in ``head``."""
    offset = 0
    while offset + 8 <= len(head):
        size, kind = struct.unpack_from(">I4s", head, offset)
        if size == 1:
            if offset + 16 > len(head):
                return None
            size = struct.unpack_from(">Q", head, offset + 8)[0]
        if size < 8:
            return None
        if kind == b"mdat":
            return int(offset + size)
        offset += size
    return None


async def fetch(
    port: int,
    path: str,
    token: str,
    *,
    first_byte_only: bool = False,
    cut_off_at: float | None = None,
    read_for: float | None = None,
    keep_body: bool = False,
) -> Fetch:
    """GET ``path`` on a fresh connection: the whole body, or up to its first byte, or
    up to ``cut_off_at`` (``time.perf_counter()``), or for ``read_for`` seconds after
    its first byte, whichever comes first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2 * READ_SIZE)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        started = time.perf_counter()
        writer.write(request.encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        result = Fetch(status, headers)
        if status != 200:
            result.body_bytes = len(await reader.read(4096))
            return result
        mp4 = headers.get("content-type") == "video/mp4"
        prefix = bytearray()
        kept = bytearray()
        fragment_end: int | None = None
        chunks = _body(reader, headers)
        try:
            async for data in chunks:
                now = time.perf_counter()
                if not result.body_bytes:
                    result.ttfb = now - started
                    if read_for is not None:
                        cut_off_at = now + read_for
                result.body_bytes += len(data)
                if keep_body:
                    kept += data
                result.elapsed = now - started
                if mp4 and result.first_fragment is None:
                    if fragment_end is None:
                        prefix += data[: 64 * 1024]
                        fragment_end = mp4_first_fragment_end(bytes(prefix))
                    if fragment_end is not None and result.body_bytes >= fragment_end:
                        result.first_fragment = now - started
                if first_byte_only or (cut_off_at is not None and now > cut_off_at):
                    break
            else:
                result.complete = True
                result.elapsed = time.perf_counter() - started
        finally:
            await chunks.aclose()
            result.body = bytes(kept)
        return result
    finally:
        writer.close()


async def get(port: int, path: str, token: str, **kwargs: Any) -> Fetch:
    return await asyncio.wait_for(fetch(port, path, token, **kwargs), REQUEST_TIMEOUT_S)


def expect(result: Fetch, what: str, mode: str | None = None, backend: str | None = None) -> None:
    """Raise when the app answered anything but 200 (with this mode and backend)."""
    if result.status != 200:
        raise RuntimeError(f"{what} answered {result.status}")
    if mode is not None and result.headers.get("x-stream-mode") != mode:
        raise RuntimeError(f"{what}: X-Stream-Mode {result.headers.get('x-stream-mode')!r}")
    if backend is not None and result.headers.get("x-stream-backend") != backend:
        raise RuntimeError(f"{what}: X-Stream-Backend {result.headers.get('x-stream-backend')!r}")


# --- results ------------------------------------------------------------------------------


@dataclass
class BackendRow:
    backend: str
    output: str
    ttfb: list[float]
    wall: float
    media_s: float  # of video it delivered
    complete: bool  # False: cut off, media_s from its last WebM block
    child_cpu: float
    web_cpu: float
    body_bytes: int
    first_fragment: float | None


@dataclass
class CapacityRow:
    stream: str
    clients: int
    speeds: list[float]  # × real time of each client that read it all
    cut_off: int  # clients cut off before the end
    cut_off_speed: float  # the speed below which a cut-off client is
    child_cores: float  # CPU of the server's children (ffmpeg) over the level, in cores
    web_cores: float  # of the uvicorn process itself
    client_cores: float  # of this process (the clients)
    megabytes_s: float  # all clients together
    failed: int = 0  # answers other than 200


@dataclass
class StreamsResult:
    nproc: int
    mkv: Clip
    webm: Clip
    ttfb: dict[str, list[float]] = field(default_factory=dict)
    primed_first_fragment: float | None = None
    backends: list[BackendRow] = field(default_factory=list)
    capacity: list[CapacityRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    webm_read_s: float = 0.0

    def render(self) -> str:
        return "\n\n".join(
            [self._render_ttfb(), self._render_backends(), self._render_capacity(), *self._tail()]
        )

    def _render_ttfb(self) -> str:
        names = list(self.ttfb)
        anchor = self.ttfb[names[0]]
        a50, a95 = percentile(anchor, 50), percentile(anchor, 95)
        rows = []
        for i, name in enumerate(names):
            samples = self.ttfb[name]
            p50, p95 = percentile(samples, 50), percentile(samples, 95)
            rows.append(
                [
                    name + (" (anchor)" if i == 0 else ""),
                    str(len(samples)),
                    f"{p50 * 1000:.1f}",
                    f"{p95 * 1000:.1f}",
                    f"{p50 / a50:.1f}x",
                    f"{p95 / a95:.1f}x",
                ]
            )
        header = ["request", "n", "p50 ms", "p95 ms", "p50/direct", "p95/direct"]
        intro = (
            f"Stream TTFB: request sent to first body byte, fresh connection each, closed "
            f"after it; MKV {self.mkv.duration:.0f} s 1280x720 H.264/AAC "
            f"{self.mkv.size / 1e6:.1f} MB, WebM {self.webm.duration:.0f} s 640x480 VP9/Opus"
        )
        out = f"{intro}\n{table(header, rows)}"
        if self.primed_first_fragment is not None:
            out += (
                f"\n(the whole WebM->mp4 360p run that filled the cache: its first fMP4 "
                f"fragment arrived after {self.primed_first_fragment * 1000:.0f} ms)"
            )
        return out

    def _render_backends(self) -> str:
        anchors = {row.output: row for row in self.backends if row.backend == "ffmpeg"}
        rows = []
        for row in self.backends:
            anchor = anchors[row.output]
            per_min = row.child_cpu / (row.media_s / 60)
            anchor_per_min = anchor.child_cpu / (anchor.media_s / 60)
            ttfb = median(row.ttfb)
            rows.append(
                [
                    row.backend + (" (anchor)" if row is anchor else ""),
                    row.output,
                    f"{ttfb * 1000:.0f}",
                    "-" if row.first_fragment is None else f"{row.first_fragment:.2f}",
                    f"{row.wall:.1f}" + ("" if row.complete else " (cut)"),
                    f"{row.media_s:.1f}",
                    f"{row.media_s / row.wall:.1f}x",
                    f"{per_min:.1f}",
                    f"{row.web_cpu / (row.media_s / 60):.2f}",
                    f"{row.body_bytes / 1e6:.1f}",
                    f"{ttfb / median(anchor.ttfb):.2f}x",
                    f"{per_min / anchor_per_min:.2f}x" if anchor_per_min else "-",
                ]
            )
        header = [
            "backend", "output", "TTFB p50 ms", "1st frag s", "read s", "video s", "speed",
            "child CPU s/min", "web CPU s/min", "MB", "TTFB/ffmpeg", "CPU/ffmpeg",
        ]  # fmt: skip
        intro = (
            f"Stream backends: the {self.mkv.duration:.0f} s MKV transcoded whole, once "
            f"each (a WebM for at most {self.webm_read_s:.0f} s after its first byte); video s "
            f"= the end of the last video frame it delivered; TTFB p50 of that run and "
            f"{len(self.backends[0].ttfb) - 1} requests closed after their first byte; CPU s "
            "per minute of video (child = ffmpeg/cvlc, web = uvicorn); 1st frag = the first "
            "fMP4 fragment arrived"
        )
        return f"{intro}\n{table(header, rows)}"

    def _render_capacity(self) -> str:
        rows = []
        alone: dict[str, float] = {}
        for row in self.capacity:
            done = f"{len(row.speeds)}/{row.clients}"
            if row.failed:
                done += f" ({row.failed} refused)"
            slowest = f"<{row.cut_off_speed:.2f}x" if row.cut_off else f"{min(row.speeds):.2f}x"
            med = f"{median(row.speeds):.2f}x" if row.speeds else "-"
            if not row.cut_off and row.speeds:
                alone.setdefault(row.stream, min(row.speeds))
            ratio = (
                f"{min(row.speeds) / alone[row.stream]:.2f}x"
                if row.speeds and not row.cut_off and row.stream in alone
                else "-"
            )
            rows.append(
                [
                    row.stream,
                    str(row.clients),
                    done,
                    slowest,
                    med,
                    f"{row.megabytes_s:.0f}",
                    f"{row.child_cores:.2f}",
                    f"{row.web_cores:.2f}",
                    f"{row.client_cores:.2f}",
                    ratio,
                ]
            )
        header = [
            "stream", "clients", "read whole", "slowest", "median", "MB/s",
            "ffmpeg cores", "web cores", "client cores", "slowest/1 client",
        ]  # fmt: skip
        intro = (
            f"Stream capacity: N clients at once, each reading the {self.mkv.duration:.0f} s "
            f"MKV whole at full speed; × real time = duration / time to read it all "
            f"(cut off after {CUT_OFF:.2f}x the duration); transcodes double until the "
            f"slowest falls behind; {self.nproc} CPUs"
        )
        return f"{intro}\n{table(header, rows)}"

    def _tail(self) -> list[str]:
        notes = [f"note: {note}" for note in self.notes] or ["no leaked process, no 5xx"]
        return ["\n".join([*notes, f"streams bench took {self.seconds:.0f} s"])]


# --- the runs -----------------------------------------------------------------------------


class Bench:
    def __init__(self, env: BenchEnv, plan: StreamsPlan, result: StreamsResult) -> None:
        self.env = env
        self.plan = plan
        self.result = result
        self.cache = Path(env.variables["VIDFLEET_DATA_DIR"]) / "cache"
        self.token = env.admin_token

    def clear(self, kind: str) -> None:
        shutil.rmtree(self.cache / kind, ignore_errors=True)

    async def ttfb(self, server: StreamServer) -> None:
        mkv, webm = self.result.mkv.id, self.result.webm.id
        kinds: list[tuple[str, str, str | None]] = [
            ("direct play GET /stream/{id}", f"/stream/{mkv}", None),
            ("remux MKV ?format=mp4", f"/stream/{mkv}?format=mp4", "remux"),
            (
                "transcode WebM ?format=mp4&quality=360p",
                f"/stream/{webm}?format=mp4&quality=360p",
                "transcode",
            ),
            ("transcode MKV ?format=webm", f"/stream/{mkv}?format=webm", "transcode"),
            ("HLS /hls/{id}/360p/0.ts, fresh cache", f"/hls/{mkv}/360p/0.ts", None),
        ]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in kinds}
        self.clear("streams")
        for _ in range(self.plan.ttfb_rounds):
            for name, path, mode in kinds:
                if path.startswith("/hls/"):
                    self.clear("hls")
                result = await get(server.port, path, self.token, first_byte_only=True)
                expect(result, name, mode)
                samples[name].append(result.ttfb)
                await reaped(server.pid, self.result.notes, name)
        # One whole run fills the cache; the same request is then a cache hit.
        cached = "cache hit (WebM ?format=mp4&quality=360p again)"
        path = kinds[2][1]
        whole = await get(server.port, path, self.token)
        expect(whole, "the whole WebM->mp4 360p", "transcode")
        self.result.primed_first_fragment = whole.first_fragment
        await reaped(server.pid, self.result.notes, "the whole WebM->mp4 360p")
        await self.wait_for_cache_entry()
        samples[cached] = []
        for _ in range(self.plan.ttfb_rounds):
            result = await get(server.port, path, self.token, first_byte_only=True)
            expect(result, cached, "cache")
            samples[cached].append(result.ttfb)
        self.result.ttfb = samples

    async def wait_for_cache_entry(self) -> None:
        deadline = time.monotonic() + REAP_TIMEOUT_S
        while not any((self.cache / "streams").glob("*/360p.mp4")):
            if time.monotonic() > deadline:
                self.result.notes.append("a whole transcode was not kept in the stream cache")
                return
            await asyncio.sleep(0.02)

    async def backends(self, servers: Sequence[StreamServer]) -> None:
        mkv = self.result.mkv
        outputs = [
            ("MKV -> webm", f"/stream/{mkv.id}?format=webm"),
            ("MKV -> mp4 360p", f"/stream/{mkv.id}?format=mp4&quality=360p"),
        ]
        names = {"ffmpeg": "ffmpeg", "vlc": "cvlc"}
        ttfb: dict[tuple[str, str], list[float]] = {
            (server.backend, output): [] for server in servers for output, _ in outputs
        }
        self.clear("streams")
        for _ in range(self.plan.backend_samples):
            for output, path in outputs:
                for server in servers:
                    what = f"{server.backend} {output}"
                    result = await get(server.port, path, self.token, first_byte_only=True)
                    expect(result, what, "transcode", names[server.backend])
                    ttfb[(server.backend, output)].append(result.ttfb)
                    await reaped(server.pid, self.result.notes, what)
        for output, path in outputs:
            for server in servers:
                what = f"the whole {server.backend} {output}"
                self.clear("streams")
                own, children = cpu_seconds(server.pid)
                webm = "webm" in output
                result = await get(
                    server.port,
                    path,
                    self.token,
                    read_for=self.plan.webm_read_s if webm else None,
                    keep_body=True,
                )
                expect(result, what, "transcode", names[server.backend])
                await reaped(server.pid, self.result.notes, what)
                own_after, children_after = cpu_seconds(server.pid)
                # What it delivered: VLC's fragmented MP4 leaves its last fragment out.
                if result.complete:
                    media_s = min(mkv.duration, media_seconds(result.body))
                else:
                    media_s = webm_media_seconds(result.body)
                if media_s <= 0:
                    raise RuntimeError(f"{what}: no media in {result.body_bytes} bytes")
                ttfb[(server.backend, output)].append(result.ttfb)
                self.result.backends.append(
                    BackendRow(
                        backend=server.backend,
                        output=output,
                        ttfb=ttfb[(server.backend, output)],
                        wall=result.elapsed,
                        media_s=media_s,
                        complete=result.complete,
                        child_cpu=children_after - children,
                        web_cpu=own_after - own,
                        body_bytes=result.body_bytes,
                        first_fragment=result.first_fragment,
                    )
                )

    async def level(
        self, server: StreamServer, stream: str, path: str, clients: int, *, transcode: bool
    ) -> CapacityRow:
        duration = self.result.mkv.duration
        self.clear("streams")
        await reaped(server.pid, self.result.notes, "the previous level")
        own, children = cpu_seconds(server.pid)
        client = sum(os.times()[:2])
        started = time.perf_counter()
        cut_off_at = started + duration * CUT_OFF
        results = await asyncio.gather(
            *(get(server.port, path, self.token, cut_off_at=cut_off_at) for _ in range(clients))
        )
        wall = time.perf_counter() - started
        client_after = sum(os.times()[:2])
        await reaped(server.pid, self.result.notes, f"{clients} x {stream}")
        own_after, children_after = cpu_seconds(server.pid)
        row = CapacityRow(
            stream=stream,
            clients=clients,
            speeds=[],
            cut_off=0,
            cut_off_speed=1 / CUT_OFF,
            child_cores=(children_after - children) / wall,
            web_cores=(own_after - own) / wall,
            client_cores=(client_after - client) / wall,
            megabytes_s=sum(r.body_bytes for r in results) / wall / 1e6,
        )
        for result in results:
            if result.status != 200:
                row.failed += 1
                if result.status >= 500:
                    self.result.notes.append(
                        f"{clients} x {stream}: a client got {result.status} "
                        f"({result.headers.get('content-type', '')})"
                    )
                continue
            expect(result, stream, "transcode" if transcode else None)
            if not result.complete:
                row.cut_off += 1
                continue
            if transcode:
                row.speeds.append(duration / result.elapsed)
            else:
                row.speeds.append(
                    result.body_bytes / result.elapsed / (self.result.mkv.size / duration)
                )
        return row

    async def capacity(self, server: StreamServer) -> None:
        mkv = self.result.mkv.id
        for clients in self.plan.direct_levels:
            row = await self.level(
                server, "direct play", f"/stream/{mkv}", clients, transcode=False
            )
            self.result.capacity.append(row)
        stream = "transcode ?format=mp4&quality=360p"
        for clients in self.plan.capacity_levels:
            path = f"/stream/{mkv}?format=mp4&quality=360p"
            row = await self.level(server, stream, path, clients, transcode=True)
            self.result.capacity.append(row)
            if row.cut_off or row.failed or min(row.speeds) < 1.0:
                break

    async def leftovers(self, servers: Sequence[StreamServer]) -> None:
        """Every session must be gone once its stream ended (the registry is fleet-wide,
        in the one Redis, so one look covers both servers)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=servers[0].url, headers=headers) as client:
            response = await client.get("/api/system/streams")
        if response.status_code != 200:
            self.result.notes.append(f"/api/system/streams answered {response.status_code}")
        elif live := response.json().get("streams"):
            self.result.notes.append(f"sessions left after every stream ended: {live}")


def run_streams(env: BenchEnv, *, quick: bool) -> StreamsResult:
    """Make the media, start an ffmpeg and a vlc server, run the three measurements."""
    plan = QUICK if quick else FULL
    started = time.monotonic()
    media_root = Path(env.variables["VIDFLEET_DATA_DIR"]) / "media"
    servers = [StreamServer(env, "ffmpeg"), StreamServer(env, "vlc")]
    try:
        for server in servers:
            server.start()
        mkv_path, webm_path = make_media(media_root, plan)
        result = StreamsResult(
            nproc=os.cpu_count() or 1,
            mkv=add_to_library(env.database_url, media_root, mkv_path, "mkv"),
            webm=add_to_library(env.database_url, media_root, webm_path, "webm"),
            webm_read_s=plan.webm_read_s,
        )
        bench = Bench(env, plan, result)

        async def drive() -> None:
            await bench.ttfb(servers[0])
            await bench.backends(servers)
            await bench.capacity(servers[0])
            await bench.leftovers(servers)

        asyncio.run(drive())
    finally:
        for server in servers:
            server.stop()
    result.seconds = time.monotonic() - started
    return result
