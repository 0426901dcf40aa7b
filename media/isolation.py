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

Children are forks of a fork server, not fresh interpreters. A spawned child paid an
interpreter start and the import of yt-dlp for every download (0.3-0.55 s of CPU, even
for a URL that fails at once); a fork of a process that has imported it and prepared
what each download would build first (:func:`media.download.prepare_downloads`) costs
6-12 ms of CPU beyond the step's own work (bench/isolation.py). A worker keeps one
server warm (:func:`warm_up`, at boot); without that, each call starts a server for its
one child and stops it again. The server is a single-threaded child of the caller's
process: it imports the modules of the functions it is asked to run, runs the
``prepare`` function it was given, but never runs a step itself, never connects
anywhere and never installs an audit hook, so every child starts as clean as a spawned
one and runs ``setup`` (the egress guard, :mod:`media.egress`) in its own process. A
pool of reused children was the other choice: it would save the fork too, but a child
that has run one download (and holds its guard, its refusals, yt-dlp's module state)
would run the next one.

The server double-forks, and the caller is the child subreaper during the request, so
each child is the caller's own child, exactly as a spawned one was: the caller reaps it
and reads its exit code, the child's parent-death watch watches the caller, and the
caller's process tree shows one child per running step. The server ignores the
group's SIGINT and SIGTERM (meant for the caller, which then stops its children) and
exits when the caller's end of its socket closes, however the caller ends. Linux only
(``prctl``, ``SOCK_SEQPACKET``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import logging
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from media.errors import Cancelled, MediaError
from media.priority import niceness, yield_cpu

logger = logging.getLogger(__name__)

POLL_S = 0.1
GRACE_S = 1.0
# The first request of a server imports yt-dlp there: seconds on a loaded machine.
FORK_TIMEOUT_S = 30.0
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def run_isolated(
    target: Callable[..., Any],
    *,
    kwargs: dict[str, Any],
    callbacks: dict[str, Callable[..., Any]] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    setup: Callable[[], None] | None = None,
    memory_limit: int = 0,
) -> Any:
    """``target(**kwargs, **proxies)`` in a child process group; its return value.

    Parameters:
      target: an importable function (it is pickled by reference; its module is
        imported once in the fork server, so children start with it loaded).
      setup: an importable function (or a partial of one) the child runs first, such as
        installing the egress guard (:mod:`media.egress`) for good in that process.
      callbacks: name -> function run here when the child calls its proxy.
      should_cancel: polled about ten times a second; true kills the child's group.
      memory_limit: bytes of data segment (``RLIMIT_DATA``: heap and private mappings,
        not code or stacks) the child and every program it starts may have; 0: no cap.
        The child raises :class:`OutOfMemory` beyond it, instead of taking the machine
        (or the kernel's OOM killer taking the worker).

    Raises:
      Cancelled: ``should_cancel`` returned true.
      MediaError: the child died without an answer, or could not be started
        (retryable), or whatever the target raised.
    """
    callbacks = callbacks or {}
    here, child = _start_child(_modules_of(target, setup))
    try:
        try:
            here.send((target, kwargs, list(callbacks), setup, memory_limit))
        except OSError:
            raise _died(child) from None
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


class OutOfMemory(MediaError):
    """The step needed more memory than its cap (not retried: it would again)."""

    def __init__(self, limit: int) -> None:
        mb = limit // 1024**2
        super().__init__(
            f"it needed more than {mb} MB of memory" if limit else "it ran out of memory",
            code="out_of_memory",
            retryable=False,
        )
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:  # pickled back to the caller
        return (OutOfMemory, (self.limit,))


class IsolatedChild:
    """A child forked for :func:`run_isolated`: a child of this process, which reaps it.

    Parameters:
      pid: its process id, which is also its process group's id.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exitcode: int | None = None
        self._reaped = False

    def is_alive(self) -> bool:
        if not self._reaped:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its exit code is unknown
                self._reaped = True
            else:
                if pid:
                    self._reaped = True
                    self.exitcode = os.waitstatus_to_exitcode(status)
        return not self._reaped

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for it to exit, and reap it."""
        deadline = time.monotonic() + timeout
        # waitpid has no timeout: poll it.
        while self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)


def stop_group(child: IsolatedChild) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after a grace period,
    and reap the child (and any of its group that became ours)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + GRACE_S
        while _group_alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)  # no notification for a whole group's exit: poll it
        if not _group_alive(child):
            break
    child.join(GRACE_S)
    _reap_group(child.pid)


def _group_alive(child: IsolatedChild) -> bool:
    child.join(0)  # our own zombie would keep the group in existence
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies count as gone: they hold nothing but a table entry.
    return any(_is_live_member(pid, child.pid) for pid in _pids())


def _reap_group(pgid: int) -> None:
    # Members orphaned while this process was a subreaper (see _subreaper) are ours.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _is_live_member(pid: int, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"


