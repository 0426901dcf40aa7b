"""The whole way a person goes, in one real headless Chromium, by the keyboard alone:
a user made with ``vidfleet user add`` signs in, pastes a locally served clip's URL,
watches its progress bar move and reach 100 %, follows the row to the video's page
and plays it (``currentTime`` advances), then finds it in the library with its
thumbnail. No mouse: every control is reachable with Tab and works with Enter."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import wait_for, wait_for_job
from tests.web.browser import needs_browser
from tests.web.test_browser_jobs import PROGRESS_GROWS
from tests.web.test_browser_users import PASSWORD, add_user

pytestmark = needs_browser


def tab_to(page: Any, selector: str, *, most: int = 60) -> None:
    """Press Tab until ``selector`` has the focus (a control the keyboard can't reach
    fails the test)."""
    for _ in range(most):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_sign_in_add_watch_play_and_find_it_in_the_library_by_keyboard(
    page: Any, server: Any, worker: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    add_user("kim", "admin")
    page.goto(server.url + "/login")
    expect(page.locator("#username")).to_be_focused()  # the login page focuses the name
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("nav.topbar .who")).to_have_text("kim · admin")
    expect(page.locator("#connection")).to_have_text("live")

    url = media_server.url("/slow/journey.mp4")
    tab_to(page, "#add-url")
    page.keyboard.type(url)
    page.keyboard.press("Enter")
    row = page.locator("#job-rows tr.job").filter(has=page.locator("td.title", has_text=url))
    expect(row).to_have_count(1)
    job_id = row.get_attribute("data-job-id")
    selector = f'#job-rows tr[data-job-id="{job_id}"] progress'
    page.wait_for_function(PROGRESS_GROWS, arg=[selector], polling=50, timeout=30_000)
    expect(row.locator(".status")).to_have_text("succeeded", timeout=60_000)
    expect(row.locator(".percent")).to_have_text("100 %")
    video_id = wait_for_job(api, str(job_id))["result"]["video_id"]

    # The finished row links to the video: Tab to it, Enter, and play it.
    tab_to(page, f'#job-rows a[href="/library/videos/{video_id}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/library/videos/{video_id}")
    tab_to(page, "video")
    assert page.evaluate("() => document.querySelector('video').paused")
    page.keyboard.press("Space")  # the media controls' play, from the keyboard
    playing = "() => { const v = document.querySelector('video'); return v && v.currentTime; }"
    started = wait_for(lambda: page.evaluate(playing) or None, timeout=30, what="playback")
    wait_for(lambda: page.evaluate(playing) > started + 0.5, timeout=30, what="time to advance")

    # The library lists it, with its thumbnail once the analysis has made it.
    wait_for(
        lambda: api.get(f"/api/videos/{video_id}").json()["thumbnail_widths"],
        timeout=60,
        what="the thumbnails",
    )
    tab_to(page, 'nav.topbar a[href="/library"]')
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/library")
    image = page.locator(f'.video-card[data-video-id="{video_id}"] img')
    wait_for(
        lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"),
        what="the thumbnail to load",
    )
