"""How the web hands a job on: its message, written by the web's pipelined enqueue, is
the one Dramatiq's broker writes and a real worker runs; the URL check asks DNS only
for host names."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq.middleware import Middleware

from tests.support import wait_for_job


def stored_messages(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    """The queue's messages in queue order, as Dramatiq stored them."""
    order = redis_client.lrange(f"dramatiq:{queue}", 0, -1)
    stored = redis_client.hgetall(f"dramatiq:{queue}.msgs")
    return [json.loads(stored[redis_id]) for redis_id in order]


class SeesEnqueues(Middleware):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.seen.append(("before", message.options["redis_message_id"]))

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.seen.append(("after", message.options["redis_message_id"]))


def test_the_web_writes_a_jobs_message_as_dramatiqs_broker_does(
    settings: Any, redis_client: Any
) -> None:
    """The web builds the message by actor name on a broker of its own; what it stores
    is what the workers' broker stores for ``actor.message(job_id)`` on that queue."""
    from actors import broker
    from actors.enqueue import job_actors
    from actors.enqueue import job_message as actor_message
    from db import live
    from db.outbox import Courier, Outbox, web_sender

    by_broker = broker.enqueue(actor_message(job_actors()["download"], "a-job-id", "bulk"))
    hooks = SeesEnqueues()
    sent: list[dramatiq.Message] = []

    class Records(Middleware):
        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            sent.append(message)

    async def pipelined() -> tuple[dramatiq.Message, str]:
        client = live.async_client(settings.redis_url)
        courier = Courier(client, web_sender(settings))
        courier.sender.broker.middleware += [hooks, Records()]
        job = {"id": "a-job-id", "kind": "download", "queue": "bulk"}
        assert (await courier.deliver_async(Outbox(send=[job]))).ok
        await client.aclose()
        courier.sender.broker.close()
        return sent[0], courier.sender.broker.broker_id

    by_web, web_broker_id = asyncio.run(pipelined())

    first, second = stored_messages(redis_client, "bulk")
    ids = [m["options"].pop("redis_message_id") for m in (first, second)]
    assert ids == [by_broker.options["redis_message_id"], by_web.options["redis_message_id"]]
    assert ids[0] != ids[1]
    for stored in (first, second):
        del stored["message_id"], stored["message_timestamp"]
    assert first == second
    assert second["actor_name"] == "download_video" and second["args"] == ["a-job-id"]
    assert hooks.seen == [(hook, ids[1]) for hook in ("before", "after")]
    # The web's broker heartbeat, as its own enqueue refreshes it.
    assert redis_client.zscore("dramatiq:__heartbeats__", web_broker_id) is not None


def test_every_job_actor_the_workers_declare_is_the_one_the_web_sends_to() -> None:
    from actors.enqueue import job_actors
    from db.queues import ACTOR_OF_KIND

    ours = {
        kind: actor.actor_name
        for kind, actor in job_actors().items()
        if actor.fn.__module__.startswith("actors.")  # not the tests' own job actors
    }
    assert ours == ACTOR_OF_KIND


def test_the_web_loads_neither_the_actors_nor_yt_dlp_pyav_or_periodiq() -> None:
    """A web process imports no actor module: it sends by name (db.queues)."""
    code = (
        "import sys, web.app; "
        "print(sorted(m for m in ('actors', 'yt_dlp', 'av', 'periodiq', 'cv2') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_a_download_sent_after_redis_lost_its_scripts_is_run_by_a_worker(
    api: httpx.Client,
    worker: Any,
    media_server: Any,
    redis_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``SCRIPT FLUSH`` (as after a Redis restart): the pipelined EVALSHAs get NOSCRIPT,
    and the web loads the scripts and sends again (no warning: not the lifeline's)."""
    caplog.set_level(logging.WARNING, logger="db.outbox")
    redis_client.script_flush()
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/flushed.mp4")})
    assert job.status_code == 202, job.text
    assert wait_for_job(api, job.json()["id"])["status"] == "succeeded"
    events = [json.loads(fields["job"]) for _, fields in redis_client.xrange("vf:events")]
    states = [event["status"] for event in events if event["id"] == job.json()["id"]]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert [r for r in caplog.records if r.name == "db.outbox"] == []


@pytest.mark.parametrize(
    ("url", "asks_dns"),
    [
        ("http://127.0.0.1:9/a.mp4", False),
        ("https://[::1]/a.mp4", False),
        ("http://[fe80::1%25eth0]/a.mp4", False),
        ("http://93.184.216.34/a.mp4", False),
        ("ftp://127.0.0.1/a.mp4", False),  # refused by its form
        ("", False),
        (123, False),
        ("http://localhost/a.mp4", True),
        ("http://example.org/a.mp4", True),
        ("http://127.1/a.mp4", True),  # not an address Python parses: the resolver decides
    ],
)
def test_only_a_host_name_sends_the_url_check_to_a_thread(url: Any, asks_dns: bool) -> None:
    from web.videos import _resolves_by_dns

    assert _resolves_by_dns(url) is asks_dns
