"""The analysis on files that are not what they claim: each is refused as not media,
at once, and a playlist never makes FFmpeg read another file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from media import quality
from media.analysis import analyze
from media.errors import NotMedia
from media.ffmpeg import ffmpeg_path
from media.keyframes import sample_keyframes
from media.probe import probe_details
from media.quality import measure_audio

HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
CONCAT = b"ffconcat version 1.0\nfile 'file:/etc/passwd'\nfile '/etc/passwd'\n"


def untrusted_file(tmp_path: Path, case: str, sharp_clip: Path) -> Path:
    contents = {
        "empty.mp4": b"",
        "text.mp4": b"this is not a video\n" * 100,
        "playlist.m3u8": HLS,
        "playlist.mp4": HLS,
        "concat.ffconcat": CONCAT,
        "concat.mp4": CONCAT,
        # The header of a fast-start mp4 without a byte of its pictures.
        "truncated.mp4": sharp_clip.read_bytes()[:4000],
    }
    path = tmp_path / case
    path.write_bytes(contents[case])
    return path


CASES = [
    "empty.mp4", "text.mp4", "playlist.m3u8", "playlist.mp4", "concat.ffconcat",
    "concat.mp4", "truncated.mp4",
]  # fmt: skip
STEPS: dict[str, Callable[[Path, Path], Any]] = {
    "analyze": lambda path, out: analyze(str(path), str(out), ffmpeg_path()),
    "sample_keyframes": lambda path, out: sample_keyframes(path),
    "measure_audio": lambda path, out: measure_audio(path, ffmpeg_path(), timeout=10),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("step", list(STEPS))
def test_untrusted_files_are_not_media_at_once(
    tmp_path: Path, sharp_clip: Path, case: str, step: str
) -> None:
    path = untrusted_file(tmp_path, case, sharp_clip)
    started = time.monotonic()

    with pytest.raises(NotMedia) as refused:
        STEPS[step](path, tmp_path / "thumbs")

    assert time.monotonic() - started < 5
    assert "root:" not in refused.value.message
    assert not refused.value.retryable
    assert not (tmp_path / "thumbs").exists()


@pytest.mark.parametrize("case", [c for c in CASES if c != "truncated.mp4"])
def test_the_probe_refuses_them_too(tmp_path: Path, sharp_clip: Path, case: str) -> None:
    with pytest.raises(NotMedia):
        probe_details(untrusted_file(tmp_path, case, sharp_clip))


def test_ffmpeg_reads_only_the_local_file_with_known_demuxers(
    sharp_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real = quality.run_to_end

    def spy(argv: list[str], *, timeout: float) -> tuple[int, str]:
        seen.append(argv)
        return real(argv, timeout=timeout)

    monkeypatch.setattr(quality, "run_to_end", spy)
    measure_audio(sharp_clip, ffmpeg_path(), timeout=30)

    (argv,) = seen
    source = argv.index(f"file:{sharp_clip}")
    options = dict(zip(argv[1:source:], argv[2:source:], strict=False))
    assert options["-protocol_whitelist"] == "file"
    assert "mov" in options["-format_whitelist"].split(",")
    assert "hls" not in options["-format_whitelist"] and "concat" not in argv


def test_a_stuck_loudness_measure_is_killed_at_its_timeout(
    sharp_clip: Path, tmp_path: Path
) -> None:
    # A "ffmpeg" that never ends: the timeout must stop it (and say so, retryably).
    stuck = tmp_path / "ffmpeg"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    started = time.monotonic()

    with pytest.raises(quality.MediaError) as failed:
        measure_audio(sharp_clip, str(stuck), timeout=0.5)

    assert failed.value.code == "timeout" and failed.value.retryable
    assert time.monotonic() - started < 5
