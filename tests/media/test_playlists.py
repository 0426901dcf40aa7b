"""media/playlists.py: a flat listing with real yt-dlp against the tests' RSS feed."""

from __future__ import annotations

from typing import Any

from media.playlists import list_playlist


def test_a_listing_checks_each_entry_as_a_pasted_url_and_keeps_the_feed_order(
    media_server: Any,
) -> None:
    public = "http://93.184.215.14/a.mp4"  # an address literal: no DNS asked
    media_server.feeds["checked"] = [
        media_server.url("/media/loopback.mp4"),
        public,
        "http://localhost/b.mp4",
        "http://10.1.2.3/c.mp4",
        "http://[::ffff:127.0.0.1]/d.mp4",
        public,  # listed twice: one entry
    ]
    listing = list_playlist(
        media_server.url("/feed/checked.xml"),
        allow_generic=True,
        allow_private=False,
        max_entries=100,
    )
    assert listing.title == "checked" and not listing.truncated
    assert [entry.url for entry in listing.entries] == media_server.feeds["checked"][:5]
    verdicts = {entry.url: entry.refused for entry in listing.entries}
    assert verdicts.pop(public) is None
    assert all("private" in (reason or "") for reason in verdicts.values()), verdicts
    assert [entry.title for entry in listing.entries] == [f"entry {n}" for n in range(1, 6)]


def test_a_listing_stops_at_its_cap_and_says_so(media_server: Any) -> None:
    media_server.feeds["long"] = [media_server.url(f"/media/long-{n}.mp4") for n in range(5)]
    url = media_server.url("/feed/long.xml")
    capped = list_playlist(url, allow_generic=True, allow_private=True, max_entries=3)
    assert [entry.url for entry in capped.entries] == media_server.feeds["long"][:3]
    assert capped.truncated
    whole = list_playlist(url, allow_generic=True, allow_private=True, max_entries=5)
    assert len(whole.entries) == 5 and not whole.truncated
