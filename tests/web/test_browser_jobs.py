"""The jobs page (``/``) in a real headless Chromium: the add form, the live table fed
by the WebSocket (and by polling while the socket is blocked), cancel, a batch opened
onto its parts, a web process killed and restarted under the page, and what a viewer
sees. Every test fails on a console error or a policy report (``clean_console``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, wait_for, wait_for_job
from tests.web.browser import needs_browser, screenshot, sign_in

pytestmark = needs_browser


def job_row(page: Any, job_id: str) -> Any:
    return page.locator(f'#job-rows tr[data-job-id="{job_id}"]')


def row_for_url(page: Any, url: str) -> Any:
    return page.locator("#job-rows tr.job").filter(has=page.locator("td.title", has_text=url))


# The value of a row's bar, sampled every 50 ms until it has grown while under 100 %.
PROGRESS_GROWS = """([selector]) => {
  const bar = document.querySelector(selector);
  if (!bar || !bar.hasAttribute("value") || bar.value <= 0 || bar.value >= 1) return false;
  window.firstProgress ??= bar.value;
  return bar.value > window.firstProgress;
}"""


def test_an_admin_adds_a_download_watches_it_finish_and_opens_a_batch(
    page: Any, server: Any, worker: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url)
    expect(page.locator("#connection")).to_have_text("live")
    url = media_server.url("/slow/browser-add.mp4")
    page.fill("#add-url", url)
    page.select_option("#add-quality", "720p")
    page.click("#add-submit")
    row = row_for_url(page, url)
    expect(row).to_have_count(1)
    job_id = row.get_attribute("data-job-id")
    assert job_id
    selector = f'#job-rows tr[data-job-id="{job_id}"] progress'
    page.wait_for_function(PROGRESS_GROWS, arg=[selector], polling=50, timeout=30_000)
    expect(row.locator(".status")).to_have_text("succeeded", timeout=60_000)
    expect(row.locator("progress")).to_have_attribute("value", "1")
    expect(row.locator(".percent")).to_have_text("100 %")
    expect(page.locator(".toast.ok", has_text=url)).to_contain_text("succeeded")
    video_id = wait_for_job(api, job_id)["result"]["video_id"]
    expect(row.locator("td.title a")).to_have_attribute("href", f"/library/videos/{video_id}")

    # The same URL again: the 409 links to the video, next to the field.
    page.fill("#add-url", url)
    page.click("#add-submit")
    error = page.locator("#add-url-error")
    expect(error).to_contain_text("already in the library")
    expect(error.locator("a")).to_have_attribute("href", f"/library/videos/{video_id}")
    expect(page.locator("#add-url")).to_have_attribute("aria-invalid", "true")
    # A bad URL: the server's reason, next to the field.
    page.fill("#add-url", "http://no-such-host.invalid/video.mp4")
    page.click("#add-submit")
    expect(error).to_contain_text("does not resolve")
    expect(error.locator("a")).to_have_count(0)
    screenshot(page, "jobs")

    # A batch appears live; opened, it shows its part and their count.
    batch = api.post("/api/videos/bulk/thumbnails", json={"ids": [video_id]})
    assert batch.status_code == 202, batch.text
    batch_row = job_row(page, batch.json()["id"])
    expect(batch_row.locator(".status")).to_have_text("succeeded", timeout=60_000)
    batch_row.locator("button.expand").click()
    expect(batch_row.locator("button.expand")).to_have_attribute("aria-expanded", "true")
    parts = page.locator(f'#job-rows tr.part[data-parent-id="{batch.json()["id"]}"]')
    expect(parts).to_have_count(1)
    expect(parts.locator(".status")).to_have_text("succeeded")
    expect(batch_row.locator(".parts")).to_have_text("Parts: 1 succeeded")
    screenshot(page, "jobs-batch-open")
    batch_row.locator("button.expand").click()
    expect(parts).to_have_count(0)


@pytest.mark.serial  # a deadline: the row shows cancelled within 2 s of the click
def test_cancel_from_the_page_ends_a_running_download_within_two_seconds(
    page: Any, server: Any, worker: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url)
    expect(page.locator("#connection")).to_have_text("live")
    job = api.post("/api/videos/download", json={"url": media_server.url("/crawl/cancel.mp4")})
    row = job_row(page, job.json()["id"])
    expect(row.locator(".status")).to_have_text("running", timeout=30_000)
    row.locator("button.cancel").click()
    expect(row.locator(".status")).to_have_text("cancelled", timeout=2_000)
    expect(row.locator("button.retry")).to_be_visible()
    row.locator("button.retry").click()
    expect(page.locator(".toast", has_text="retry queued")).to_be_visible()
    retried = api.get("/api/jobs", params={"status": "queued"}).json()["items"]
    retried += api.get("/api/jobs", params={"status": "running"}).json()["items"]
    assert [j["retry_of"] for j in retried] == [job.json()["id"]]
    expect(job_row(page, retried[0]["id"])).to_have_count(1)
    api.post(f"/api/jobs/{retried[0]['id']}/cancel")


def test_the_filters_and_the_search_are_in_the_address(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    # No worker: the downloads stay queued until cancelled.
    first = api.post("/api/videos/download", json={"url": media_server.url("/media/alpha.mp4")})
    second = api.post("/api/videos/download", json={"url": media_server.url("/media/beta.mp4")})
    api.post(f"/api/jobs/{second.json()['id']}/cancel")
    sign_in(page, server.url)
    expect(page.locator("#job-rows tr.job")).to_have_count(2)
    page.select_option("#filter-status", "cancelled")
    expect(page).to_have_url(re.compile(r"\?status=cancelled$"))
    expect(page.locator("#job-rows tr.job")).to_have_count(1)
    expect(job_row(page, second.json()["id"])).to_have_count(1)
    # A reload keeps the filter: it is read from the address.
    page.reload()
    expect(page.locator("#filter-status")).to_have_value("cancelled")
    expect(page.locator("#job-rows tr.job")).to_have_count(1)
    page.select_option("#filter-status", "")
    page.fill("#filter-q", "alpha")
    expect(page).to_have_url(re.compile(r"\?q=alpha$"))
    # The server searched the history: only alpha is left.
    expect(page.locator("#job-rows tr.job")).to_have_count(1)
    expect(job_row(page, first.json()["id"])).to_have_count(1)
    # A job made now shows up live only if it matches what is shown.
    api.post("/api/videos/download", json={"url": media_server.url("/media/alpha-2.mp4")})
    api.post("/api/videos/download", json={"url": media_server.url("/media/gamma.mp4")})
    expect(page.locator("#job-rows tr.job td.title", has_text="alpha-2")).to_have_count(1)
    expect(page.locator("#job-rows tr.job td.title", has_text="gamma")).to_have_count(0)
    # A search the server refuses: its reason next to the box.
    page.fill("#filter-q", "bad\tsearch")
    expect(page.locator("#filter-q-error")).not_to_be_empty()


def test_a_web_restart_under_the_page_is_survived_without_a_reload(
    new_page: Any,
    start_web: Any,
    worker: Any,
    media_server: Any,
    console: list[str],
    clean_console: None,
) -> None:
    from playwright.sync_api import expect

    web, port = start_web()
    base = f"http://127.0.0.1:{port}"
    page = new_page()
    sign_in(page, base)
    expect(page.locator("#connection")).to_have_text("live")
    page.evaluate("window.notReloaded = true")
    with api_client(base, ADMIN_TOKEN) as client:
        job = client.post(
            "/api/videos/download", json={"url": media_server.url("/crawl/restart.mp4")}
        ).json()
    row = job_row(page, job["id"])
    expect(row.locator(".status")).to_have_text("running", timeout=30_000)
    web.kill()  # no close frame: the socket just drops; the job goes on in the worker
    web.wait()
    expect(page.locator("#connection")).not_to_have_text("live", timeout=10_000)
    start_web(PORT=str(port))
    expect(page.locator("#connection")).to_have_text("live", timeout=30_000)
    expect(row.locator(".status")).to_have_text("succeeded", timeout=60_000)
    expect(row.locator("progress")).to_have_attribute("value", "1")
    assert page.evaluate("window.notReloaded") is True
    # What the browser itself logs while the server is down is expected; nothing else.
    console[:] = [line for line in console if not _outage_noise(line)]


def _outage_noise(line: str) -> bool:
    return bool(
        re.search(r"ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE", line)
        or re.search(r"WebSocket connection to .* failed", line)
    )


def test_with_the_socket_blocked_the_page_polls_and_still_updates(
    page: Any, server: Any, worker: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    page.route_web_socket(re.compile(r"/ws$"), lambda socket: socket.close())
    sign_in(page, server.url)
    expect(page.locator("#connection")).to_have_text("polling", timeout=10_000)
    url = media_server.url("/slow/polled.mp4")
    job = api.post("/api/videos/download", json={"url": url})
    row = job_row(page, job.json()["id"])
    expect(row.locator(".status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".toast.ok", has_text=url)).to_contain_text("succeeded")
    expect(page.locator("#connection")).to_have_text("polling")


def test_a_viewer_sees_no_controls_and_the_api_refuses_its_changes(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    queued = api.post("/api/videos/download", json={"url": media_server.url("/media/v1.mp4")})
    cancelled = api.post("/api/videos/download", json={"url": media_server.url("/media/v2.mp4")})
    api.post(f"/api/jobs/{cancelled.json()['id']}/cancel")
    sign_in(page, server.url, token=VIEWER_TOKEN)
    expect(page.locator("#job-rows tr.job")).to_have_count(2)
    expect(page.locator("body")).to_have_attribute("data-role", "viewer")
    expect(page.locator("#add")).to_have_count(0)
    expect(page.locator("#job-rows button.cancel, #job-rows button.retry")).to_have_count(0)

    with api_client(server.url, VIEWER_TOKEN) as viewer:
        refused = viewer.post(f"/api/jobs/{queued.json()['id']}/cancel")
        assert refused.status_code == 403
        assert (
            viewer.post(
                "/api/videos/download", json={"url": media_server.url("/media/v3.mp4")}
            ).status_code
            == 403
        )
    # The page's own cookie, from the page's own origin, is refused too.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies) as browser_like:
        answer = browser_like.post(
            f"/api/jobs/{queued.json()['id']}/cancel", headers={"Origin": server.url}
        )
    assert answer.status_code == 403
    assert api.get(f"/api/jobs/{queued.json()['id']}").json()["status"] == "queued"


def test_a_resync_from_the_server_reloads_the_list(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sockets: list[Any] = []

    def between(socket: Any) -> None:
        # The real server behind, but none of its events reach the page.
        socket.connect_to_server().on_message(lambda message: None)
        sockets.append(socket)

    lists: list[str] = []
    page.on(
        "response",
        lambda response: lists.append(response.url) if "/api/jobs?" in response.url else None,
    )
    page.route_web_socket(re.compile(r"/ws$"), between)
    sign_in(page, server.url)
    expect(page.locator("#connection")).to_have_text("live")
    # The page read the list at start and once more when its socket had subscribed.
    expect(page.locator("#jobs-note")).to_have_text("No jobs yet.")

    def both_read() -> bool:
        page.evaluate("1")  # a round trip to the page lets Playwright deliver its events
        return len(lists) >= 2

    wait_for(both_read, timeout=10, what="the page's two reads of the list")
    read = len(lists)
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/resync.mp4")})
    sockets[0].send('{"type": "resync"}')
    expect(job_row(page, job.json()["id"])).to_have_count(1)
    assert len(lists) > read


def test_the_add_form_follows_a_playlist_and_shows_its_first_sync(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    sign_in(page, server.url)
    page.select_option("#add-kind", "playlist")
    expect(page.locator("#add-priority")).to_be_hidden()
    expect(page.locator("#add-auto")).to_be_checked()
    url = media_server.url("/playlist/followed.html")
    page.fill("#add-url", url)
    page.click("#add-submit")
    expect(page.locator(".toast", has_text="Following")).to_be_visible()
    (playlist,) = api.get("/api/playlists").json()["items"]
    assert playlist["url"] == url and playlist["auto_download"] is True
    expect(job_row(page, playlist["last_sync_job_id"]).locator("td.title")).to_have_text(
        f"playlist {playlist['id']}"
    )
    # Followed already: the server's 409, next to the field.
    page.fill("#add-url", url)
    page.click("#add-submit")
    expect(page.locator("#add-url-error")).to_contain_text("already followed")


def test_the_history_pages_with_more(
    page: Any, server: Any, media_server: Any, api: httpx.Client, clean_console: None
) -> None:
    from playwright.sync_api import expect

    # No worker: 55 jobs stay queued, the newest first on the page.
    ids = [
        api.post("/api/videos/download", json={"url": media_server.url(f"/media/p{n}.mp4")}).json()[
            "id"
        ]
        for n in range(55)
    ]
    sign_in(page, server.url)
    rows = page.locator("#job-rows tr.job")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-job-id", ids[-1])
    expect(rows.last).to_have_attribute("data-job-id", ids[5])
    page.click("#more")
    expect(rows).to_have_count(55)
    expect(rows.last).to_have_attribute("data-job-id", ids[0])
    expect(page.locator("#more")).to_be_hidden()
    # A new job goes on top, live.
    newest = api.post("/api/videos/download", json={"url": media_server.url("/media/p55.mp4")})
    expect(rows.first).to_have_attribute("data-job-id", newest.json()["id"])


def test_the_reconnect_delay_is_exponential_with_full_jitter_up_to_ten_seconds(
    page: Any, server: Any, clean_console: None
) -> None:
    sign_in(page, server.url)
    spreads = page.evaluate(
        """async () => {
          const {backoffDelay} = await import("/static/js/live.js");
          const spreads = [];
          for (let attempt = 0; attempt < 12; attempt += 1) {
            let low = Infinity, high = 0;
            for (let draw = 0; draw < 2000; draw += 1) {
              const delay = backoffDelay(attempt);
              low = Math.min(low, delay);
              high = Math.max(high, delay);
            }
            spreads.push([low, high]);
          }
          return spreads;
        }"""
    )
    for attempt, (low, high) in enumerate(spreads):
        bound = min(10_000, 500 * 2**attempt)
        # Anywhere from 0 to the bound: pages dropped together come back spread out.
        assert 0 <= low < bound * 0.05 and bound * 0.95 < high <= bound
