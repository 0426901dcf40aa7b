"""The job watcher keeps the heartbeats of the jobs running in a worker process."""

from __future__ import annotations

from unittest.mock import Mock

from actors.job_watcher import JobWatcher
from tests.support import wait_for


def test_a_watcher_started_again_right_after_a_stop_keeps_beating() -> None:
    """A worker stopped and started again at once (as between two tests, or a restart in
    one process) must not keep the old watcher thread, which is about to end: its jobs
    would have had no heartbeat, and the lifeline would have taken them over."""
    beats: list[list[str]] = []
    reporter = Mock()
    reporter.redis_outage.due.return_value = True
    reporter.redis_outage.down = False
    reporter.beat.side_effect = lambda ids: beats.append(list(ids))
    reporter.client.mget.side_effect = lambda keys: [None] * len(keys)
    context = Mock(id="job-1")
    watcher = JobWatcher(
        reporter=reporter, running=lambda: [context], ending=list, heartbeat_timeout=3
    )
    watcher.ensure_running()
    old = watcher._thread
    watcher.stop()
    watcher.ensure_running()  # at once: the old thread is still alive, but ending
    assert watcher._thread is not old and watcher._thread is not None
    assert watcher._thread.is_alive() and not watcher._stop.is_set()
    wait_for(lambda: beats, timeout=5, what="a heartbeat from the new thread")
    assert beats[-1] == ["job-1"]
    watcher.stop()
