"""``WS /ws``: subscribe to job events.

In: ``{"action": "subscribe", "jobs": ["*"] | [ids], "since": stream-id | null}`` (again
at any time to change the subscription). Out: frames of one event or a JSON array of
events, ``{"type": "job", "id": ..., "job": {...}}`` and ``{"type": "resync"}``. A
handshake over the process's or the credential's socket cap is refused with a 429 and
the JSON error (or closed with 1013 where the server cannot send an HTTP response).
A store that fails while a socket is served (Redis during a replay, or the hub's
reader losing the stream) closes it with 1013 and a reason, so the client reconnects
and resumes; any other failure closes it with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any

from starlette import status
from starlette.endpoints import WebSocketEndpoint
from starlette.websockets import WebSocket, WebSocketDisconnect

from db.settings import Settings
from web.errors import describe_failure, error_response, unavailable_store
from web.hub import ProgressHub, StreamUnavailable, Subscriber, TooManySockets, parse_stream_id

logger = logging.getLogger(__name__)

MAX_JOB_IDS = 1_000
RETRY_AFTER_S = 30
STOP_SENDER_TIMEOUT_S = 5.0
DENIAL_EXTENSION = "websocket.http.response"


class JobEvents(WebSocketEndpoint):
    encoding = "json"

    async def dispatch(self) -> None:
        # Counted around the whole connection, so whatever ends it (the client, a 1013
        # for a slow socket, the server shutting down, an error) frees its place.
        websocket = WebSocket(self.scope, receive=self.receive, send=self.send)
        self.hub: ProgressHub = websocket.app.state.hub
        self.settings: Settings = websocket.app.state.settings
        credential = self.scope.get("credential") or self.scope.get("role")
        try:
            self.hub.open_socket(
                credential,
                max_sockets=self.settings.max_websockets,
                max_per_credential=self.settings.max_websockets_per_credential,
            )
        except TooManySockets as refused:
            await self._refuse(websocket, str(refused))
            return
        self._counted: Hashable | None = credential
        try:
            await super().dispatch()
        finally:
            self._count_out()

    def _count_out(self) -> None:
        """Free this socket's place against the caps, once (at the disconnect, so that
        nothing still winding down can keep it taken; and at the end, whatever ended it)."""
        if self._counted is not None:
            self.hub.close_socket(self._counted)
            self._counted = None

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.sender: asyncio.Task[None] | None = None

        async def close(code: int, reason: str) -> None:
            # Stop sending first: the close frame must not queue behind more events.
            if self.sender is not None and self.sender is not asyncio.current_task():
                self.sender.cancel()
            with contextlib.suppress(Exception):
                await websocket.close(code, reason)

        self.subscriber = Subscriber(
            send_text=websocket.send_text, close=close, queue_size=self.hub.queue_size
        )

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        problem = self._subscription_problem(data)
        if problem is not None:
            await websocket.send_json({"type": "error", "error": problem})
            return
        await self._stop_sender()
        jobs = data.get("jobs", ["*"])
        self.subscriber.jobs = None if "*" in jobs else frozenset(jobs)
        self.sender = asyncio.create_task(self._send(data.get("since")))

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        self._count_out()
        self.hub.remove(self.subscriber)
        await self._stop_sender()

    async def _send(self, since: str | None) -> None:
        # The sender is a task of its own: what it raises would reach no handler.
        try:
            await self.hub.serve(
                self.subscriber, since, max_replay_events=self.settings.max_replay_events
            )
        except StreamUnavailable as exc:
            # The hub logged the outage once; each socket it turns away is not news.
            await self.subscriber.close(status.WS_1013_TRY_AGAIN_LATER, str(exc))
        except Exception as exc:
            store = unavailable_store(exc)
            if store is not None:
                logger.warning(
                    "closing a WebSocket: the %s is unavailable (%s)", store, describe_failure(exc)
                )
                reason = f"the {store} is unavailable; reconnect shortly"
                await self.subscriber.close(status.WS_1013_TRY_AGAIN_LATER, reason)
            elif isinstance(exc, RuntimeError | OSError | WebSocketDisconnect):
                # The socket went away mid-send; on_disconnect cleans up.
                logger.info("a WebSocket sender stopped", exc_info=True)
                await self.subscriber.close(status.WS_1011_INTERNAL_ERROR, "")
            else:
                logger.exception("a WebSocket sender failed")
                await self.subscriber.close(status.WS_1011_INTERNAL_ERROR, "internal error")

    @staticmethod
    async def _refuse(websocket: WebSocket, message: str) -> None:
        if DENIAL_EXTENSION not in websocket.scope.get("extensions", {}):
            await websocket.close(status.WS_1013_TRY_AGAIN_LATER)
            return
        response = error_response(status.HTTP_429_TOO_MANY_REQUESTS, "too_many_websockets", message)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        await websocket.send_denial_response(response)

    async def _stop_sender(self) -> None:
        sender, self.sender = self.sender, None
        if sender is None:
            return
        sender.cancel()
        # Bounded: the connection must end even if its (cancelled) sender is slow to.
        done, _ = await asyncio.wait({sender}, timeout=STOP_SENDER_TIMEOUT_S)
        if not done:
            logger.warning(
                "a WebSocket sender did not stop %s s after its cancel", STOP_SENDER_TIMEOUT_S
            )

    @staticmethod
    def _subscription_problem(data: Any) -> dict[str, str] | None:
        if not isinstance(data, dict) or data.get("action") != "subscribe":
            return {"code": "bad_message", "message": 'expected {"action": "subscribe", ...}'}
        jobs = data.get("jobs", ["*"])
        if (
            not isinstance(jobs, list)
            or len(jobs) > MAX_JOB_IDS
            or not all(isinstance(job, str) and len(job) <= 64 for job in jobs)
        ):
            return {"code": "bad_jobs", "message": 'jobs must be a list of job ids or ["*"]'}
        since = data.get("since")
        if since is not None:
            problem = {"code": "bad_since", "message": "since must be a stream id or null"}
            if not isinstance(since, str):
                return problem
            try:
                parse_stream_id(since)
            except ValueError:
                return problem
        return None
