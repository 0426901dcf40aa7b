"""Runs a media function in a child process of its own session, so that stopping it
stops everything it started.

yt-dlp and FFmpeg start subprocesses of their own (ffmpeg for merging and fixups); a
thread cannot be killed and its subprocesses would outlive it. The child here runs in a
new session (its own process group): cancel, timeout, a worker shutdown or any other
exit of the caller kills the whole group (SIGTERM, then SIGKILL after a grace period).
A child whose parent dies exits and takes its group with it.

Callbacks (progress reports, questions such as "is this video already in the library?")
are proxied back to the caller's thread over a pipe, so the function keeps its ordinary
signature.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from media.errors import Cancelled, MediaError

POLL_S = 0.1
GRACE_S = 1.0


def run_isolated(
    target: Callable[..., Any],
    *,
    kwargs: dict[str, Any],
    callbacks: dict[str, Callable[..., Any]] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    setup: Callable[[], None] | None = None,
) -> Any:
    """``target(**kwargs, **proxies)`` in a child process group; its return value.

    Parameters:
      target: an importable function (it is pickled by reference).
      setup: an importable function (or a partial of one) the child runs first, such as
        installing the egress guard (:mod:`media.egress`) for good in that process.
      callbacks: name -> function run here when the child calls its proxy.
      should_cancel: polled about ten times a second; true kills the child's group.

    Raises:
      Cancelled: ``should_cancel`` returned true.
      MediaError: the child died without an answer (retryable), or whatever the target
        raised.
    """
    callbacks = callbacks or {}
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    child = context.Process(
        target=_child_main, args=(there, target, kwargs, list(callbacks), setup), daemon=True
    )
    child.start()
    there.close()
    try:
        while True:
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            if here.poll(POLL_S):
                try:
                    kind, payload = here.recv()
                except EOFError:
                    raise _died(child) from None
                if kind == "done":
                    return payload
                if kind == "error":
                    raise payload
                name, args, wants_reply = payload
                answer = callbacks[name](*args)
                if wants_reply:
                    here.send(answer)
            elif not child.is_alive() and not here.poll():
                raise _died(child)
    finally:
        stop_group(child)
        here.close()


def stop_group(child: Any) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after a grace period."""
    if child.pid is None:
        return
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(child.pid):
            child.join(0.05)
    child.join(GRACE_S)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies count as gone: they hold nothing but a table entry.
    return any(_is_live_member(pid, pgid) for pid in _pids())


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _is_live_member(pid: int, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"


def _died(child: Any) -> MediaError:
    child.join(GRACE_S)
    return MediaError(
        f"the media process ended without an answer (exit code {child.exitcode})",
        code="process_died",
        retryable=True,
    )


def _child_main(
    conn: Connection,
    target: Callable[..., Any],
    kwargs: dict[str, Any],
    names: list[str],
    setup: Callable[[], None] | None,
) -> None:
    os.setsid()  # a process group of our own, inherited by ffmpeg & co.
    parent = os.getppid()
    lock = threading.Lock()

    def orphan_watch() -> None:
        while True:
            time.sleep(0.5)  # polling: there is no portable "parent died" notification
            if os.getppid() != parent:
                os.killpg(0, signal.SIGKILL)

    threading.Thread(target=orphan_watch, daemon=True).start()

    def proxy(name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            wants_reply = not name.startswith("on_")
            with lock:
                conn.send(("call", (name, args, wants_reply)))
                return conn.recv() if wants_reply else None

        return call

    try:
        if setup is not None:
            setup()
        result = target(**kwargs, **{name: proxy(name) for name in names})
    except BaseException as exc:  # everything goes back to the caller
        conn.send(("error", exc))
    else:
        conn.send(("done", result))
