"""The library, artist and video pages and the player in a real headless Chromium
(Debian's, driven by Playwright): a downloaded clip appears in the grid with its
thumbnail, search and sort find it, its artist's page lists it; it plays, switches to
a transcoded stream and to HLS near the same position, resumes after a reload; a viewer
sees no delete control and an admin deletes it. Every page under the page's
Content-Security-Policy, with no console error; screenshots at desktop and phone width."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import VIEWER_TOKEN
from tests.support import make_clip, wait_for, wait_for_job
from tests.web.browser import needs_browser, screenshot, sign_in

pytestmark = needs_browser

CLIP = "library-clip.mp4"
PASSWORD = "a long enough password"
CLIP_SECONDS = 14


@pytest.fixture(scope="module")
def library_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H.264/AAC clip taller than 360 lines (so a smaller transcode is offered) and
    long enough to switch versions mid-play and still have seconds left."""
    path = tmp_path_factory.mktemp("library") / CLIP
    return make_clip(
        path, video="testsrc2=size=854x480:rate=25", seconds=CLIP_SECONDS, gop=25, bitrate="400k"
    )


def download(
    api: httpx.Client, media_server: Any, clip: Path, *, name: str, artist: str, title: str
) -> dict[str, Any]:
    """Download the clip through the API as ``artist`` - ``title``, and wait for its
    analysis to make the thumbnails; the video's JSON."""
    media_server.files[name] = clip
    response = api.post(
        "/api/videos/download",
        json={"url": media_server.url(f"/file/{name}"), "artist": artist, "title": title},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    video_id = job["result"]["video_id"]

    def thumbnails() -> dict[str, Any] | None:
        video = api.get(f"/api/videos/{video_id}").json()
        return video if video["thumbnail_widths"] else None

    return wait_for(thumbnails, timeout=60, what="the thumbnails")


def add_row(title: str, artist: str | None) -> int:
    """A library row without a file or analysis: a card with the placeholder."""
    from actors import stores
    from db.library import artist_named
    from db.models import Video

    with stores.sessions().begin() as session:
        video = Video(
            title=title, artist_id=artist_named(session, artist).id if artist else None,
            duration=None, source_url=f"https://example.com/{title}", extractor="test",
            extractor_id=title, path=f"Rows/{title}.mp4", size=1,
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


MBID = "0383dadf-2a4e-4d10-a46a-e9e041da8eb3"


def enrich(artist_id: int) -> None:
    """What a MusicBrainz match sets on an artist (actors/enrich.py)."""
    from actors import stores
    from db.models import Artist

    with stores.sessions().begin() as session:
        artist = session.get(Artist, artist_id)
        assert artist is not None
        artist.mbid, artist.country, artist.begin_year = MBID, "GB", 1999
        artist.disambiguation = "the <i>test</i> one"
        artist.genres = ["synth-pop", "<script>"]


def sign_in_as(page: Any, base_url: str, user: str, *, path: str) -> None:
    """Sign in on the login page as a user, on the way to ``path``."""
    page.goto(f"{base_url}/login?next={path}")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-form button")
    page.wait_for_url(base_url + path)
    page.wait_for_selector("nav.topbar")


def card_titles(page: Any) -> list[str]:
    return page.locator("#videos .video-card .title").all_inner_texts()


def test_a_download_shows_in_the_grid_finds_by_search_sorts_and_lists_on_its_artist(
    page: Any,
    server: Any,
    api: httpx.Client,
    worker: Any,
    media_server: Any,
    library_clip: Path,
    clean_console: None,
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url, path="/library")
    expect(page.locator("#library-status")).to_contain_text("The library is empty")
    screenshot(page, "library-empty")

    video = download(
        api, media_server, library_clip, name=CLIP, artist="Mx <b>Test</b>", title="Blue & Gold"
    )
    add_row("aardvark song", "Zebra Band")
    add_row("<img src=x onerror=alert(1)>", None)
    page.goto(server.url + "/library")
    card = page.locator(f'.video-card[data-video-id="{video["id"]}"]')
    expect(card.locator(".title")).to_have_text("Blue & Gold")
    expect(card.locator(".artist")).to_have_text("Mx <b>Test</b>")  # text, not markup
    expect(card.locator(".quality-label")).to_be_visible()
    expect(card.locator(".duration")).to_have_text(f"0:{CLIP_SECONDS}")
    image = card.locator("img")
    expect(image).to_have_attribute(
        "srcset", re.compile(rf"/thumbnails/{video['id']}/160\.webp 160w")
    )
    wait_for(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"),
        what="the thumbnail to load",
    )
    expect(page.locator(".video-card .thumb-placeholder")).to_have_count(2)
    expect(page.locator("#videos .title").first).to_have_text("<img src=x onerror=alert(1)>")
    screenshot(page, "library")

    # Search: debounced, in the address, case-insensitive, over titles and artists.
    page.fill("#search", "tEsT")
    expect(page.locator("#videos .video-card")).to_have_count(1)
    expect(page).to_have_url(f"{server.url}/library?q=tEsT")
    page.fill("#search", "no such thing")
    expect(page.locator("#library-status")).to_contain_text("Nothing in the library matches")
    page.fill("#search", "")
    expect(page.locator("#videos .video-card")).to_have_count(3)

    # Sort: by title, then by artist (the videos without one last); kept in the address.
    page.select_option("#sort", "title")
    expect(page.locator("#videos .title").first).to_have_text("<img src=x onerror=alert(1)>")
    assert card_titles(page)[1:] == ["aardvark song", "Blue & Gold"]
    page.select_option("#sort", "artist")
    expect(page.locator("#videos .title").first).to_have_text("Blue & Gold")
    assert card_titles(page)[1:] == ["aardvark song", "<img src=x onerror=alert(1)>"]
    page.reload()
    expect(page.locator("#sort")).to_have_value("artist")
    expect(page.locator("#videos .title").first).to_have_text("Blue & Gold")

    # The artist's page: the picture set, what enrichment found, and the videos.
    picture = io.BytesIO()
    Image.new("RGB", (400, 400), (200, 40, 90)).save(picture, format="PNG")
    response = api.put(f"/api/artists/{video['artist_id']}/image", content=picture.getvalue())
    assert response.status_code == 202, response.text
    assert wait_for_job(api, response.json()["id"])["status"] == "succeeded"
    enrich(video["artist_id"])
    card.locator(".artist").click()
    expect(page).to_have_url(f"{server.url}/library/artists/{video['artist_id']}")
    expect(page.locator("#artist-name")).to_have_text("Mx <b>Test</b>")
    expect(page.locator("#videos .video-card")).to_have_count(1)
    expect(page.locator("#videos .title")).to_have_text("Blue & Gold")
    facts = page.locator("#artist-facts")
    expect(facts).to_contain_text("the <i>test</i> one")
    expect(facts).to_contain_text("1999")
    expect(facts.locator(".genres li")).to_have_text(["synth-pop", "<script>"])
    expect(facts.locator("a")).to_have_attribute("href", f"https://musicbrainz.org/artist/{MBID}")
    image = page.locator("img.artist-picture")
    wait_for(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"),
        what="the artist's picture to load",
    )
    screenshot(page, "artist")
    page.goto(f"{server.url}/library/artists/999999")
    expect(page.locator("#artist-status")).to_contain_text("no such artist")


def test_the_player_plays_switches_versions_near_the_position_and_resumes(
    page: Any,
    server: Any,
    api: httpx.Client,
    worker: Any,
    media_server: Any,
    library_clip: Path,
    clean_console: None,
) -> None:
    from playwright.sync_api import expect

    video = download(
        api, media_server, library_clip, name="player-clip.mp4", artist="Player", title="Play me"
    )
    sign_in(page, server.url, path=f"/library/videos/{video['id']}")
    expect(page.locator("#video-title")).to_have_text("Play me")
    expect(page.locator(".video-facts")).to_contain_text("854 × 480")
    expect(page.locator(".video-facts")).to_contain_text("h264 / aac")
    source = page.locator(".video-facts a.source-url")
    expect(source).to_have_attribute("rel", "noreferrer noopener")
    options = page.locator("#quality option").evaluate_all("(all) => all.map(o => o.value)")
    assert options[:3] == ["original", "stream-source", "stream-360p"], options
    assert "hls-source" in options and "hls-360p" in options, options

    def position() -> float:
        return float(
            page.evaluate("() => { const v = document.querySelector('video');"
                          " return Number(v.dataset.offset) + v.currentTime; }")
        )  # fmt: skip

    def plays_past(seconds: float) -> float:
        page.evaluate("() => document.querySelector('video').play()")
        return wait_for(lambda: (at := position()) > seconds and at, timeout=30,
                        what=f"playback past {seconds} s")  # fmt: skip

    # Direct play: the file itself, with Range.
    assert page.evaluate("() => document.querySelector('video').getAttribute('src')") == (
        f"/stream/{video['id']}"
    )
    at = plays_past(1.5)
    screenshot(page, "video")

    # A transcode (480 -> 360 lines) from where it was, then HLS from there.
    page.select_option("#quality", "stream-360p")
    assert page.evaluate("() => document.querySelector('video').dataset.offset") != "0"
    started = float(page.evaluate("() => document.querySelector('video').dataset.offset"))
    assert at - 0.5 <= started <= at + 2.5, (at, started)
    at = plays_past(started + 1)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.select_option("#quality", "hls-360p")
    attached = "() => (document.querySelector('video').src || '').startsWith('blob:')"
    wait_for(lambda: page.evaluate(attached), what="hls.js to attach")
    resumed_at = wait_for(lambda: position() > 0.1 and position(), what="HLS to start")
    assert at - 1 <= resumed_at <= at + 6, (at, resumed_at)
    plays_past(resumed_at + 1)
    assert f"{server.url}/hls/{video['id']}/360p/index.m3u8" in requests
    assert f"{server.url}/static/vendor/hls-1.7.4.worker.js" in requests  # not a blob: worker
    expect(page.locator(".player-status")).not_to_have_class("player-status error")

    # Resume: back on the original file (at the same place), pause at 2 s, reload.
    page.select_option("#quality", "original")
    back = (
        "() => { const v = document.querySelector('video'); return v.readyState && v.currentTime; }"
    )
    assert wait_for(lambda: page.evaluate(back), what="the original file") > 2.5
    page.evaluate(
        "() => { const v = document.querySelector('video'); v.pause(); v.currentTime = 2; }"
    )
    saved = f"() => localStorage.getItem('vidfleet:resume:{video['id']}')"
    wait_for(lambda: page.evaluate(saved) == "2.0", what="the position saved")
    page.reload()
    expect(page.locator("video")).to_be_visible()
    wait_for(lambda: 1.5 <= position() <= 3, what="the player to start near 2 s")


def test_a_viewer_sees_no_delete_control_and_an_admin_deletes(
    new_page: Any, server: Any, api: httpx.Client, worker: Any, clean_console: None
) -> None:
    """Users of each role (signed in with a password: the cookie and its CSRF token
    carry the delete), and the bootstrap viewer token."""
    from playwright.sync_api import expect

    video_id = add_row("delete me", "Somebody")
    for name, role in (("vera", "viewer"), ("ada", "admin")):
        made = api.post("/api/users", json={"name": name, "password": PASSWORD, "role": role})
        assert made.status_code == 201, made.text
    viewer = new_page()
    sign_in_as(viewer, server.url, "vera", path=f"/library/videos/{video_id}")
    expect(viewer.locator("#video-title")).to_have_text("delete me")
    expect(viewer.locator("#delete-video")).to_be_hidden()
    assert viewer.locator("body").get_attribute("data-role") == "viewer"
    by_token = new_page()
    sign_in(by_token, server.url, token=VIEWER_TOKEN, path=f"/library/videos/{video_id}")
    expect(by_token.locator("#video-title")).to_have_text("delete me")
    expect(by_token.locator("#delete-video")).to_be_hidden()

    admin = new_page()
    sign_in_as(admin, server.url, "ada", path=f"/library/videos/{video_id}")
    admin.on("dialog", lambda dialog: dialog.accept())
    admin.click("#delete-video")
    expect(admin).to_have_url(f"{server.url}/library", timeout=30_000)
    assert api.get(f"/api/videos/{video_id}").status_code == 404

    # A library longer than a page: "More" brings the rest.
    for number in range(26):
        add_row(f"row {number:02}", None)
    viewer.goto(server.url + "/library?sort=oldest")
    expect(viewer.locator("#videos .video-card")).to_have_count(24)
    viewer.click("#more")
    expect(viewer.locator("#videos .video-card")).to_have_count(26)
    expect(viewer.locator("#more")).to_be_hidden()
    assert card_titles(viewer) == [f"row {number:02}" for number in range(26)]
