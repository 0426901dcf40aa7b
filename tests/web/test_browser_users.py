"""Users in a real headless Chromium: a user added with ``vidfleet user add`` signs in
on the login page; a viewer user's pages have no controls that change anything and its
own cookie (with its CSRF token) is refused them; a form on another origin that posts
to the API with the browser's cookie changes nothing; wrong passwords are limited."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.browser import needs_browser, screenshot, sign_in_as

pytestmark = needs_browser

VIDFLEET = Path(__import__("sys").executable).with_name("vidfleet")
PASSWORD = "correct horse battery"


def add_user(name: str, role: str) -> None:
    """``vidfleet user add`` as a person would run it (the database directly)."""
    done = subprocess.run(
        [str(VIDFLEET), "user", "add", name, "--role", role, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def other_origin() -> Iterator[Any]:
    """A site of someone else's on another local port: ``serve(html)`` → its URL."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(html: str) -> str:
        pages["/"] = html.encode()
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    server.shutdown()
    server.server_close()


def test_a_user_added_with_the_cli_signs_in_and_a_viewer_user_gets_no_controls(
    new_page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    add_user("alice", "admin")
    add_user("victor", "viewer")
    queued = api.post("/api/videos/download", json={"url": media_server.url("/media/u1.mp4")})

    admin = new_page()
    sign_in_as(admin, server.url, "alice", PASSWORD)
    expect(admin.locator("nav.topbar .who")).to_have_text("alice · admin")
    expect(admin.locator("#add-form")).to_be_visible()
    expect(admin.locator("#job-rows button.cancel")).to_have_count(1)
    # The user's cookie and its CSRF token work from the page.
    other = api.post("/api/videos/download", json={"url": media_server.url("/media/u2.mp4")})
    row = admin.locator(f'#job-rows tr[data-job-id="{other.json()["id"]}"]')
    row.locator("button.cancel").click()
    expect(row.locator(".status")).to_have_text("cancelled")

    viewer = new_page()
    sign_in_as(viewer, server.url, "victor", PASSWORD)
    expect(viewer.locator("nav.topbar .who")).to_have_text("victor · viewer")
    expect(viewer.locator("#job-rows tr.job")).to_have_count(2)
    expect(viewer.locator("#add")).to_have_count(0)
    expect(viewer.locator("#job-rows button")).to_have_count(0)
    # Its own cookie and CSRF token, from its own page: the API still refuses.
    status = viewer.evaluate(
        """async (id) => {
          const session = await (await fetch("/api/session")).json();
          const answer = await fetch(`/api/jobs/${id}/cancel`, {method: "POST",
            headers: {"X-CSRF-Token": session.csrf}});
          return answer.status;
        }""",
        queued.json()["id"],
    )
    assert status == 403
    assert api.get(f"/api/jobs/{queued.json()['id']}").json()["status"] == "queued"


def test_a_form_on_another_origin_posting_with_the_cookie_changes_nothing(
    page: Any,
    server: Any,
    media_server: Any,
    api: httpx.Client,
    other_origin: Any,
    clean_console: None,
) -> None:
    add_user("alice", "admin")
    sign_in_as(page, server.url, "alice", PASSWORD)
    # The classic JSON CSRF: a text/plain form whose body reads as JSON. Another port of
    # the same host is the same site, so the browser does send the SameSite cookie.
    url = media_server.url("/media/csrf.mp4")
    attack = other_origin(
        "<!doctype html><form method=post enctype=text/plain "
        f'action="{server.url}/api/videos/download">'
        f'<input name=\'{{"url": "{url}", "x": "\' value=\'"}}\'></form>'
        "<script>document.forms[0].submit()</script>"
    )
    with page.expect_response(f"{server.url}/api/videos/download") as answer:
        page.goto(attack)
    assert answer.value.status == 403
    assert api.get("/api/jobs").json()["items"] == []


def test_after_five_wrong_passwords_the_login_page_says_to_wait(
    page: Any, server: Any, clean_console: None
) -> None:
    from playwright.sync_api import expect

    add_user("bob", "admin")
    page.goto(server.url + "/login")
    page.fill("#username", "bob")
    for _ in range(5):
        page.fill("#password", "wrong password")
        with page.expect_response(f"{server.url}/api/session") as answer:
            page.click("#login-form button")
        assert answer.value.status == 401
        expect(page.locator("#login-error")).to_contain_text("not accepted")
    page.fill("#password", PASSWORD)  # even the right one, now
    with page.expect_response(f"{server.url}/api/session") as answer:
        page.click("#login-form button")
    assert answer.value.status == 429
    expect(page.locator("#login-error")).to_contain_text("too many wrong passwords")
    expect(page).to_have_url(server.url + "/login")
    screenshot(page, "login-limited")
