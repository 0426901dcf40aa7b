"""Where a new video goes (actors/library_places.py): its artist's folder, unique
case-insensitively among the artists' folders, and a stem unique in it."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from media.names import name_key

RIVALS = ["ABBA", "Abba", "Björk", "BJÖRK", "AC/DC", "AC⧸DC", "Unknown Artist"]


def test_artists_whose_folders_would_meet_on_a_case_insensitive_share_get_two() -> None:
    from actors.library_places import folders_in_order

    folders = folders_in_order(RIVALS)
    assert folders == {
        "ABBA": "ABBA",
        "Abba": "Abba (2)",
        "Björk": "Björk",
        "BJÖRK": "BJÖRK (2)",
        "AC/DC": "AC⧸DC",
        "AC⧸DC": "AC⧸DC (2)",
        "Unknown Artist": "Unknown Artist (2)",  # the folder of videos without one
    }
    assert len({name_key(folder) for folder in folders.values()}) == len(RIVALS)


def test_a_new_video_goes_to_its_artists_folder_old_or_new(settings: Any) -> None:
    from actors import stores
    from actors.library_places import place_video
    from db import library
    from db.models import Video

    with stores.sessions().begin() as session:
        for name in RIVALS:
            library.artist_named(session, name)
        kept = library.artist_named(session, "Sigur Rós")
        session.add(
            Video(
                title="Old", source_url="https://x.example/o", extractor="x", extractor_id="o",
                path="Sigur_Ros/Old_[x-o].mp4", size=1, artist_id=kept.id,
            )
        )  # fmt: skip
    with stores.sessions()() as session:

        def place(artist: str | None, title: str = "T", video_id: str = "v1") -> PurePosixPath:
            return place_video(
                session, settings.media_root, artist=artist, title=title, video_id=video_id,
                ext="mp4",
            )  # fmt: skip

        assert place("BJÖRK") == PurePosixPath("BJÖRK (2)/T [v1].mp4")
        assert place("Abba") == PurePosixPath("Abba (2)/T [v1].mp4")
        assert place(None) == PurePosixPath("Unknown Artist/T [v1].mp4")
        assert place("Unknown Artist") == PurePosixPath("Unknown Artist (2)/T [v1].mp4")
        # An artist whose videos are filed already (here under an old name) keeps
        # that folder until a relayout moves them all.
        assert place("Sigur Rós") == PurePosixPath("Sigur_Ros/T [v1].mp4")
        # A name another row or file in the folder holds, case aside, gets (2).
        folder = settings.media_root / "ABBA"
        folder.mkdir(parents=True)
        (folder / "t [V1].nfo").write_text("someone else's")
        assert place("ABBA") == PurePosixPath("ABBA/T [v1] (2).mp4")
