"""``GET /api/system/hooks`` and the system page's "Media server refresh" panel, on a
real worker sending to local servers standing in for Jellyfin and a webhook receiver
(the webhook refuses with 401): configured targets, masked tokens, last outcomes and
pending changes; viewers get 403."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.actors.test_hooks import SECRET, TOKEN, change, secret, settled
from tests.conftest import VIEWER_TOKEN
from tests.fake_hooks import Configure, FakeHookServer
from tests.support import api_client, wait_for
from tests.web.browser import needs_browser, screenshot, sign_in


@pytest.fixture
def targets(hook_server: Callable[..., FakeHookServer]) -> dict[str, FakeHookServer]:
    return {"jellyfin": hook_server(204), "webhook": hook_server(401)}


@pytest.fixture
def app(configure_hooks: Configure, targets: dict[str, FakeHookServer]) -> Any:
    """The web, with the same hooks as the workers: Jellyfin and the webhook."""
    from web.app import create_app

    configured = configure_hooks(
        jellyfin_url=targets["jellyfin"].url,
        jellyfin_token=secret(TOKEN),
        webhook_url=targets["webhook"].url + "/in?key=query-key-1234",
        webhook_secret=secret(SECRET),
        delay=0.2,
    )
    return create_app(configured)


def hooks_of(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/api/system/hooks")
    assert response.status_code == 200, response.text
    for hidden in (TOKEN, SECRET, "query-key-1234"):
        assert hidden not in response.text
    return {item["target"]: item for item in response.json()["items"]}


@pytest.fixture
def announced(worker: Any, targets: dict[str, FakeHookServer]) -> Iterator[None]:
    """Two videos added, sent to both targets: Jellyfin took them, the webhook said 401."""
    from actors.refresh_hooks import announce

    announce([change(1), change(2)])
    wait_for(
        lambda: targets["jellyfin"].calls and settled("jellyfin") and settled("webhook"),
        what="both calls",
    )
    yield


def test_the_hooks_show_their_targets_masked_with_outcomes_and_pending_changes(
    api: httpx.Client, server: Any, targets: dict[str, FakeHookServer], announced: None
) -> None:
    hooks = hooks_of(api)
    assert [hooks[t]["configured"] for t in ("jellyfin", "plex", "webhook")] == [True, False, True]
    jellyfin, plex, webhook = hooks["jellyfin"], hooks["plex"], hooks["webhook"]
    assert jellyfin["url"] == targets["jellyfin"].url
    assert jellyfin["token"] == "********"
    assert (jellyfin["last_outcome"], jellyfin["pending"], jellyfin["failures"]) == ("ok", 0, 0)
    assert jellyfin["last_attempt"].endswith("Z") and jellyfin["last_ok"] is not None
    # The 401 is reported, not retried: one call, its two changes still pending.
    assert len(targets["webhook"].calls) == 1
    assert (webhook["last_outcome"], webhook["pending"], webhook["failures"]) == ("http 401", 2, 1)
    assert webhook["url"] == targets["webhook"].url + "/in?***"
    assert webhook["last_ok"] is None
    assert plex == {
        "target": "plex", "configured": False, "url": None, "token": None,
        "last_attempt": None, "last_ok": None, "last_outcome": None, "failures": 0, "pending": 0,
    }  # fmt: skip


def test_viewers_may_not_read_the_hooks(server: Any) -> None:
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        response = viewer.get("/api/system/hooks")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


@needs_browser
def test_the_system_page_shows_the_media_server_refresh_panel(
    page: Any, server: Any, announced: None, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url, path="/system")
    rows = page.locator("#hook-rows tr")
    expect(rows).to_have_count(3)
    jellyfin, plex, webhook = (
        page.locator(f'#hook-rows tr[data-key="{t}"]') for t in ("jellyfin", "plex", "webhook")
    )
    expect(jellyfin.locator("td").nth(0)).to_have_text("Jellyfin")
    expect(jellyfin.locator("td").nth(1)).to_contain_text("token ********")
    expect(jellyfin.locator("td").nth(3)).to_have_text("ok")
    expect(plex.locator("td").nth(1)).to_have_text("not configured")
    expect(webhook.locator("td").nth(3)).to_have_text("http 401")
    expect(webhook.locator("td").nth(4)).to_have_text("2")
    expect(webhook.locator("td").nth(5)).to_have_text("1")
    expect(page.locator("#hooks")).not_to_contain_text(TOKEN)
    screenshot(page, "system-hooks")
