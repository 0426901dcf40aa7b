"""media/: URL checks, library paths, probing and downloading with real ffmpeg/yt-dlp."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from media.download import DownloadProgress, VideoMetadata, download_video, metadata_of
from media.errors import Cancelled, MediaError, NotMedia, UrlRejected
from media.library import artist_folder, library_path, stage_in_library
from media.names import name_key, video_stem
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


def test_library_paths_are_readable_and_keep_the_id() -> None:
    folder = artist_folder("Sigur Rós / Live")
    stem = video_stem('Hoppípolla: "Live"?', "a1")
    path = library_path(folder=folder, stem=stem, ext="mp4")
    assert path == PurePosixPath("Sigur Rós ⧸ Live/Hoppípolla： ＂Live＂？ [a1].mp4")
    sneaky = library_path(
        folder=artist_folder(".."), stem=video_stem("../../etc/passwd", "../x"), ext="../mp4"
    )
    assert ".." not in sneaky.parts and len(sneaky.parts) == 2
    assert artist_folder(None) == "Unknown Artist"


def test_the_same_title_and_id_in_one_folder_get_two_names() -> None:
    first = video_stem("T", "x1")
    second = video_stem("t", "X1", taken={name_key(first)})
    assert name_key(first) != name_key(second) and second.endswith("[X1] (2)")


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
    cookies.chmod(0o400)  # as an operator may keep it: ours to read, not to write
    before = cookies.read_bytes(), cookies.stat().st_mtime_ns
    download_video(
        media_server.url("/media/with-cookies.mp4"),
        tmp_path / "out",
        allow_generic=True,
        policy=DownloadPolicy(cookies_file=cookies),
    )
    assert any("session=secret-42" in header for header in media_server.cookies)
    # yt-dlp rewrites the cookie jar it was given: it got a copy in the work dir.
    assert (cookies.read_bytes(), cookies.stat().st_mtime_ns) == before
    assert (tmp_path / "out" / "cookies.txt").stat().st_mode & 0o777 == 0o600


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


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("page.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("page.html", b"<!doctype html><html><script>alert(document.cookie)</script></html>"),
        ("feed.xml", b'<?xml version="1.0"?><rss><channel></channel></rss>'),
        ("archive.mhtml", b"MIME-Version: 1.0\r\nContent-Type: multipart/related\r\n\r\n"),
    ],
)
def test_files_that_are_not_audio_or_video_are_not_media(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotMedia) as refused:
        probe_file(path)
    assert not refused.value.retryable


def test_pictures_and_flash_that_ffmpeg_can_open_are_not_media(tmp_path: Path) -> None:
    from media.ffmpeg import ffmpeg_path

    for name, args in (
        ("still.png", ["-frames:v", "1"]),
        ("moving.gif", ["-t", "1"]),
        ("movie.swf", ["-t", "1"]),
    ):
        path = tmp_path / name
        subprocess.run(
            [ffmpeg_path(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64",
             *args, str(path)],
            check=True,
        )  # fmt: skip
        with pytest.raises(NotMedia, match="not an audio or video container"):
            probe_file(path)


def test_the_content_type_comes_from_the_container(tmp_path: Path, sample_video: Path) -> None:
    from media.mediainfo import content_type

    info = probe_file(sample_video)
    assert content_type(info.container, info.vcodec, info.acodec) == "video/mp4"
    assert content_type(info.container, None, info.acodec) == "audio/mp4"
    assert content_type("matroska,webm", "vp9", "opus") == "video/webm"
    assert content_type("matroska,webm", "h264", "aac") == "video/x-matroska"
    assert content_type("svg_pipe", None, None) == "application/octet-stream"
    assert content_type(None, None, None) == "application/octet-stream"


def test_a_file_over_the_size_limit_fails_for_good(tmp_path: Path, media_server: Any) -> None:
    from media.download import DownloadPolicy

    with pytest.raises(MediaError) as refused:
        download_video(
            media_server.url("/media/big.mp4"),
            tmp_path,
            allow_generic=True,
            policy=DownloadPolicy(max_filesize=10_000),
        )
    assert refused.value.code == "too_large" and not refused.value.retryable


def test_a_playlist_url_is_refused_without_downloading_its_entries(
    tmp_path: Path, media_server: Any
) -> None:
    page = media_server.url("/playlist/three.html")
    before = {path: hits for path, hits in media_server.hits.items() if "/list-" in path}
    with pytest.raises(MediaError) as refused:
        download_video(page, tmp_path, allow_generic=True)
    assert refused.value.code == "playlist" and not refused.value.retryable
    after = {path: hits for path, hits in media_server.hits.items() if "/list-" in path}
    assert after == before, "an entry of the playlist was fetched"
    assert not list(tmp_path.rglob("*.mp4"))


def test_the_metadata_media_servers_read_comes_from_the_info_dict() -> None:
    full = metadata_of(
        {
            "artists": ["Björk", " ", "Björk", "Thom Yorke"],
            "album": " Homogenic ",
            "release_date": "19970922",
            "upload_date": "20090101",
            "genres": ["Electronic"],
        }
    )
    assert full == VideoMetadata(
        artists=("Björk", "Thom Yorke"),
        album="Homogenic",
        release_year=1997,
        premiered="1997-09-22",
        genres=("Electronic",),
    )
    older = metadata_of({"artist": "A, B", "upload_date": "2009-01-01", "release_year": 3})
    assert older == VideoMetadata(artists=("A", "B"))  # a malformed date and year: none
    assert metadata_of({"genre": "Pop", "upload_date": "20090102"}).premiered == "2009-01-02"
    assert metadata_of({}) == VideoMetadata()