def _died(child: IsolatedChild) -> MediaError:
    child.join(GRACE_S)
    return MediaError(
        f"the media process ended without an answer (exit code {child.exitcode})",
        code="process_died",
        retryable=True,
    )


def _modules_of(*functions: Callable[..., Any] | None) -> list[str]:
    """The modules the fork server should have imported before forking for these."""
    names = []
    for function in functions:
        while isinstance(function, partial):
            function = function.func
        module = getattr(function, "__module__", None)
        if module and module != "__main__":
            names.append(module)
    return names


# -- this process's side of the fork server ------------------------------------------


class ForkServerDied(Exception):
    """The fork server did not answer a request (it is replaced on the next one)."""


class _ForkServer:
    """The warm process that forks children, as this process sees it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The path goes along as spawn would send it: the server imports what we import.
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            f"from media.isolation import serve_forks; serve_forks({theirs.fileno()})"
        )
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
        ours.settimeout(FORK_TIMEOUT_S)
        self.socket = ours

    def running(self) -> bool:
        return self.process.poll() is None

    def fork(self, modules: list[str], there: Connection) -> None:
        """Have the server fork a child that talks over ``there``; it is our child when
        this returns.

        Raises:
          ForkServerDied: no answer, or a broken one.
        """
        try:
            with _subreaper():
                request = json.dumps({"modules": modules, "calls": []}).encode()
                socket.send_fds(self.socket, [request], [there.fileno()])
                answer = self.socket.recv(64)
        except OSError as exc:  # TimeoutError and a closed socket too
            raise ForkServerDied(str(exc)) from exc
        if answer != b"forked":
            raise ForkServerDied(answer.decode(errors="replace") or "the fork server exited")

    def preload(self, modules: list[str], calls: list[str]) -> None:
        """Have the server import ``modules`` and run ``calls`` (``module:name``) now;
        it does not answer."""
        # A dead server is replaced at the next request.
        with contextlib.suppress(OSError):
            self.socket.send(json.dumps({"modules": modules, "calls": calls}).encode())

    def stop(self) -> None:
        self.socket.close()  # the server exits at the end of its socket
        try:
            self.process.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_server: _ForkServer | None = None
_warm = False
_libc = ctypes.CDLL(None, use_errno=True)
_server_lock = threading.Lock()


def _start_child(modules: list[str]) -> tuple[Connection, IsolatedChild]:
    """A new child, waiting for its work on the returned connection.

    A server that does not answer is replaced and asked once more, on a new pipe: the
    old one may still fork a child on the first pipe, which then finds it closed and
    exits, instead of answering in the place of the second.

    Raises:
      MediaError: no child could be started (retryable).
    """
    for attempt in (1, 2):
        here, there = multiprocessing.Pipe()
        try:
            with _server_lock, there:
                _fork(modules, there)
            # The child's first word, sent before it waits for the work.
            if not here.poll(FORK_TIMEOUT_S):
                raise ForkServerDied("the new child did not report")
            kind, pid = here.recv()
        except (ForkServerDied, EOFError, OSError) as exc:
            here.close()
            if attempt == 1 and isinstance(exc, ForkServerDied):
                continue
            raise MediaError(
                f"could not start a media process: {exc}", code="process_died", retryable=True
            ) from exc
        except BaseException:
            # Raised into this thread (a time limit, a shutdown) after the fork: the
            # child, ours by now, is stopped and reaped, or sees EOF and exits by itself.
            if here.poll(POLL_S):
                with contextlib.suppress(BaseException):
                    stop_group(IsolatedChild(here.recv()[1]))
            here.close()
            raise
        assert kind == "pid"
        return here, IsolatedChild(pid)
    raise AssertionError("unreachable: the second attempt returns or raises")


def _fork(modules: list[str], there: Connection) -> None:
    # Called with _server_lock held: one request at a time on the server's socket.
    global _server
    server = _running_server()
    try:
        server.fork(modules, there)
    except BaseException:
        # Half a request (a timeout, an exception raised into this thread) would leave
        # an answer for the next one to read: never reuse that server.
        server.stop()
        _server = None
        raise
    if not _warm:
        server.stop()
        _server = None


def _running_server() -> _ForkServer:
    # Called with _server_lock held.
    global _server
    if _server is None or not _server.running():
        if _server is not None:
            _server.stop()
        _server = _ForkServer()
    return _server


def warm_up(*functions: Callable[..., Any], prepare: Callable[[], None] | None = None) -> None:
    """Keep a fork server running from now on, with the modules of ``functions``
    imported, for :func:`run_isolated` calls to come (a worker does this at boot).

    Without it each call starts a server for its one child and stops it again, as a
    process that runs an isolated step now and then needs no process kept around.

    Parameters:
      functions: importable functions the children will run.
      prepare: an importable function the server runs once after the imports, to have
        done what every child would otherwise do first (and cache) itself. It must not
        connect anywhere, start a thread or install an audit hook: every child would
        inherit the result.
    """
    global _warm
    calls = [] if prepare is None else [f"{prepare.__module__}:{prepare.__qualname__}"]
    with _server_lock:
        _warm = True
        _running_server().preload(_modules_of(*functions, prepare), calls)


def cool_down() -> None:
    """Stop the fork server that :func:`warm_up` kept; running children go on."""
    global _warm, _server
    with _server_lock:
        _warm = False
        if _server is not None:
            _server.stop()
            _server = None


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """This process adopts the orphans of its descendants meanwhile: the child the
    server's short-lived intermediate leaves behind becomes ours."""
    already = ctypes.c_int(0)
    _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(already))
    if already.value:  # for reasons of its own: leave it so
        yield
        return
    _prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1))
    try:
        yield
    finally:
        _prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(0))


