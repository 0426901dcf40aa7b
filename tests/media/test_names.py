"""Library names people can read in every script, safe on every filesystem and share
(media/names.py): the issue's table, then properties over arbitrary Unicode."""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from media.library import artist_folder, library_path
from media.names import MAX_COMPONENT_BYTES, component, name_key, stem_of, stems_in, video_stem


def test_names_in_every_script_stay_readable_and_distinct() -> None:
    table = [
        ("宇多田ヒカル", "First Love", "宇多田ヒカル/First Love [a1].mp4"),
        ("Мумий Тролль", "Владивосток 2000", "Мумий Тролль/Владивосток 2000 [a2].mp4"),
        (
            "BLACKPINK",
            "뚜두뚜두 (DDU-DU DDU-DU) M/V",
            "BLACKPINK/뚜두뚜두 (DDU-DU DDU-DU) M⧸V [a3].mp4",
        ),
        ("Sigur Rós", "Hoppípolla", "Sigur Rós/Hoppípolla [a4].mp4"),
    ]
    paths = [
        library_path(folder=artist_folder(artist), stem=video_stem(title, f"a{n}"), ext="mp4")
        for n, (artist, title, _) in enumerate(table, 1)
    ]
    assert [str(path) for path in paths] == [expected for *_, expected in table]
    assert len({path.parts[0] for path in paths}) == 4


def test_what_no_filesystem_or_share_holds_is_replaced() -> None:
    assert component('a/b\\c<d>e:f"g|h?i*j') == "a⧸b⧹c＜d＞e：f＂g｜h？i＊j"
    assert component("tab\there\x00nul\x7f") == "tab here nul"
    assert component("trailing dots... ") == "trailing dots"
    assert component("evil\u202egpj.exe") == "evil gpj.exe"
    assert component("...Baby One More Time") == "…Baby One More Time"
    assert component("CON") == "CON_" and component("com1.txt") == "com1_.txt"
    assert component("lpt¹") == "lpt¹_" and component("CONSOLE") == "CONSOLE"
    assert component("") == component(None) == component(" . ") == "_"
    # NFC: a decomposed é and a composed one give one name.
    assert component("Beyonce\u0301") == component("Beyonc\u00e9") == "Beyoncé"


def test_long_names_are_cut_on_a_character_boundary_and_keep_the_id() -> None:
    stem = video_stem("ü" * 300, "dQw4w9WgXcQ")
    assert stem.endswith(" [dQw4w9WgXcQ]")
    assert len(f"{stem} (99).zh-Hant-TW.vtt".encode()) <= MAX_COMPONENT_BYTES
    assert stem.encode().decode() == stem  # whole characters only


def test_sidecars_share_the_stem_of_their_video() -> None:
    stem = "Title. With dots [x.1]"
    for name in (f"{stem}.mp4", f"{stem}-thumb.jpg", f"{stem}.en.vtt", f"{stem}.nfo"):
        assert stem_of(name) == stem
    assert stem_of(f"{stem} (2).mkv") == f"{stem} (2)"
    assert stem_of("folder.jpg") == "folder"
    assert name_key(stem) in stems_in([f"{stem}.nfo"])


@given(st.text())
def test_a_component_is_always_one_safe_name(text: str) -> None:
    name = component(text)
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode()) <= MAX_COMPONENT_BYTES
    assert not name.endswith((".", " ")) and not name.startswith(".")
    assert not any(unicodedata.category(char) == "Cc" for char in name)
    assert unicodedata.is_normalized("NFC", name)
    assert PurePosixPath(name).name == name


@given(st.text(), st.text(), st.text(), st.text(max_size=12))
def test_a_library_path_never_leaves_its_folder(
    artist: str, title: str, vid: str, ext: str
) -> None:
    root = Path("/library")
    relative = library_path(folder=artist_folder(artist), stem=video_stem(title, vid), ext=ext)
    assert len(relative.parts) == 2 and all(part not in ("", ".", "..") for part in relative.parts)
    assert all(len(part.encode()) <= MAX_COMPONENT_BYTES for part in relative.parts)
    assert (root / relative).resolve().is_relative_to(root)


@given(st.lists(st.tuples(st.text(), st.text(min_size=1, max_size=20)), max_size=30))
def test_titles_filed_in_one_folder_never_share_a_case_folded_name(
    videos: list[tuple[str, str]],
) -> None:
    taken: set[str] = set()
    names = []
    for title, vid in videos:
        stem = video_stem(title, vid, taken)
        assert name_key(stem) not in taken
        taken.add(name_key(stem))
        names.append(f"{stem}.mp4")
    assert len({name_key(name) for name in names}) == len(names)
    assert all(len(name.encode()) <= MAX_COMPONENT_BYTES for name in names)
