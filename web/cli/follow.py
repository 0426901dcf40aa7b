"""Following one job to its end over ``WS /ws``, as ``download --wait`` does.

The follower subscribes to the job's events (``Authorization: Bearer``, the token
never in a URL) and keeps the id of the last event it saw. When the socket drops (the
web restarted, a proxy cut it, a 1013 for a slow reader) it reconnects with a
backoff and jitter and subscribes with ``since`` that id, so the server replays what
it missed; on ``resync`` (the server no longer holds that point) it reads the job
again. It also reads ``GET /api/jobs/{id}`` after every (re)subscription and after
every few quiet seconds: a change that happened while no socket listened, or before
the server had taken the subscription in, still shows. A job read as finished ends
the wait, whichever way it was seen.

A server that cannot be reached is retried until :data:`GIVE_UP_AFTER_S` pass without
an answer; an answer that cannot change by waiting (401, 404) ends the wait at once.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from web.cli.client import Api, ApiFailure, Unreachable
from web.cli.errors import CommandFailed
from web.cli.output import clean, mapping
from web.cli.progress import Display, display_for

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
#: How often the display is redrawn while nothing arrives (the indeterminate bar).
TICK_S = 0.1
#: Seconds without an event after which the job is read again over HTTP.
QUIET_REREAD_S = 3.0
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
#: Seconds without any answer from the server before the wait is given up.
GIVE_UP_AFTER_S = 300.0
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
#: Answers that may change by waiting: a store outage, a cap, a proxy between restarts.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def finished(job: dict[str, Any]) -> bool:
    return job.get("status") in FINISHED


class SocketGone(Exception):
    """The socket closed after it was open ``lived`` seconds, or could not be opened
    (0): reconnect."""

    def __init__(self, reason: str, lived: float) -> None:
        super().__init__(reason)
        self.lived = lived


class JobFollower:
    """Follows ``job_id`` on ``api``'s server, showing each state on ``display``."""

    def __init__(self, api: Api, job_id: str, display: Display) -> None:
        self.api = api
        self.job_id = job_id
        self.display = display
        self.last_event_id: str | None = None
        self.job: dict[str, Any] = {}
        self.unanswered_since: float | None = None
        self.disconnected = False

    def follow(self) -> dict[str, Any]:
        """The job once it is finished (succeeded, failed or cancelled).

        Raises:
          CommandFailed: the server refused (a revoked token, an unknown job) or gave
            no answer for :data:`GIVE_UP_AFTER_S`.
        """
        if self.reread():
            return self.job
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                return self.listen()
            except SocketGone as gone:
                if gone.lived >= MAX_BACKOFF_S:
                    backoff = FIRST_BACKOFF_S  # it worked for a while: try again at once
                if not self.disconnected:
                    self.disconnected = True
                    self.display.note(f"{gone}; reconnecting")
            self.pause(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            if self.reread():
                return self.job

    def listen(self) -> dict[str, Any]:
        """Subscribe and follow the events until the job finishes.

        Raises:
          SocketGone: the socket could not be opened, or closed.
        """
        opened_at: float | None = None
        try:
            with connect(
                self.api.ws_url,
                additional_headers=self.api.auth_headers,
                open_timeout=OPEN_TIMEOUT_S,
                close_timeout=CLOSE_TIMEOUT_S,
            ) as socket:
                opened_at = time.monotonic()
                subscription = {"action": "subscribe", "jobs": [self.job_id]}
                socket.send(json.dumps({**subscription, "since": self.last_event_id}))
                if self.disconnected:
                    self.disconnected = False
                    self.display.note("reconnected")
                if not self.reread():
                    self.receive(socket)
                return self.job
        except (OSError, WebSocketException) as exc:
            lived = 0.0 if opened_at is None else time.monotonic() - opened_at
            raise SocketGone(f"lost the live connection ({describe(exc)})", lived) from None

    def receive(self, socket: ClientConnection) -> None:
        """Take events until the job is seen finished."""
        quiet_since = time.monotonic()
        while True:
            try:
                frame = socket.recv(timeout=TICK_S)
            except TimeoutError:
                self.display.tick()
                if time.monotonic() - quiet_since >= QUIET_REREAD_S:
                    quiet_since = time.monotonic()
                    if self.reread():
                        return
                continue
            quiet_since = time.monotonic()
            if self.take(frame):
                return

    def take(self, frame: str | bytes) -> bool:
        """Handle one frame (an event or a JSON array of events); True once the job
        is seen finished."""
        try:
            data = json.loads(frame)
        except ValueError:
            raise CommandFailed("the server sent a WebSocket frame that is not JSON") from None
        for event in data if isinstance(data, list) else [data]:
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "resync":
                # The server lost our place in its stream: the row has the truth.
                if self.reread():
                    return True
            elif kind == "error":
                error = mapping(event.get("error"))
                raise CommandFailed(f"the server refused the subscription: {error.get('message')}")
            elif kind == "job" and isinstance(event.get("job"), dict):
                job = event["job"]
                if isinstance(event.get("id"), str):
                    self.last_event_id = event["id"]
                if job.get("id") == self.job_id:
                    self.job = job
                    self.display.show(job)
                    if finished(job):
                        return True
        return False

    def reread(self) -> bool:
        """Read the job over HTTP and show it; True when it is finished. No answer (or
        one worth waiting out) is no change, until :data:`GIVE_UP_AFTER_S`."""
        try:
            self.job = self.api.get(f"/api/jobs/{self.job_id}")
        except Unreachable as exc:
            self.unanswered(exc)
            return False
        except ApiFailure as exc:
            if exc.status not in TRANSIENT_STATUSES:
                raise
            self.unanswered(exc)
            return False
        self.unanswered_since = None
        self.display.show(self.job)
        return finished(self.job)

    def unanswered(self, exc: CommandFailed) -> None:
        now = time.monotonic()
        if self.unanswered_since is None:
            self.unanswered_since = now
        elif now - self.unanswered_since > GIVE_UP_AFTER_S:
            raise CommandFailed(
                f"gave up waiting: no answer for {GIVE_UP_AFTER_S:.0f} s ({exc}); the job may "
                f"still be running: vidfleet job show {self.job_id}"
            )

    def pause(self, seconds: float) -> None:
        """The backoff before a reconnect; the display stays alive meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, TICK_S))  # the reconnect backoff itself
            self.display.tick()


def describe(exc: BaseException) -> str:
    """A short reason for a failed socket: the close code, the refused handshake's
    status, or the OS error."""
    return clean(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 160)


def follow_to_end(api: Api, job_id: str) -> dict[str, Any] | None:
    """Follow ``job_id`` with a progress display on stderr: the job once finished, or
    None after Ctrl-C, which stops the waiting only (said on stderr)."""
    display = display_for(sys.stderr)
    try:
        return JobFollower(api, job_id, display).follow()
    except KeyboardInterrupt:
        display.close()
        print(
            f"stopped waiting; job {job_id} keeps running "
            f"(vidfleet job show {job_id}, vidfleet job cancel {job_id})",
            file=sys.stderr,
        )
        return None
    finally:
        display.close()
