"""How the web hands a job on: its message, written by the web's pipelined enqueue, is
the one Dramatiq's broker writes and a real worker runs; the URL check asks DNS only
for host names."""

from __future__ import annotations

import asyncio
import json
import logging
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
    from actors import broker
    from actors.enqueue import job_actors, job_message
    from db import live
    from web.dispatch import make_enqueuer

    message = job_message(job_actors()["download"], "a-job-id", "bulk")
    hooks = SeesEnqueues()
    broker.middleware.append(hooks)
    try:
        by_broker = broker.enqueue(message)

        async def pipelined() -> dramatiq.Message:
            client = live.async_client(settings.redis_url)
            enqueuer = make_enqueuer(client)
            async with client.pipeline(transaction=False) as pipe:
                sent, _ = await enqueuer.add(pipe, message)
                await pipe.execute()
            enqueuer.enqueued(sent)
            await client.aclose()
            return sent

        by_web = asyncio.run(pipelined())
    finally:
        broker.middleware.remove(hooks)

    first, second = stored_messages(redis_client, "bulk")
    ids = [m["options"].pop("redis_message_id") for m in (first, second)]
    assert ids == [by_broker.options["redis_message_id"], by_web.options["redis_message_id"]]
    assert ids[0] != ids[1]
    assert first == second == json.loads(message.encode())
    assert hooks.seen == [(hook, i) for i in ids for hook in ("before", "after")]
    # The broker's heartbeat, as its own enqueue refreshes it.
    assert redis_client.zscore("dramatiq:__heartbeats__", broker.broker_id) is not None


def test_a_download_sent_after_redis_lost_its_scripts_is_run_by_a_worker(
    api: httpx.Client,
    worker: Any,
    media_server: Any,
    redis_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``SCRIPT FLUSH`` (as after a Redis restart): the pipelined EVALSHAs get NOSCRIPT,
    and the web loads the scripts and sends again (no warning: not the lifeline's)."""
    caplog.set_level(logging.WARNING, logger="web.dispatch")
    redis_client.script_flush()
    job = api.post("/api/videos/download", json={"url": media_server.url("/media/flushed.mp4")})
    assert job.status_code == 202, job.text
    assert wait_for_job(api, job.json()["id"])["status"] == "succeeded"
    events = redis_client.xrange("vf:events")
    states = [json.loads(fields["job"])["status"] for _, fields in events]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert [r for r in caplog.records if r.name == "web.dispatch"] == []


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
