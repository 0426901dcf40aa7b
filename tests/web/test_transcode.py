"""``GET /stream/{id}?quality=&format=&start=``: remux when the codecs fit, transcode
otherwise, seek on the input, and never leave an FFmpeg behind (real ffmpeg, real
uvicorn, media made here)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from media.ffmpeg import ffmpeg_path
from media.priority import niceness
from media.probe import probe_file
from media.stream_cache import hls_folder, source_key, stream_entry
from tests.conftest import ADMIN_TOKEN
from tests.media.test_priority import autogroup_nice
from tests.support import (
    api_client,
    child_processes,
    descendants,
    library_row,
    live_server,
    wait_for,
)
from tests.web.test_requests import assert_error

# Each test checks that FFmpeg stops within two seconds of its client leaving: run
# alone (make test), not beside other tests on the same cores.
pytestmark = pytest.mark.serial

GOP_S = 2  # the test files' keyframe interval
# How long an FFmpeg may take to be gone after its client left: SIGTERM, a second's grace,
# SIGKILL (web/transcode.py STOP_GRACE_S) -- at niceness 19 (VIDFLEET_MEDIA_NICE), on a
# machine the other test process keeps busy, its exit itself can wait for the CPU. The
# wait ends as soon as it is gone.
FFMPEG_EXIT_S = 10


def encode(path: Path, *, seconds: int, size: str, video: list[str], audio: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            *video, "-g", str(25 * GOP_S), *audio, "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def add_to_library(settings: Any, relative: str, make: Any) -> dict[str, Any]:
    """Make a file under the media root, probe it and give it a library row."""
    path = make(settings.media_root / relative)
    video_id = library_row(settings, relative)
    return {
        "id": video_id,
        "frames": frame_count(path),
        "duration": probe_file(path).duration,
        "key": source_key(video_id, path.stat()),
    }


def frame_count(source: Path | bytes) -> int:
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as media:
        return sum(1 for _ in media.demux(media.streams.video[0]) if _.size)


def mkv_h264(path: Path, seconds: int = 8, size: str = "320x240", rate: str = "300k") -> Path:
    return encode(
        path, seconds=seconds, size=size,
        video=["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", rate],
        audio=["-c:a", "aac"],
    )  # fmt: skip


def long_mkv(path: Path) -> Path:
    """40 s at 720p: a transcode of it outlasts a test that holds one open, and its
    output is more than the socket buffers take, so it cannot finish unread."""
    return mkv_h264(path, seconds=40, size="1280x720", rate="4M")


def webm_vp9(path: Path) -> Path:
    return encode(
        path, seconds=3, size="640x480",
        video=["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"],
        audio=["-c:a", "libopus"],
    )  # fmt: skip


def ffmpeg_children(parent: int | None = None) -> list[str]:
    """The command lines of the FFmpeg processes ``parent`` (by default this process,
    where the ``server`` fixture runs) started."""
    commands = child_processes(parent or os.getpid())
    return [command for command in commands if "ffmpeg" in command.split(" ", 1)[0]]


def ffmpeg_pids() -> list[int]:
    """The pids of the FFmpeg processes below this process."""
    pids = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):  # gone meanwhile
            if Path(f"/proc/{pid}/comm").read_text().startswith("ffmpeg"):
                pids.append(pid)
    return pids


def test_an_mkv_with_h264_and_aac_asked_as_mp4_is_remuxed(api: httpx.Client, settings: Any) -> None:
    video = add_to_library(settings, "a/remux.mkv", long_mkv)  # still running while unread
    with api.stream("GET", f"/stream/{video['id']}", params={"format": "mp4"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["x-stream-mode"] == "remux"
        running = ffmpeg_children()  # while it streams
        body = response.read()
    assert len(running) == 1 and " -c copy " in running[0], running
    with av.open(io.BytesIO(body)) as out:
        assert out.streams.video[0].codec_context.name == "h264"
        assert out.streams.audio[0].codec_context.name == "aac"
    assert abs(frame_count(body) - video["frames"]) <= 1
    wait_for(lambda: not ffmpeg_children(), timeout=FFMPEG_EXIT_S, what="ffmpeg to be gone")


def test_a_vp9_opus_webm_asked_as_mp4_at_360p_comes_out_h264_at_height_360(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/vp9.webm", webm_vp9)
    response = api.get(f"/stream/{video['id']}", params={"format": "mp4", "quality": "360p"})
    assert response.status_code == 200
    assert response.headers["x-stream-mode"] == "transcode"
    with av.open(io.BytesIO(response.content)) as out:
        picture = out.streams.video[0].codec_context
        assert (picture.name, picture.height) == ("h264", 360)
        assert out.streams.audio[0].codec_context.name == "aac"
        keyframes = [p for p in out.demux(out.streams.video[0]) if p.is_keyframe]
    assert len(keyframes) >= 2  # every 2 s, so a player's first fragment comes soon


def test_a_quality_above_the_source_gives_the_source_height(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/small.webm", webm_vp9)
    response = api.get(f"/stream/{video['id']}", params={"format": "webm", "quality": "1080p"})
    assert response.status_code == 200
    assert response.headers["x-stream-mode"] == "remux"  # VP9/Opus already suit webm
    with av.open(io.BytesIO(response.content)) as out:
        assert out.streams.video[0].codec_context.height == 480


def test_start_seeks_on_the_input_to_within_one_gop(api: httpx.Client, settings: Any) -> None:
    video = add_to_library(settings, "a/long.mkv", lambda p: mkv_h264(p, seconds=40))
    response = api.get(f"/stream/{video['id']}", params={"format": "mp4", "start": "30"})
    assert response.status_code == 200
    with av.open(io.BytesIO(response.content)) as out:
        stream = out.streams.video[0]
        frames = [packet for packet in out.demux(stream) if packet.size]
    seconds = len(frames) / 25
    # Copying starts at the keyframe at or before 30 s: 10 s of video, plus at most a GOP.
    assert 10 - 0.5 <= seconds <= 10 + GOP_S + 0.5, seconds


def test_a_client_that_leaves_mid_transcode_leaves_no_ffmpeg(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/leave.mkv", long_mkv)
    # VP9 at source size: far slower than the 40 s file could be sent.
    with api.stream("GET", f"/stream/{video['id']}", params={"format": "webm"}) as response:
        assert response.headers["x-stream-mode"] == "transcode"
        next(response.iter_bytes())
        (pid,) = ffmpeg_pids()
        # It yields the CPU to the web: nicer, and so is its session's autogroup.
        assert settings.media_nice == 10  # tests/conftest.py
        assert niceness(pid) == 10
        assert autogroup_nice(pid) in (10, None)  # None: a kernel without autogroups
    wait_for(
        lambda: not ffmpeg_children(),
        timeout=FFMPEG_EXIT_S,
        what="ffmpeg to stop after the client left",
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"quality": "9999p"}, "quality"),
        ({"format": "exe"}, "format"),
        ({"start": "-5"}, "start"),
        ({"start": "abc"}, "start"),
        ({"start": "nan"}, "start"),
        ({"start": "1e9"}, "start"),
    ],
)
def test_bad_stream_parameters_are_a_400_naming_the_field(
    api: httpx.Client, settings: Any, params: dict[str, str], field: str
) -> None:
    video = add_to_library(settings, "a/bad.mkv", mkv_h264)
    assert_error(api.get(f"/stream/{video['id']}", params=params), 400, field)
    assert not ffmpeg_children()


def test_a_transcode_needs_a_credential_and_an_existing_video(
    server: Any, api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/auth.mkv", mkv_h264)
    anonymous = httpx.get(f"{server.url}/stream/{video['id']}?format=webm")
    assert_error(anonymous, 401)
    assert_error(api.get("/stream/999999", params={"format": "mp4"}), 404)
    assert not ffmpeg_children()


def test_a_web_process_that_gets_sigterm_mid_transcode_leaves_no_ffmpeg(
    start_web: Any, settings: Any
) -> None:
    video = add_to_library(settings, "a/term.mkv", long_mkv)
    process, port = start_web()
    url = f"http://127.0.0.1:{port}/stream/{video['id']}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.stream("GET", url, params={"format": "webm"}, headers=headers) as response:
        assert response.headers["x-stream-mode"] == "transcode"
        next(response.iter_bytes())
        assert ffmpeg_children(process.pid)
        process.send_signal(signal.SIGTERM)
        wait_for(
            lambda: not ffmpeg_children(process.pid), timeout=FFMPEG_EXIT_S, what="ffmpeg to stop"
        )
    process.wait(10)


@pytest.fixture
def capped(settings: Any) -> Any:
    """A server whose fleet has one transcode slot, whose slots lapse 3 s after their
    holder's last renewal."""
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, max_transcodes=1, heartbeat_timeout=3))
    with live_server(app) as server:
        yield server


