"""Subtitles and chapters in the player, in a real headless Chromium: a page whose
JSON-LD names an mp4 with an English subtitle stream and two chapters is downloaded
with the default settings; the video's page has a ``<track>`` the browser loads
(``video.textTracks``, its cues fetched with the session cookie under the page's
Content-Security-Policy) and a chapter list whose buttons seek, by click and by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import SRT, make_clip, video_page, wait_for, wait_for_job, with_subtitles
from tests.web.browser import needs_browser, screenshot, sign_in

pytestmark = needs_browser


@pytest.fixture(scope="module")
def subtitled_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("subtitled")
    srt = folder / "lines.srt"
    srt.write_text(SRT)
    clip = make_clip(folder / "plain.mp4", seconds=6, gop=25)
    return with_subtitles(clip, srt, folder / "subtitled.mp4", lang="eng")


def test_the_player_has_the_subtitle_track_and_a_chapter_list_that_seeks(
    page: Any, server: Any, api: httpx.Client, worker: Any, media_server: Any,
    subtitled_clip: Path, clean_console: None,
) -> None:  # fmt: skip
    from playwright.sync_api import expect

    media_server.files["subtitled.mp4"] = subtitled_clip
    media_server.pages["lines.html"] = video_page(
        "Sung with lines",
        media_server.url("/file/subtitled.mp4"),
        6,
        [("Intro", 0, 3), ("Chorus", 3, 6)],
    )
    response = api.post("/api/videos/download", json={"url": media_server.url("/page/lines.html")})
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    video_id = job["result"]["video_id"]

    sign_in(page, server.url, path=f"/library/videos/{video_id}")
    track = page.locator("video track")
    expect(track).to_have_count(1)
    expect(track).to_have_attribute("kind", "subtitles")
    expect(track).to_have_attribute("srclang", "en")
    expect(track).to_have_attribute("src", f"/subtitles/{video_id}/en")
    tracks = page.evaluate(
        "() => Array.from(document.querySelector('video').textTracks,"
        " (t) => [t.kind, t.language, t.label])"
    )
    assert tracks == [["subtitles", "en", "en"]]
    # Shown, the browser fetches and parses the WebVTT file: its cues are the SRT's.
    page.evaluate("() => { document.querySelector('video').textTracks[0].mode = 'showing'; }")
    cues = wait_for(
        lambda: page.evaluate(
            "() => { const cues = document.querySelector('video').textTracks[0].cues;"
            " return cues && cues.length ? Array.from(cues, (c) => c.text) : null; }"
        ),
        what="the subtitle cues",
    )
    assert cues == ["Hello from the first line", "And the second one"]

    def cue_times() -> list[list[float]]:
        return list(
            page.evaluate(
                "() => Array.from(document.querySelector('video').textTracks[0].cues,"
                " (c) => [c.startTime, c.endTime])"
            )
        )

    assert cue_times() == [[0, 1.5], [1.5, 3]]

    chapters = page.locator("nav.chapters button")
    expect(chapters).to_have_count(2)
    expect(chapters.nth(0)).to_contain_text("0:00")
    expect(chapters.nth(0)).to_contain_text("Intro")
    expect(chapters.nth(1)).to_contain_text("0:03")
    expect(chapters.nth(1)).to_contain_text("Chorus")
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")

    def position() -> float:
        return float(page.evaluate("() => document.querySelector('video').currentTime"))

    chapters.nth(1).click()
    wait_for(lambda: abs(position() - 3.0) < 0.2, what="the seek to the chorus")
    expect(chapters.nth(1)).to_have_attribute("aria-current", "true")
    screenshot(page, "video-chapters")
    # By keyboard: Tab reaches the buttons, Enter seeks.
    chapters.nth(0).focus()
    page.keyboard.press("Enter")
    wait_for(lambda: position() < 0.2, what="the seek back to the intro")
    expect(chapters.nth(0)).to_have_attribute("aria-current", "true")

    # A progressive stream started 2 s in has its clock at 0 there: the cues move with
    # it, and back when the file plays again.
    page.evaluate("() => { document.querySelector('video').currentTime = 2; }")
    wait_for(lambda: abs(position() - 2.0) < 0.2, what="the seek to 2 s")
    page.select_option("#quality", "stream-source")
    expect(page.locator("video")).to_have_attribute("data-offset", "2")
    assert cue_times() == [[-2, -0.5], [-0.5, 1]]
    page.select_option("#quality", "original")
    expect(page.locator("video")).to_have_attribute("data-offset", "0")
    assert cue_times() == [[0, 1.5], [1.5, 3]]
