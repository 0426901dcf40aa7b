"""``VIDFLEET_STREAM_BACKEND=vlc``: cvlc makes the stream, under the same sessions, caps
and cleanup as FFmpeg (real cvlc, run as an unprivileged user when the tests are root)."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from typing import Any

import av
import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import api_client, child_processes, live_server, wait_for
from tests.web.test_transcode import add_to_library, long_mkv, mkv_h264, webm_vp9

CVLC = shutil.which("cvlc")
# .ci/run installs VLC and sets this, so CI can never skip these.
REQUIRED = os.environ.get("VIDFLEET_TEST_VLC") == "required"

pytestmark = [
    pytest.mark.skipif(
        CVLC is None and not REQUIRED,
        reason="VLC is not installed (apt-get install vlc-bin vlc-plugin-base); CI runs this",
    ),
    pytest.mark.serial,  # cvlc must stop within two seconds of its client leaving
]


def vlc_children() -> list[str]:
    """The live VLC processes this process (the server's) started."""
    return [command for command in child_processes(os.getpid()) if "vlc" in command]


@pytest.fixture
def vlc_api(settings: Any) -> Any:
    from web.app import create_app

    assert CVLC, "VIDFLEET_TEST_VLC=required but no cvlc on PATH"
    app = create_app(dataclasses.replace(settings, stream_backend="vlc"))
    with live_server(app) as server, api_client(server.url, ADMIN_TOKEN) as api:
        yield api


def test_vlc_transcodes_vp9_to_h264_mp4_at_360p(vlc_api: httpx.Client, settings: Any) -> None:
    video = add_to_library(settings, "v/vp9.webm", webm_vp9)
    response = vlc_api.get(f"/stream/{video['id']}", params={"format": "mp4", "quality": "360p"})
    assert response.status_code == 200
    assert response.headers["x-stream-backend"] == "cvlc"
    assert response.headers["x-stream-mode"] == "transcode"
    with av.open(io.BytesIO(response.content)) as out:
        picture = out.streams.video[0].codec_context
        assert (picture.name, picture.height) == ("h264", 360)
        assert out.streams.audio[0].codec_context.name == "aac"
    assert not vlc_children()


def test_vlc_remuxes_h264_into_mp4_and_transcodes_it_into_webm(
    vlc_api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "v/h264.mkv", mkv_h264)
    remuxed = vlc_api.get(f"/stream/{video['id']}", params={"format": "mp4"})
    assert remuxed.headers["x-stream-mode"] == "remux"
    with av.open(io.BytesIO(remuxed.content)) as out:
        assert out.streams.video[0].codec_context.name == "h264"
        copied = sum(1 for _ in out.decode(out.streams.video[0]))
    # VLC's fragmented MP4 leaves out its last fragment (about 1.5 s): media/vlc.py.
    assert video["frames"] - 50 <= copied <= video["frames"]
    webm = vlc_api.get(f"/stream/{video['id']}", params={"format": "webm"})
    assert webm.headers["content-type"] == "video/webm"
    with av.open(io.BytesIO(webm.content)) as out:
        assert out.streams.video[0].codec_context.name == "vp8"
        frames = sum(1 for _ in out.decode(out.streams.video[0]))
    assert abs(frames - video["frames"]) <= 5


def test_a_client_that_leaves_a_vlc_stream_leaves_no_vlc(
    vlc_api: httpx.Client, settings: Any
) -> None:
    video = add_to_library(settings, "v/leave.mkv", long_mkv)
    with vlc_api.stream("GET", f"/stream/{video['id']}", params={"format": "webm"}) as response:
        next(response.iter_bytes())
        assert vlc_children()
        listed = vlc_api.get("/api/system/streams").json()["streams"]
        assert [s["backend"] for s in listed] == ["vlc"]
    wait_for(lambda: not vlc_children(), timeout=2, what="cvlc to stop after the client left")
