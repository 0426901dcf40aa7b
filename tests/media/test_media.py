"""media/: URL checks, library paths, probing and downloading with real ffmpeg/yt-dlp."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from media.download import DownloadProgress, download_video
from media.errors import Cancelled, MediaError, NotMedia, UrlRejected
from media.library import library_path, stage_in_library
from media.probe import probe_file
from media.urls import check_url


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a", "javascript:alert(1)", "", "http://",
     "http://exa mple.com/", "http://example.com:99999/", "x" * 3000, None, 42],
)  # fmt: skip
def test_check_url_refuses_what_we_must_not_fetch(url: Any) -> None:
    with pytest.raises(UrlRejected):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/a", "http://localhost/a", "http://[::1]/a", "http://10.1.2.3/a",
     "http://192.168.0.1/a", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/a",
     "http://0.0.0.0/a"],
)  # fmt: skip
def test_private_hosts_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UrlRejected, match="private"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


def test_library_paths_are_restricted_and_keep_the_id() -> None:
    path = library_path(
        artist="Sigur Rós / Live", title='Hoppípolla: "Live"?', video_id="a1", ext="mp4"
    )
    assert path == PurePosixPath("Sigur_Ros_Live/Hoppipolla_-_Live_[a1].mp4")
    sneaky = library_path(artist="..", title="../../etc/passwd", video_id="../x", ext="mp4")
    assert ".." not in sneaky.parts
    assert (
        library_path(artist=None, title="t", video_id="i", ext="mkv").parts[0] == "Unknown_Artist"
    )


def test_a_staged_file_reaches_the_library_only_when_published(tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(b"data")
    root = tmp_path / "media"
    staged = stage_in_library(source, root, PurePosixPath("A/b.mp4"))
    assert staged.final == root / "A" / "b.mp4" and not staged.final.exists()
    assert staged.partial.parent == staged.final.parent and not source.exists()
    staged.publish()
    assert staged.final.read_bytes() == b"data" and not staged.partial.exists()
    source.write_bytes(b"data")
    with pytest.raises(ValueError):
        stage_in_library(source, root, PurePosixPath("../outside.mp4"))


def test_probe_reads_the_streams(sample_video: Path) -> None:
    info = probe_file(sample_video)
    assert (info.width, info.height, info.vcodec, info.acodec) == (640, 360, "h264", "aac")
    assert info.duration is not None and 2.5 < info.duration < 3.5


def test_probe_rejects_a_file_that_is_not_media(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(NotMedia):
        probe_file(text)


def test_download_reports_non_decreasing_progress(tmp_path: Path, media_server: Any) -> None:
    updates: list[DownloadProgress] = []
    result = download_video(
        media_server.url("/slow/clip.mp4"), tmp_path, allow_generic=True, on_progress=updates.append
    )
    assert result.video_id == "clip" and result.extractor == "generic"
    assert result.path.parent == tmp_path and result.path.is_file()
    fractions = [u.fraction for u in updates if u.fraction is not None]
    assert len(fractions) >= 2 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {u.total_bytes for u in updates} - {None} == {result.path.stat().st_size}


def test_a_404_is_a_permanent_error(tmp_path: Path, media_server: Any) -> None:
    with pytest.raises(MediaError) as failed:
        download_video(media_server.url("/missing/x.mp4"), tmp_path, allow_generic=True)
    assert failed.value.code == "not_found" and not failed.value.retryable


def test_without_the_generic_extractor_a_plain_file_url_is_unsupported(
    tmp_path: Path, media_server: Any
) -> None:
    with pytest.raises(MediaError) as failed:
        download_video(media_server.url("/media/y.mp4"), tmp_path, allow_generic=False)
    assert failed.value.code == "unsupported_url" and not failed.value.retryable


def test_a_download_stops_when_asked(tmp_path: Path, media_server: Any) -> None:
    updates: list[DownloadProgress] = []
    with pytest.raises(Cancelled):
        download_video(
            media_server.url("/slow/stop.mp4"),
            tmp_path,
            allow_generic=True,
            on_progress=updates.append,
            should_cancel=lambda: len(updates) >= 1,
        )
    assert len(updates) == 1


def test_an_unknown_quality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="quality"):
        download_video("http://127.0.0.1/x.mp4", tmp_path, quality="8k")


def test_a_stalled_download_fails_with_a_retryable_error(tmp_path: Path, media_server: Any) -> None:
    from media.download import DownloadPolicy

    with pytest.raises(MediaError) as failed:
        download_video(
            media_server.url("/stall/stuck.mp4"),
            tmp_path,
            allow_generic=True,
            policy=DownloadPolicy(stall_timeout=1),
        )
    assert failed.value.retryable
    assert "timed out" in failed.value.message


def test_the_cookies_file_reaches_the_site(tmp_path: Path, media_server: Any) -> None:
    from media.download import DownloadPolicy

    cookies = tmp_path / "cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tsecret-42\n"
    )
    download_video(
        media_server.url("/media/with-cookies.mp4"),
        tmp_path / "out",
        allow_generic=True,
        policy=DownloadPolicy(cookies_file=cookies),
    )
    assert any("session=secret-42" in header for header in media_server.cookies)


def test_a_video_the_archive_knows_is_not_downloaded(tmp_path: Path, media_server: Any) -> None:
    from media.download import AlreadyDownloaded

    asked: list[tuple[str, str]] = []

    def already_have(extractor: str, video_id: str) -> bool:
        asked.append((extractor, video_id))
        return video_id == "known"

    with pytest.raises(AlreadyDownloaded) as known:
        download_video(
            media_server.url("/media/known.mp4?utm=x"),
            tmp_path,
            allow_generic=True,
            already_have=already_have,
        )
    assert (known.value.extractor, known.value.video_id) == ("generic", "known")
    assert not any(tmp_path.iterdir())
    fresh = download_video(
        media_server.url("/media/fresh.mp4"),
        tmp_path,
        allow_generic=True,
        already_have=already_have,
    )
    assert fresh.video_id == "fresh" and ("generic", "fresh") in asked
