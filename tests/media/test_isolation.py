"""media.isolation: a media step in its own process group, stoppable with everything it
started."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from media.download import download_video
from media.errors import Cancelled, MediaError, NotMedia
from media.isolation import run_isolated
from tests.media import isolated_targets
from tests.support import alive, child_processes


@pytest.mark.serial
def test_cancelling_a_running_ffmpeg_step_kills_it_and_its_process_within_two_seconds() -> None:
    started: list[int] = []
    asked_at: list[float] = []

    def should_cancel() -> bool:
        if started and not asked_at:
            asked_at.append(time.monotonic())
        return bool(started)

    with pytest.raises(Cancelled):
        run_isolated(
            isolated_targets.run_ffmpeg_forever,
            kwargs={},
            callbacks={"on_started": started.append},
            should_cancel=should_cancel,
        )
    took = time.monotonic() - asked_at[0]
    assert took < 2.0, took
    assert not alive(started[0]), "ffmpeg outlived the cancel"


def test_callbacks_answer_across_the_process_boundary() -> None:
    result = run_isolated(
        isolated_targets.ask_and_add,
        kwargs={"a": 20, "b": 2},
        callbacks={"double": lambda n: n * 2},
    )
    assert result == 42


def test_errors_come_back_as_themselves() -> None:
    with pytest.raises(NotMedia) as failed:
        run_isolated(isolated_targets.refuse, kwargs={})
    assert failed.value.code == "not_media" and not failed.value.retryable


def test_a_child_that_dies_is_a_retryable_error() -> None:
    with pytest.raises(MediaError) as failed:
        run_isolated(isolated_targets.die, kwargs={})
    assert failed.value.code == "process_died" and failed.value.retryable


def test_a_download_runs_isolated_with_its_progress(tmp_path: Path, media_server: Any) -> None:
    updates: list[Any] = []
    before = child_processes(os.getpid())
    result = run_isolated(
        download_video,
        kwargs={"url": media_server.url("/slow/iso.mp4"), "workdir": tmp_path,
                "allow_generic": True},
        callbacks={"on_progress": updates.append},
    )  # fmt: skip
    assert result.path.is_file() and result.video_id == "iso"
    assert len(updates) >= 2
    assert child_processes(os.getpid()) == before  # the child and all it started are gone


def test_a_step_over_its_memory_cap_fails_with_a_readable_error_and_the_next_runs() -> None:
    """The cap holds in the child and in the programs it starts, not in the caller."""
    limit = 512 * 1024**2
    with pytest.raises(MediaError) as raised:
        run_isolated(isolated_targets.hoard_memory, kwargs={"megabytes": 2048}, memory_limit=limit)
    assert raised.value.code == "out_of_memory" and not raised.value.retryable
    assert "512 MB" in raised.value.message
    status = run_isolated(isolated_targets.program_taking_a_gigabyte, kwargs={}, memory_limit=limit)
    assert status != 0  # its program (as ffmpeg would be) inherits the cap
    assert run_isolated(isolated_targets.program_taking_a_gigabyte, kwargs={}) == 0  # uncapped
    assert (
        run_isolated(isolated_targets.hoard_memory, kwargs={"megabytes": 64}, memory_limit=limit)
        == 64
    )
    assert len(bytearray(1024**3)) == 1024**3  # the caller is not capped
