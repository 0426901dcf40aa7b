"""What every browser test shares: Debian's Chromium driven by Playwright, the console
of every page it opens (a test fails on any error or Content-Security-Policy report),
signing in, and screenshots at desktop and phone width.

The fixtures are imported by ``tests/web/conftest.py``; a test module that drives the
browser marks itself with :data:`needs_browser`. Screenshots go to
``test-artifacts/screenshots/`` (``.gitignore`` covers ``test-artifacts/``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Chromium and sets this, so CI can never skip the browser tests.
REQUIRED = os.environ.get("VIDFLEET_TEST_BROWSER") == "required"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="Chromium is not installed (apt-get install chromium); CI always runs this",
)


def csp_violations(console: list[str]) -> list[str]:
    """Chromium reports every refused script, style or connection on the console."""
    return [text for text in console if "Content Security Policy" in text]


# Chromium logs every answer of 400-499 to a fetch as a failed load; those are answers
# the page expects and shows (a 401 before sign-in, a 409 for a duplicate), which the
# tests assert themselves. Script errors, 5xx and refused loads still count.
_EXPECTED_REFUSAL = re.compile(
    r"error: Failed to load resource: the server responded with a status of 4\d\d "
)


def console_errors(console: list[str]) -> list[str]:
    """The console's errors (``console.error``, uncaught exceptions, failed loads) but
    the 4xx answers the page handles."""
    return [
        text for text in console if text.startswith("error: ") and not _EXPECTED_REFUSAL.match(text)
    ]


@pytest.fixture
def console() -> list[str]:
    """Every console message of every page the test opened, as ``"<type>: <text>"``."""
    return []


@pytest.fixture
def browser(console: list[str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "VIDFLEET_TEST_BROWSER=required but no chromium on PATH"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Any, console: list[str]) -> Iterator[Callable[..., Any]]:
    """``new_page(viewport=DESKTOP)``: a page in a fresh browser context (its own
    cookies), whose console lands in ``console``."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"error: {error}"))
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


@pytest.fixture
def clean_console(console: list[str]) -> Iterator[None]:
    """Fail the test on any console error or policy violation of its pages."""
    yield
    assert csp_violations(console) == []
    assert console_errors(console) == []


def sign_in(page: Any, base_url: str, *, token: str = ADMIN_TOKEN, path: str = "/") -> None:
    """Open ``path`` signed in with a token (the link ``make run`` prints)."""
    page.goto(f"{base_url}{path}#token={token}")
    page.wait_for_selector("nav.topbar")


def sign_in_as(page: Any, base_url: str, user: str, password: str) -> None:
    """Sign in through the login form as a user."""
    page.goto(base_url + "/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-form button")
    page.wait_for_selector("nav.topbar")


def screenshot(page: Any, name: str) -> None:
    """Save the page as ``<name>-desktop.png`` and ``<name>-phone.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower())
    original = page.viewport_size
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(SCREENSHOTS / f"{slug}-{label}.png"), full_page=True)
    if original:
        page.set_viewport_size(original)
