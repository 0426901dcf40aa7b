"""The system page (``/system``) on a real fleet in headless Chromium: the queue depths
with their chart, a live worker, and dead letters requeued and purged from the page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.browser import needs_browser, screenshot, sign_in
from tests.web.test_system_api import dead_letter

pytestmark = needs_browser


def test_the_system_page_requeues_and_purges_dead_letters_and_shows_the_worker(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    # No worker yet: two downloads whose messages a "worker" gives up on.
    for name in ("sys-a", "sys-b"):
        sent = api.post(
            "/api/videos/download", json={"url": media_server.url(f"/media/{name}.mp4")}
        )
        assert sent.status_code == 202, sent.text
    first, second = dead_letter("interactive"), dead_letter("interactive")

    sign_in(page, server.url, path="/system")
    queue = page.locator('#queue-rows tr[data-key="interactive"]')
    expect(queue.locator("td").nth(3)).to_have_text("2")
    expect(page.locator("#dead-rows tr")).to_have_count(2)
    expect(page.locator("#dead-rows tr").first).to_contain_text("download_video")
    expect(page.locator("#queue-legend li")).to_have_count(5)
    screenshot(page, "system-dead-letters")

    page.locator(f'#dead-rows tr[data-key="{first}"] button', has_text="Requeue").click()
    expect(page.locator(".toast", has_text="Requeued")).to_be_visible()
    expect(page.locator("#dead-rows tr")).to_have_count(1)
    expect(queue.locator("td").nth(1)).to_have_text("1")  # ready again: sent anew

    purge = page.locator(f'#dead-rows tr[data-key="{second}"] button', has_text="Purge")
    purge.click()
    expect(purge).to_have_text("Confirm purge")  # a second click is needed
    purge.click()
    expect(page.locator(".toast", has_text="Purged")).to_contain_text("1 purged")
    expect(page.locator("#dead-letters .panel-state")).to_have_text("No dead letters.")
    expect(queue.locator("td").nth(3)).to_have_text("0")

    # A worker starts: it shows as alive, and takes the requeued download.
    import dramatiq

    from actors import broker

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        expect(page.locator("#worker-list li.worker .badge").first).to_have_text(
            "alive", timeout=15_000
        )
        expect(queue.locator("td").nth(1)).to_have_text("0", timeout=15_000)
        screenshot(page, "system")
    finally:
        worker.stop()
