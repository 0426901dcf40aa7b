"""The VLC backend's command line: ``cvlc`` remuxing or transcoding a stream to stdout,
the same :class:`media.transcode.StreamPlan` the FFmpeg backend follows.

VLC reads the file from its stdin (``fd://0``): it runs as an unprivileged user where
the web runs as root (it refuses root), and that user need not be able to open the
library, whose folders only the web's user may read. Its encoders are VLC's own:
H.264 (x264) with AAC into MP4, VP8 with Vorbis into WebM (VLC has no VP9/Opus
encoder path to stdout here). VLC's fragmented MP4 ends about 1.5 s short of the
source (its last fragment is not written); prefer FFmpeg, the default, for MP4.
"""

from __future__ import annotations

import shutil
from functools import lru_cache

from media.mediainfo import MediaInfo
from media.transcode import BITRATES, StreamPlan

#: How a root web runs cvlc: as nobody, without root's groups (util-linux's setpriv).
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


@lru_cache(maxsize=1)
def cvlc_path() -> str | None:
    return shutil.which("cvlc")


def vlc_argv(cvlc: str, plan: StreamPlan, info: MediaInfo, *, as_root: bool) -> list[str]:
    """The command that writes ``plan``'s stream to stdout, reading the file on stdin;
    ``as_root``: the caller is root, and cvlc must not be (it refuses to run)."""
    argv = [*(AS_NOBODY if as_root else []), cvlc, "-I", "dummy", "-q", "--no-stats"]
    argv += ["--no-sout-all", "--sout-keep"]
    if plan.start:
        argv.append(f"--start-time={plan.start:.3f}")
    # mp4frag: VLC's plain mp4 muxer needs to seek back, which stdout cannot. Measured
    # (VLC 3.0): mp4frag leaves out the last fragment, about 1.5 s; WebM is complete.
    mux = "mp4frag" if plan.format == "mp4" else "webm"
    output = f"std{{access=file,mux={mux},dst=-}}"
    if plan.mode == "remux":
        chain = f"#{output}"
    else:
        height = plan.height or info.height or 720
        bitrate = BITRATES.get(height, 2_000)
        # A keyframe every 50 frames (2 s at 25 fps), as FFmpeg's transcodes have.
        video = (
            "vcodec=h264,venc=x264{preset=veryfast,keyint=50}"
            if plan.format == "mp4"
            else "vcodec=VP80"
        )
        audio = "acodec=mp4a,ab=128" if plan.format == "mp4" else "acodec=vorb,ab=128"
        scale = f",height={plan.height}" if plan.height else ""
        chain = f"#transcode{{{video},vb={bitrate}{scale},{audio},channels=2}}:{output}"
    return [*argv, "fd://0", "--sout", chain, "vlc://quit"]