def test_the_transcode_cap_answers_503_with_retry_after_and_admits_when_a_slot_frees(
    capped: Any, settings: Any
) -> None:
    video = add_to_library(settings, "a/cap.mkv", long_mkv)
    with api_client(capped.url, ADMIN_TOKEN) as api:
        url, params = f"/stream/{video['id']}", {"format": "webm"}
        with api.stream("GET", url, params=params) as first:
            next(first.iter_bytes())
            refused = api.get(url, params=params)
            assert_error(refused, 503)
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) > 0
            assert len(ffmpeg_children()) == 1  # the refused one started none
            listed = api.get("/api/system/streams").json()
            assert [(s["video_id"], s["mode"], s["format"]) for s in listed["streams"]] == [
                (video["id"], "transcode", "webm")
            ]
            assert listed["streams"][0]["ttfb_ms"] > 0
        wait_for(
            lambda: not ffmpeg_children(), timeout=FFMPEG_EXIT_S, what="the first ffmpeg to stop"
        )
        # Its slot is given back once its handler has reaped it, a moment after.
        wait_for(
            lambda: not api.get("/api/system/streams").json()["streams"],
            timeout=FFMPEG_EXIT_S,
            what="the first stream's slot to be free",
        )
        with api.stream("GET", url, params=params) as again:
            assert again.status_code == 200
        assert api.get(f"/stream/{video['id']}").status_code == 200  # direct play: no slot
    wait_for(lambda: not ffmpeg_children(), timeout=FFMPEG_EXIT_S, what="ffmpeg to stop")