def _prctl(option: int, argument: Any) -> None:
    # prctl is variadic: every argument must be passed at its full width.
    zero = ctypes.c_ulong(0)
    if _libc.prctl(option, argument, zero, zero, zero) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def _forget_server() -> None:
    # A forked copy of this process must not share the parent's server socket.
    global _server, _server_lock, _warm
    _server = None
    _server_lock = threading.Lock()
    _warm = False


atexit.register(cool_down)
os.register_at_fork(after_in_child=_forget_server)


# -- the fork server and its children ------------------------------------------------


def serve_forks(fd: int) -> None:
    """The fork server's main loop (``python -c``, see :class:`_ForkServer`).

    Each request is JSON, the modules to have imported and the functions to run once
    (``{"modules": [...], "calls": ["module:name"]}``), with one file descriptor, the
    child's end of its connection; the answer, ``forked``, comes once the child has
    been handed over to the requesting process. A request without a descriptor only
    prepares, and has no answer.

    Parameters:
      fd: the server's end of its socket to the requesting process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=fd)
    while True:
        message, fds, _flags, _address = socket.recv_fds(control, 4096, 1)
        if not message:
            return  # the requesting process has gone
        request = json.loads(message)
        for name in request["modules"]:
            _preload(name)
        for call in request["calls"]:
            _prepare(call)
        if not fds:
            continue
        try:
            intermediate = os.fork()
        except OSError as exc:
            control.send(f"fork failed: {exc}".encode())
        else:
            if intermediate == 0:
                _hand_over(control, fds[0])
            os.waitpid(intermediate, 0)
            control.send(b"forked")
        for child_end in fds:
            os.close(child_end)


def _preload(name: str) -> None:
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except Exception:
        return  # the child's own import raises it where it is reported
    # Objects that exist now are never collected here: a child's collections leave
    # their pages shared instead of copying them.
    gc.collect()
    gc.freeze()


def _prepare(call: str) -> None:
    module, name = call.split(":")
    try:
        getattr(importlib.import_module(module), name)()
    except Exception as exc:  # the children do it themselves, then
        logger.warning("fork server: %s failed: %r", call, exc)
        return
    gc.collect()
    gc.freeze()


def _hand_over(control: socket.socket, fd: int) -> None:
    """In the intermediate: fork the child and exit, so that the child is adopted by
    the requesting process (a subreaper meanwhile). Never returns."""
    try:
        if os.fork() == 0:
            control.close()
            _child_main(Connection(fd))
    finally:
        os._exit(0)


def _child_main(conn: Connection) -> None:
    """Never returns: the child must not go back into the server's loop."""
    code = 0
    try:
        os.setsid()  # a process group of our own, inherited by ffmpeg & co.
        yield_cpu(0, niceness())  # a new session's autogroup: as nice as the worker
        # As a new interpreter would have them: the server's SIG_IGN would be inherited
        # by the child's ffmpeg (an ignored signal survives exec) and SIGTERM, our stop
        # request, would not stop it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.send(("pid", os.getpid()))
        _run(conn)
    except BaseException:
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run(conn: Connection) -> None:
    lock = threading.Lock()
    try:
        # Sent once the hand-over is done: our parent is the requesting process now.
        target, kwargs, names, setup, memory_limit = conn.recv()
    except EOFError:
        return  # the requester gave up on us
    except BaseException as exc:  # such as a target that cannot be imported
        conn.send(("error", exc))
        return
    parent = os.getppid()

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
        if memory_limit:
            # Inherited by ffmpeg & co.; the server's own memory (yt-dlp, imported before
            # the fork) counts too, which is why the cap is generous.
            resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
        if setup is not None:
            setup()
        result = target(**kwargs, **{name: proxy(name) for name in names})
    except MemoryError:
        conn.send(("error", OutOfMemory(memory_limit)))
    except BaseException as exc:  # everything goes back to the caller
        conn.send(("error", exc))
    else:
        conn.send(("done", result))
