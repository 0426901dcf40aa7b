"""The page shell, the sign-in page and the system page in a real headless Chromium
(Debian's, driven by Playwright): signing in and being sent back, the link ``make run``
prints, the system page's panels (each degrading on its own), all under the pages'
Content-Security-Policy, whose refusal of an injected script is reported."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client
from tests.web.browser import csp_violations, needs_browser, screenshot, sign_in

pytestmark = needs_browser


def test_a_page_without_a_session_sends_to_the_login_page_and_back(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/system")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fsystem$"))
    screenshot(page, "login")
    page.click("#token-login summary")
    page.fill("#token", "not-the-token-at-all")
    page.click("#token-form button")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#token-form button")
    expect(page).to_have_url(server.url + "/system")
    expect(page.locator("nav.topbar a[aria-current=page]")).to_have_text("System")


def test_the_link_make_run_prints_signs_in_and_forgets_the_token(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/#token={ADMIN_TOKEN}")
    expect(page.locator("nav.topbar .who")).to_contain_text("admin")
    assert ADMIN_TOKEN not in page.url
    page.goto(server.url + "/")  # the cookie keeps the session
    expect(page.locator("#connection")).to_have_text("live")
    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/login"))


def test_the_system_page_shows_every_panel(page: Any, server: Any, clean_console: None) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url, path="/system")
    for panel in ("queues", "workers", "dead-letters", "streams", "schedules", "storage"):
        expect(page.locator(f"#{panel}")).to_have_attribute("data-state", "ok")
    expect(page.locator("#queue-rows tr")).to_have_count(5)
    expect(page.locator("#worker-list")).to_contain_text("No worker is running.")
    expect(page.locator("#dead-letters .panel-state")).to_have_text("No dead letters.")
    expect(page.locator("#storage meter")).to_have_count(2)
    expect(page.locator("#schedule-rows tr").filter(has_text="lifeline_sweep")).to_have_count(1)
    expect(page.locator("#streams-summary")).to_contain_text("0 playing")
    expect(page.locator("#connection")).to_have_text("polling")


def test_a_panel_whose_endpoint_fails_says_so_and_the_others_go_on(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    def refuse(route: Any) -> None:
        route.fulfill(
            status=404,
            content_type="application/json",
            body='{"error": {"code": "not_found", "message": "no such route"}}',
        )

    page.route(re.compile(r"/api/system/schedules$"), refuse)
    sign_in(page, server.url, path="/system")
    expect(page.locator("#schedules")).to_have_attribute("data-state", "unavailable")
    expect(page.locator("#schedules .panel-state")).to_have_text("Not available on this server.")
    expect(page.locator("#storage")).to_have_attribute("data-state", "ok")


def test_a_viewer_gets_the_system_page_without_admin_panels_or_buttons(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url, token=VIEWER_TOKEN, path="/system")
    expect(page.locator("#storage")).to_have_attribute("data-state", "ok")
    # The streams are for admins: the panel says so instead of breaking.
    expect(page.locator("#streams")).to_have_attribute("data-state", "unavailable")
    expect(page.locator("#streams .panel-state")).to_contain_text("admins only")
    expect(page.locator("main button:visible")).to_have_count(0)
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        refused = viewer.post("/api/system/dead-letters/purge", json={"queue": "bulk", "all": True})
    assert refused.status_code == 403


def test_the_page_policy_refuses_an_injected_inline_script(
    page: Any, server: Any, console: list[str]
) -> None:
    from playwright.sync_api import Error

    sign_in(page, server.url)
    with pytest.raises(Error, match="Content Security Policy"):
        page.add_script_tag(content="window.injected = true;")
    assert page.evaluate("window.injected") is None
    # ... and the refusal is reported where the other tests look for violations.
    assert csp_violations(console)