def test_one_client_is_held_to_its_own_cap(api: httpx.Client, settings: Any, app: Any) -> None:
    video = add_to_library(settings, "a/mine.mkv", long_mkv)
    app.state.streams.per_client = 1
    with api.stream("GET", f"/stream/{video['id']}", params={"format": "webm"}) as first:
        next(first.iter_bytes())
        refused = api.get(f"/stream/{video['id']}", params={"format": "webm"})
        assert_error(refused, 503)
        assert "this client" in refused.json()["error"]["message"]
    wait_for(lambda: not ffmpeg_children(), timeout=FFMPEG_EXIT_S, what="ffmpeg to stop")


def test_the_streams_list_is_for_the_admin_only(server: Any) -> None:
    from tests.conftest import VIEWER_TOKEN

    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert_error(viewer.get("/api/system/streams"), 403)


def test_the_slots_of_a_sigkilled_web_process_free_within_the_ttl(
    start_web: Any, capped: Any, settings: Any
) -> None:
    video = add_to_library(settings, "a/killed.mkv", long_mkv)
    process, port = start_web(VIDFLEET_MAX_TRANSCODES="1", VIDFLEET_HEARTBEAT_TIMEOUT="3")
    url = f"http://127.0.0.1:{port}/stream/{video['id']}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        api_client(capped.url, ADMIN_TOKEN) as api,
        httpx.stream("GET", url, params={"format": "webm"}, headers=headers) as held,
    ):
        next(held.iter_bytes())
        assert_error(api.get(f"/stream/{video['id']}", params={"format": "webm"}), 503)
        process.kill()
        process.wait()
        killed_at = time.monotonic()

        def admitted() -> bool:
            with api.stream("GET", f"/stream/{video['id']}", params={"format": "webm"}) as r:
                return r.status_code == 200

        # Within the TTL, plus room for a busy machine (the other test process).
        wait_for(admitted, timeout=3 + 5, interval=0.2, what="the dead holder's slot")
        assert time.monotonic() - killed_at <= 3 + 4


def test_an_hls_playlist_is_valid_and_segment_5_is_made_alone_and_starts_on_time(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/hls.mkv", lambda p: mkv_h264(p, seconds=40))
    listing = api.get(f"/hls/{video['id']}/360p/index.m3u8")
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    lines = listing.text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    lengths = [float(line[8:].rstrip(",")) for line in lines if line.startswith("#EXTINF:")]
    names = [line for line in lines if not line.startswith("#")]
    assert names == [f"{n}.ts" for n in range(len(lengths))]
    assert abs(sum(lengths) - video["duration"]) < 0.05
    target = int(next(line for line in lines if line.startswith("#EXT-X-TARGETDURATION"))[22:])
    assert max(lengths) <= target
    segment_start = sum(lengths[:5])

    made = api.get(f"/hls/{video['id']}/360p/5.ts")
    assert made.status_code == 200
    assert made.headers["content-type"] == "video/mp2t"
    with av.open(io.BytesIO(made.content), format="mpegts") as ts:
        stream = ts.streams.video[0]
        assert stream.codec_context.height == 240  # 360p asked of a 240-line source
        frames = list(ts.decode(stream))
        first = float(frames[0].pts * stream.time_base)  # PyAV 18.1.1: only while open
    assert abs(first - segment_start) < 0.5, (first, segment_start)
    assert abs(len(frames) - lengths[5] * 25) <= 2
    cache = hls_folder(settings.stream_cache_dir, video["key"], "360p")
    assert sorted(p.name for p in cache.iterdir()) == ["5.ts"]  # 0-4 were never made

    # Made once: later requests are the cached file, with Range.
    (cache / "5.ts").write_bytes(b"cached segment")
    assert api.get(f"/hls/{video['id']}/360p/5.ts").content == b"cached segment"
    ranged = api.get(f"/hls/{video['id']}/360p/5.ts", headers={"Range": "bytes=7-"})
    assert (ranged.status_code, ranged.content) == (206, b"segment")
    assert not ffmpeg_children()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("9999p/index.m3u8", 400),
        ("9999p/1.ts", 400),
        ("360p/99.ts", 404),
        ("360p/5.exe", 404),
        ("360p/-1.ts", 404),
        ("360p/..%2F..%2Fvidfleet.db", 404),
        ("360p/1.ts.part", 404),
    ],
)
def test_bad_hls_paths_are_a_4xx(api: httpx.Client, settings: Any, path: str, status: int) -> None:
    video = add_to_library(settings, "a/hlsbad.mkv", mkv_h264)
    assert_error(api.get(f"/hls/{video['id']}/{path}"), status)
    assert not ffmpeg_children()


