"""The page at ``/`` in a real headless Chromium (Debian's, driven by Playwright):
sign in with the token, paste a URL, watch the job's progress bar run to the end; all of
it under the page's Content-Security-Policy, with no violation reported."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.web.browser import csp_violations, needs_browser

pytestmark = needs_browser


def test_the_page_signs_in_and_shows_a_download_running_to_the_end(
    page: Any, server: Any, worker: Any, media_server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-the-token-at-all")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#login-form button")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#status")).to_have_text("live")  # the cookie WebSocket is open

    page.fill("#url", media_server.url("/slow/browser-clip.mp4"))
    page.click("#download-form button")
    row = page.locator("#jobs tr").first
    expect(row.locator(".state")).to_have_text("succeeded", timeout=60_000)
    assert row.locator("progress").get_attribute("value") == "1"
    # A second paste of the same URL is refused with the API's message.
    page.fill("#url", media_server.url("/slow/browser-clip.mp4"))
    page.click("#download-form button")
    expect(page.locator("#download-error")).to_contain_text("already in the library")


def test_a_bad_url_shows_the_api_error(page: Any, server: Any, clean_console: None) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#login-form button")
    expect(page.locator("#main")).to_be_visible()
    page.fill("#url", "http://no-such-host.invalid/video.mp4")
    page.click("#download-form button")
    expect(page.locator("#download-error")).to_contain_text("does not resolve")


def test_the_link_make_run_prints_signs_in_and_forgets_the_token(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/#token={ADMIN_TOKEN}")
    expect(page.locator("#main")).to_be_visible()
    assert ADMIN_TOKEN not in page.url
    page.goto(server.url + "/")  # the cookie keeps the session
    expect(page.locator("#main")).to_be_visible()


def test_the_page_policy_refuses_an_injected_inline_script(
    page: Any, server: Any, console: list[str]
) -> None:
    from playwright.sync_api import Error, expect

    page.goto(server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    with pytest.raises(Error, match="Content Security Policy"):
        page.add_script_tag(content="window.injected = true;")
    assert page.evaluate("window.injected") is None
    # ... and the refusal is reported where the other tests look for violations.
    assert csp_violations(console)
