"""GET /metrics: who may read it, requests by route template, WebSocket counters, the
fleet's queues and jobs measured at scrape time, and a scrape that outlives Redis."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.datastructures import Secret
from websockets.sync.client import connect

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, free_port, live_server, wait_for
from tests.web.test_websocket import open_raw_websocket, publish, read_close_code, subscribe

SCRAPE_TOKEN = "scrape-token-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(base_url: str, token: str = ADMIN_TOKEN) -> Samples:
    answer = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


@pytest.fixture
def scraped_server(settings: Any) -> Iterator[Any]:
    """A web server that also takes the scrape token."""
    from web.app import create_app

    app = create_app(dataclasses.replace(settings, metrics_token=Secret(SCRAPE_TOKEN)))
    with live_server(app) as running:
        yield running


def test_metrics_answer_an_admin_or_the_scrape_token_and_refuse_everyone_else(
    scraped_server: Any,
) -> None:
    url = f"{scraped_server.url}/metrics"

    def get(token: str | None, path: str = "/metrics") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{scraped_server.url}{path}", headers=headers)

    for token in (ADMIN_TOKEN, SCRAPE_TOKEN):
        assert get(token).status_code == 200
    assert get(VIEWER_TOKEN).status_code == 403
    assert get(VIEWER_TOKEN).json()["error"]["code"] == "forbidden"
    for token in (None, "not-the-scrape-token-0123456", SCRAPE_TOKEN[:-1]):
        refused = get(token)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    # The scrape token reads the metrics and nothing else.
    assert get(SCRAPE_TOKEN, "/api/jobs").status_code == 401
    # An admin's session cookie reads them too; a viewer's doesn't.
    for token, expected in ((ADMIN_TOKEN, 200), (VIEWER_TOKEN, 403)):
        with httpx.Client(base_url=scraped_server.url) as browser:
            login = browser.post(
                "/api/session", json={"token": token}, headers={"Origin": scraped_server.url}
            )
            assert login.status_code == 200
            assert browser.get(url).status_code == expected


def test_without_a_scrape_token_only_an_admin_reads_the_metrics(server: Any) -> None:
    refused = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    )
    assert refused.status_code == 401
    assert scrape(server.url)


def test_requests_are_counted_by_route_template_and_never_by_raw_path(server: Any) -> None:
    unknown_jobs = [str(uuid.uuid4()) for _ in range(3)]
    with api_client(server.url, ADMIN_TOKEN) as api:
        for job_id in unknown_jobs:
            assert api.get(f"/api/jobs/{job_id}").status_code == 404
        assert api.get("/api/jobs").status_code == 200
        for n in range(4):
            assert api.get(f"/no/such/page/{n}").status_code == 404
    # Refused before any route ran: still counted under the route's template.
    assert httpx.get(f"{server.url}/api/jobs/{unknown_jobs[0]}").status_code == 401
    found = scrape(server.url)
    template = "/api/jobs/{job_id}"
    total = "vidfleet_http_requests_total"
    assert value(found, total, route=template, method="GET", status="404") == 3
    assert value(found, total, route=template, method="GET", status="401") == 1
    assert value(found, total, route="/api/jobs", method="GET", status="200") == 1
    assert value(found, total, route="<unmatched>", method="GET", status="404") == 4
    duration = "vidfleet_http_request_duration_seconds_count"
    assert value(found, duration, route=template, method="GET") == 4
    labels = {label for (_name, labelled) in found for _key, label in labelled}
    assert not any(job_id in label for job_id in unknown_jobs for label in labels)
    assert not any("/no/such" in label for label in labels)


def test_a_method_no_route_knows_is_counted_as_other(server: Any) -> None:
    answer = httpx.request("PROPFIND", f"{server.url}/healthz")
    assert answer.status_code == 405
    found = scrape(server.url)
    assert value(
        found, "vidfleet_http_requests_total", route="/healthz", method="other", status="405"
    )


def test_websockets_and_their_events_are_counted(server: Any, app: Any, redis_client: Any) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with connect(server.ws_url, additional_headers=auth) as ws:
        subscribe(ws)
        wait_for(lambda: app.state.hub.subscribers, what="the subscription")
        assert value(scrape(server.url), "vidfleet_websockets_open") == 1
        for n in range(3):
            publish(redis_client, f"job-{n}")
        got = 0
        while got < 3:
            data = ws.recv(timeout=10)
            got += data.count('"type":"job"')
    wait_for(
        lambda: value(scrape(server.url), "vidfleet_websockets_open") == 0,
        what="the socket to be counted out",
    )
    assert value(scrape(server.url), "vidfleet_websocket_events_delivered_total") == 3


def test_a_slow_socket_closed_with_1013_is_counted(
    server: Any, app: Any, redis_client: Any
) -> None:
    hub = app.state.hub
    hub.queue_size = 50  # so the test need not fill megabytes of socket buffers first
    payload = secrets.token_hex(1_000)  # incompressible
    slow = open_raw_websocket(server.port, {"action": "subscribe", "jobs": ["*"]})
    wait_for(lambda: len(hub.subscribers) == 1, what="the slow subscription")
    published = 0
    while hub.subscribers:
        publish(redis_client, f"job-{published}", message=payload)
        published += 1
        assert published < 20_000, "the slow socket was never closed"
    assert read_close_code(slow) == 1013
    slow.close()
    assert value(scrape(server.url), "vidfleet_websocket_slow_closed_total") == 1


def test_queue_depth_and_jobs_by_kind_and_status_reflect_a_real_job(
    api: httpx.Client, server: Any, media_server: Any
) -> None:
    before = scrape(server.url)
    ready = value(before, "vidfleet_queue_messages", queue="interactive", state="ready")
    assert ready == 0
    assert value(before, "vidfleet_queue_messages", queue="bulk", state="dead") == 0
    # No worker runs: the job stays queued and its message waits in its queue.
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/m.mp4")})
    assert job.status_code == 202
    after = scrape(server.url)
    assert value(after, "vidfleet_queue_messages", queue="interactive", state="ready") == 1
    assert value(after, "vidfleet_jobs", kind="download", status="queued") == 1


def test_with_redis_gone_metrics_still_answer_without_the_queue_family(
    server: Any, app: Any
) -> None:
    from db import live

    redis = app.state.redis
    app.state.redis = live.async_client(f"redis://127.0.0.1:{free_port()}", timeout=1)
    try:
        found = scrape(server.url)
    finally:
        app.state.redis = redis
    assert not any(name == "vidfleet_queue_messages" for name, _labels in found)
    assert value(found, "vidfleet_scrape_errors_total", source="redis") == 1
    assert value(found, "vidfleet_scrape_errors_total", source="database") is None
    assert value(found, "process_cpu_seconds_total")  # the rest is all there
    assert value(found, "vidfleet_websockets_open") == 0
    wait_for(lambda: value(scrape(server.url), "vidfleet_queue_messages", queue="bulk",
                           state="ready") == 0, what="the queues back")  # fmt: skip
