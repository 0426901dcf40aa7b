"""JobReporter on a real Redis: state changes published together are each published."""

from __future__ import annotations

import json
from typing import Any


def job(job_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "status": status, "progress": None, "stage": status, **fields}


def test_state_changes_published_together_each_get_their_entry_snapshot_and_heartbeat(
    redis_client: Any, settings: Any
) -> None:
    from actors import stores
    from actors.reporter import JobReporter
    from db import live

    reporter = JobReporter(client=redis_client, engine=stores.engine(), heartbeat_ttl=30)
    redis_client.set(live.heartbeat_key("done"), "1")
    redis_client.set(live.cancel_key("done"), "1")
    changed = [
        job("starts", "running", message="one"),
        job("done", "succeeded", result={"n": 2}),
        job("waits", "queued"),
        job("starts-too", "running", message="four"),
    ]
    reporter.publish_many(changed)

    entries = redis_client.xrange(live.EVENTS_STREAM)
    assert [json.loads(fields["job"]) for _, fields in entries] == changed
    for published in changed:
        snapshot = json.loads(redis_client.get(live.snapshot_key(published["id"])))
        assert snapshot == published
    # Running jobs beat; a finished one loses its heartbeat and any cancel request.
    assert 0 < redis_client.ttl(live.heartbeat_key("starts")) <= 30
    assert 0 < redis_client.ttl(live.heartbeat_key("starts-too")) <= 30
    assert not redis_client.exists(live.heartbeat_key("done"), live.cancel_key("done"))
    assert not redis_client.exists(live.heartbeat_key("waits"))


def test_the_reporter_loads_its_script_again_when_redis_forgot_it(
    redis_client: Any, settings: Any
) -> None:
    from actors import stores
    from actors.reporter import JobReporter
    from db import live

    reporter = JobReporter(client=redis_client, engine=stores.engine())
    reporter.publish(job("first", "running"))
    redis_client.script_flush()
    reporter.publish(job("second", "running"))
    entries = redis_client.xrange(live.EVENTS_STREAM)
    assert [json.loads(fields["job"])["id"] for _, fields in entries] == ["first", "second"]


def test_progress_waits_for_its_running_event_to_be_announced(
    redis_client: Any, settings: Any
) -> None:
    import threading

    from actors import stores
    from actors.reporter import JobReporter
    from db import live

    reporter = JobReporter(
        client=redis_client, engine=stores.engine(), stream_interval=0, db_interval=3600
    )
    announced = threading.Event()
    running = job("starts", "running")
    reporter.progress({**running, "progress": 0.1}, announced=announced)
    assert redis_client.xlen(live.EVENTS_STREAM) == 0
    reporter.publish(running)
    announced.set()
    reporter.progress({**running, "progress": 0.2}, announced=announced)
    entries = redis_client.xrange(live.EVENTS_STREAM)
    assert [json.loads(fields["job"])["progress"] for _, fields in entries] == [None, 0.2]
