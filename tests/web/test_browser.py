"""The page at ``/`` in a real headless Chromium (Debian's, driven by Playwright):
sign in with the token, paste a URL, watch the job's progress bar run to the end; all of
it under the page's Content-Security-Policy, with no violation reported."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Chromium and sets this, so CI can never skip the browser tests.
REQUIRED = os.environ.get("VIDFLEET_TEST_BROWSER") == "required"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="Chromium is not installed (apt-get install chromium); CI always runs this",
)


def csp_violations(console: list[str]) -> list[str]:
    """Chromium reports every refused script, style or connection on the console."""
    return [text for text in console if "Content Security Policy" in text]


@pytest.fixture
def console() -> list[str]:
    return []


@pytest.fixture
def page(console: list[str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "VIDFLEET_TEST_BROWSER=required but no chromium on PATH"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context()
        page = context.new_page()
        page.on("console", lambda message: console.append(message.text))
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def no_csp_violations(console: list[str]) -> Iterator[None]:
    yield
    assert csp_violations(console) == []


def test_the_page_signs_in_and_shows_a_download_running_to_the_end(
    page: Any, server: Any, worker: Any, media_server: Any, no_csp_violations: None
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


def test_a_bad_url_shows_the_api_error(page: Any, server: Any, no_csp_violations: None) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#login-form button")
    expect(page.locator("#main")).to_be_visible()
    page.fill("#url", "http://no-such-host.invalid/video.mp4")
    page.click("#download-form button")
    expect(page.locator("#download-error")).to_contain_text("does not resolve")


def test_the_link_make_run_prints_signs_in_and_forgets_the_token(
    page: Any, server: Any, no_csp_violations: None
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
