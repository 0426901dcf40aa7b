"""media.isolation's warm fork server: children forked from it keep every guarantee of
a freshly started one (own session, the whole group stopped, a guard of their own,
nothing left behind), and a killed child or server does not disturb the next step."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from media.download import download_video
from media.egress import install_egress_guard
from media.errors import Cancelled, MediaError
from media.isolation import cool_down, run_isolated, warm_up
from tests.media import isolated_targets
from tests.support import alive, child_processes, descendants, wait_for

SERVER_MARK = "serve_forks"


@pytest.fixture
def warm() -> Iterator[int]:
    """A warm fork server (as a worker keeps one); its pid."""
    warm_up(download_video, install_egress_guard, isolated_targets.whereabouts)
    yield fork_server()
    cool_down()


def fork_server() -> int:
    (server,) = fork_servers()
    return server


def fork_servers() -> list[int]:
    # Its forks have its command line too, but sessions of their own.
    return [
        pid
        for pid in own_children()
        if SERVER_MARK in command_line(pid) and os.getpgid(pid) == os.getpgid(0)
    ]


def own_children() -> list[int]:
    return [pid for pid in descendants(os.getpid()) if parent_of(pid) == os.getpid()]


def isolated_children() -> list[int]:
    return [pid for pid in own_children() if os.getpgid(pid) == pid]


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def open_fds() -> set[str]:
    """This process's descriptors. A check compares them as sets, and asks that none be
    new: an object an earlier test leaked may close its own meanwhile (garbage
    collection), which is no descriptor of ours left open."""
    return set(os.listdir("/proc/self/fd"))


def test_a_warm_child_is_a_child_of_the_caller_in_a_session_of_its_own(warm: int) -> None:
    where = run_isolated(isolated_targets.whereabouts, kwargs={})
    assert where["ppid"] == os.getpid()
    assert where["pid"] == where["pgid"] == where["sid"] != warm
    assert not alive(where["pid"])
    assert fork_server() == warm  # the same server serves the next one


def test_the_guard_is_in_the_child_only_never_in_the_server_or_here(
    warm: int, tmp_path: Path
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        guarded = run_isolated(
            isolated_targets.try_shell_and_loopback,
            kwargs={"port": port},
            setup=partial(install_egress_guard, allow_private=False),
        )
        # A fork of the same server after it: had the server a hook, this one would too.
        bare = run_isolated(isolated_targets.try_shell_and_loopback, kwargs={"port": port})
        # And this process, whose children are guarded, is not.
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        subprocess.run(["sh", "-c", "true"], check=True)
    finally:
        listener.close()
    assert set(guarded.values()) == {"EgressRefused"}, guarded
    assert set(bare.values()) == {"ok"}, bare
    # Beyond its standard streams, the server holds its one socket to us: no connection.
    server_fds = [
        os.readlink(f"/proc/{warm}/fd/{fd}") for fd in os.listdir(f"/proc/{warm}/fd") if int(fd) > 2
    ]
    assert len(server_fds) == 1 and server_fds[0].startswith("socket:"), server_fds


def test_a_child_holds_nothing_of_the_server_and_leaves_no_descriptor_here(warm: int) -> None:
    before = open_fds()
    fds = run_isolated(isolated_targets.open_fds, kwargs={})
    # Its standard streams and its end of the pipe to us: not the server's socket.
    beyond_streams = [target for fd, target in fds.items() if fd > 2]
    assert len(beyond_streams) == 1 and beyond_streams[0].startswith("socket:"), fds
    assert open_fds() <= before


def test_a_sigkilled_warm_child_leaves_no_process_and_the_next_step_runs(
    warm: int, tmp_path: Path, media_server: Any
) -> None:
    before = child_processes(os.getpid())
    fds_before = open_fds()
    updates: list[Any] = []
    outcome: list[BaseException] = []

    def download() -> None:
        try:
            run_isolated(
                download_video,
                kwargs={"url": media_server.url("/crawl/warm-killed.mp4"), "workdir": tmp_path,
                        "allow_generic": True},
                callbacks={"on_progress": updates.append},
                setup=partial(install_egress_guard, allow_private=True),
            )  # fmt: skip
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=download)
    runner.start()
    wait_for(lambda: any(u.downloaded_bytes for u in updates), what="the download to start")
    (child,) = isolated_children()
    group = {child} | descendants(child)
    os.kill(child, signal.SIGKILL)
    runner.join(10)
    assert not runner.is_alive()
    assert isinstance(outcome[0], MediaError) and outcome[0].code == "process_died"
    assert outcome[0].retryable
    assert not any(alive(pid) for pid in group)
    assert child_processes(os.getpid()) == before
    assert fork_server() == warm
    result = run_isolated(
        download_video,
        kwargs={"url": media_server.url("/media/warm-next.mp4"), "workdir": tmp_path / "next",
                "allow_generic": True},
    )  # fmt: skip
    assert result.path.is_file() and result.video_id == "warm-next"
    assert child_processes(os.getpid()) == before
    # The media server's handlers here close their connections once they notice.
    wait_for(lambda: open_fds() <= fds_before, timeout=10, what="descriptors to be closed")


def test_a_cancelled_warm_child_stops_with_its_ffmpeg_and_the_next_step_runs(warm: int) -> None:
    before = child_processes(os.getpid())
    started: list[int] = []
    with pytest.raises(Cancelled):
        run_isolated(
            isolated_targets.run_ffmpeg_forever,
            kwargs={},
            callbacks={"on_started": started.append},
            should_cancel=lambda: bool(started),
        )
    assert not alive(started[0])
    assert child_processes(os.getpid()) == before
    assert (
        run_isolated(
            isolated_targets.ask_and_add, kwargs={"a": 1, "b": 2}, callbacks={"double": abs}
        )
        == 3
    )


def test_a_killed_fork_server_is_replaced_at_the_next_step(warm: int) -> None:
    os.kill(warm, signal.SIGKILL)
    where = run_isolated(isolated_targets.whereabouts, kwargs={})
    assert where["ppid"] == os.getpid()
    assert fork_server() != warm
    assert not alive(warm)


def test_without_a_warm_server_a_step_leaves_no_server_behind() -> None:
    before = child_processes(os.getpid())
    assert run_isolated(isolated_targets.whereabouts, kwargs={})["ppid"] == os.getpid()
    assert child_processes(os.getpid()) == before
    assert not fork_servers()
