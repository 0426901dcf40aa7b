"""Deleting from the library touches nothing outside the media root, whichever way a
row's path leads out of it; a video's stream-cache entries go by its id exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from media.errors import MediaError
from media.library import OutsideLibrary, delete_library_file, library_entry
from media.stream_cache import remove_entries_of


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "Artist").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.mp4").write_bytes(b"keep me")
    return root


def test_a_file_under_the_root_is_deleted_and_a_missing_one_is_no_error(root: Path) -> None:
    (root / "Artist" / "song.mp4").write_bytes(b"x")
    assert delete_library_file(root, "Artist/song.mp4") is True
    assert not (root / "Artist" / "song.mp4").exists()
    assert delete_library_file(root, "Artist/song.mp4") is False  # done already
    assert delete_library_file(root, "Nobody/never.mp4") is False


@pytest.mark.parametrize(
    "relative",
    ["../elsewhere/secret.mp4", "Artist/../../elsewhere/secret.mp4", "/elsewhere/secret.mp4",
     "..", ".", "", "Artist/.."],
)  # fmt: skip
def test_a_path_leading_out_of_the_root_deletes_nothing(
    root: Path, tmp_path: Path, relative: str
) -> None:
    absolute = str(tmp_path / "elsewhere" / "secret.mp4")
    for path in (relative, absolute):
        with pytest.raises(OutsideLibrary) as raised:
            delete_library_file(root, path)
        assert raised.value.code == "outside_library" and not raised.value.retryable
        assert str(tmp_path) not in raised.value.message  # a reason, never a path
    assert (tmp_path / "elsewhere" / "secret.mp4").read_bytes() == b"keep me"
    assert (root / "Artist").is_dir()


def test_a_symlink_out_of_the_root_deletes_nothing(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.mp4"
    (root / "Artist" / "link.mp4").symlink_to(secret)
    (root / "Linked").symlink_to(tmp_path / "elsewhere")
    (root / "Artist" / "dangling.mp4").symlink_to(tmp_path / "elsewhere" / "gone.mp4")
    for relative in ("Artist/link.mp4", "Linked/secret.mp4", "Artist/dangling.mp4"):
        with pytest.raises(OutsideLibrary):
            delete_library_file(root, relative)
    assert secret.read_bytes() == b"keep me"
    assert (root / "Artist" / "link.mp4").is_symlink()


def test_a_symlink_inside_the_root_is_removed_not_what_it_points_to(root: Path) -> None:
    (root / "Artist" / "real.mp4").write_bytes(b"another video's file")
    (root / "Artist" / "alias.mp4").symlink_to(root / "Artist" / "real.mp4")
    assert library_entry(root, "Artist/alias.mp4") == root.resolve() / "Artist" / "alias.mp4"
    assert delete_library_file(root, "Artist/alias.mp4") is True
    assert not (root / "Artist" / "alias.mp4").is_symlink()
    assert (root / "Artist" / "real.mp4").read_bytes() == b"another video's file"


def test_a_path_that_cannot_be_resolved_or_is_a_folder_is_refused(root: Path) -> None:
    os.symlink(root / "Artist" / "b.mp4", root / "Artist" / "a.mp4")
    os.symlink(root / "Artist" / "a.mp4", root / "Artist" / "b.mp4")
    with pytest.raises(OutsideLibrary, match="cannot be resolved"):
        delete_library_file(root, "Artist/a.mp4")
    with pytest.raises(OutsideLibrary, match="cannot be resolved"):
        delete_library_file(root, "Artist/nul\0.mp4")
    with pytest.raises(MediaError) as raised:
        delete_library_file(root, "Artist")
    assert raised.value.code == "not_a_file" and (root / "Artist").is_dir()


def test_a_videos_cache_entries_go_by_its_id_exactly(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for key in ("1-100-5", "1-200-6", "12-100-5", "21-100-5"):
        (cache / "streams" / key).mkdir(parents=True)
        (cache / "streams" / key / "720p.mp4").write_bytes(b"x")
        (cache / "hls" / key / "720p").mkdir(parents=True)
        (cache / "hls" / key / "720p" / "0.ts").write_bytes(b"x")
    assert remove_entries_of(cache, 1) == 4  # both files' keys, in both kinds
    left = sorted(path.name for kind in ("streams", "hls") for path in (cache / kind).iterdir())
    assert left == ["12-100-5", "12-100-5", "21-100-5", "21-100-5"]
    assert remove_entries_of(cache, 1) == 0
    assert remove_entries_of(tmp_path / "no-cache", 1) == 0