def test_hls_needs_a_credential(server: Any, settings: Any) -> None:
    video = add_to_library(settings, "a/hlsauth.mkv", mkv_h264)
    for path in ("360p/index.m3u8", "360p/0.ts"):
        assert_error(httpx.get(f"{server.url}/hls/{video['id']}/{path}"), 401)
    assert_error(httpx.get(f"{server.url}/hls/999999/360p/index.m3u8"), 401)


def test_a_finished_transcode_is_kept_and_served_from_the_cache_with_range(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/cache.mkv", mkv_h264)
    url, params = f"/stream/{video['id']}", {"format": "webm"}
    first = api.get(url, params=params)
    assert first.headers["x-stream-mode"] == "transcode"
    entry = stream_entry(settings.stream_cache_dir, video["key"], "source", "webm")
    wait_for(entry.is_file, timeout=5, what="the finished transcode in the cache")
    assert entry.read_bytes() == first.content
    again = api.get(url, params=params)
    assert (again.headers["x-stream-mode"], again.content) == ("cache", first.content)
    ranged = api.get(url, params=params, headers={"Range": "bytes=100-199"})
    assert (ranged.status_code, ranged.content) == (206, first.content[100:200])
    # A stream from elsewhere than the start is never served from (or kept in) the cache.
    later = api.get(url, params={**params, "start": "2"})
    assert later.headers["x-stream-mode"] == "transcode"
    assert sorted(p.name for p in entry.parent.iterdir()) == ["source.webm"]
    # A session is counted when its handler closes it, a moment after its last byte.
    totals: dict[str, Any] = {}

    def both_counted() -> bool:
        totals.update(api.get("/api/system/streams").json()["this_process"])
        return bool(totals["sessions_transcode"] == 2)

    wait_for(both_counted, timeout=FFMPEG_EXIT_S, what="both transcode sessions to be counted")
    assert (totals["cache_hits"], totals["cache_misses"]) == (2, 1)
    assert totals["bytes_sent"] >= len(first.content) + len(later.content)


def test_a_transcode_the_client_left_is_not_kept(api: httpx.Client, settings: Any) -> None:
    video = add_to_library(settings, "a/partial.mkv", long_mkv)
    with api.stream("GET", f"/stream/{video['id']}", params={"format": "webm"}) as response:
        next(response.iter_bytes())
    wait_for(lambda: not ffmpeg_children(), timeout=FFMPEG_EXIT_S, what="ffmpeg to stop")
    folder = stream_entry(settings.stream_cache_dir, video["key"], "source", "webm").parent
    wait_for(
        lambda: not any(folder.iterdir()), timeout=FFMPEG_EXIT_S, what="the partial copy to go"
    )


def test_a_library_file_ffmpeg_cannot_read_is_a_422_and_leaves_nothing(
    api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "a/good.mkv", mkv_h264)
    # Overwritten after its row was made (the probe was fine then): no media left in it.
    (settings.media_root / "a" / "good.mkv").write_bytes(os.urandom(100_000))
    for params in ({"format": "webm"}, {"format": "mp4", "quality": "360p", "start": "1"}):
        assert_error(api.get(f"/stream/{video['id']}", params=params), 422)
    assert_error(api.get(f"/hls/{video['id']}/360p/0.ts"), 422)
    assert not ffmpeg_children()
    streams = api.get("/api/system/streams").json()
    assert streams["streams"] == [] and streams["this_process"]["failures"] == 3
