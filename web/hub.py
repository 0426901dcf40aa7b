"""ProgressHub: one Redis Stream reader per web process, fanned out to its sockets.

The reader ``XREAD BLOCK``s on ``vf:events`` from the last id it saw, on a connection of
its own whose socket timeout is above the block time, and offers each event to every
matching subscriber's bounded queue. A subscriber whose queue overflows is closed with
1013 instead of slowing the others down.

Each event is encoded once per process: the reader splices the stream entry's job JSON
into the event's wire text (:class:`Event`) and parses the job only when a filtered
subscription asks for its id; a frame is a join of those texts, so no socket encodes
anything, and sockets sent the same lone event send the same string.

A subscriber's sender sends an event at once when it has sent nothing in the last
``batch_interval``; otherwise it waits out the interval and sends everything pending as
one frame (a JSON array). Idle sockets get no added latency; busy ones get one frame per
interval (DESIGN §5 has the measurements behind this).

On subscribe with ``since`` the sender first replays the stream after that id, then
goes live; ids already sent are skipped, so the switch loses and repeats nothing. A
``since`` that the stream no longer covers, or that more than ``max_replay_events``
events follow, gets ``{"type": "resync"}`` instead of a replay. The hub also counts its
open sockets, in total and per credential, so the endpoint can refuse one over a cap.

While the reader cannot read the stream (Redis is gone), no socket would get another
event, so every socket is closed with 1013 and a reason, and new ones are refused the
same way until a read succeeds again: clients reconnect with their ``since`` and
replay what they missed. The reader logs one line when an outage starts and one when
it ends, not a traceback per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette import status

from db import live
from web.errors import describe_failure

logger = logging.getLogger(__name__)

BLOCK_MS = 5_000
BATCH_INTERVAL_S = 0.05
QUEUE_SIZE = 2_000
MAX_BATCH = 500  # events per frame: keeps frames well under clients' size limits
REPLAY_CHUNK = 1_000
MAX_REPLAY_EVENTS = 5_000
RECONNECT_DELAY_S = 1.0
STREAM_DOWN_REASON = "the progress stream is unavailable; reconnect shortly"

StreamId = tuple[int, int]
Entry = tuple[str, dict[str, str]]  # a stream entry, decoded (decode_responses=True)


def parse_stream_id(value: str) -> StreamId:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; raises ValueError."""
    ms, _, seq = value.partition("-")
    parsed = (int(ms), int(seq or 0))
    if parsed[0] < 0 or parsed[1] < 0:
        raise ValueError(value)
    return parsed


class Event:
    """One stream entry as a WebSocket event: its wire text, built once, shared by every
    socket it goes to; the job itself is decoded only if a filter needs its ids.

    Parameters:
      entry_id: the stream id.
      fields: the entry's fields (``job``: the job's JSON, as :func:`live.encode_event`
        wrote it).
    """

    __slots__ = ("_fields", "_job", "id", "stream_id", "wire")

    def __init__(self, entry_id: str, fields: dict[str, str]) -> None:
        self.id = entry_id
        self.stream_id = parse_stream_id(entry_id)
        self.wire = live.event_wire(entry_id, fields)
        self._fields = fields
        self._job: dict[str, Any] | None = None

    @property
    def job(self) -> dict[str, Any]:
        if self._job is None:
            # Once per process, and only for events a filtered subscription looks at.
            self._job = cast(dict[str, Any], live.decode_event(self.id, self._fields)["job"])
        return self._job


def frame(events: list[Event]) -> str:
    """The text of one frame: the lone event, or a JSON array of them."""
    if len(events) == 1:
        return events[0].wire
    return "[" + ",".join([event.wire for event in events]) + "]"


class TooManySockets(Exception):
    """A new socket would exceed the process's or its credential's cap."""


class StreamUnavailable(Exception):
    """The hub's reader cannot read the event stream now: there is nothing to serve."""


class Subscriber:
    """One socket's subscription: a filter, a bounded queue and the last id sent.

    Parameters:
      send_text: sends one text frame on the socket.
      close: closes the socket with a code and a reason.
    """

    def __init__(
        self,
        *,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Coroutine[Any, Any, None]],
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.send_text = send_text
        self.close = close
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self.jobs: frozenset[str] | None = frozenset()  # None: every job
        self.last_sent: StreamId | None = None
        self.last_send_at = float("-inf")
        self.overflowed = False

    def wants(self, event: Event) -> bool:
        if self.jobs is None:
            return True
        job = event.job
        return job["id"] in self.jobs or job.get("parent_id") in self.jobs

    def offer(self, event: Event) -> bool:
        """Queue an event; False when the queue is full (the socket is too slow)."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True

    def fresh(self, events: Iterable[Event]) -> list[Event]:
        """The events not sent yet, in order (drops what a replay already sent)."""
        out = []
        for event in events:
            if self.last_sent is None or event.stream_id > self.last_sent:
                out.append(event)
                self.last_sent = event.stream_id
        return out

    async def send_events(self, events: list[Event]) -> None:
        events = self.fresh(events)
        if not events:
            return
        await self.send_text(frame(events))
        self.last_send_at = asyncio.get_running_loop().time()


class ProgressHub:
    """Reads the event stream once per process and fans it out.

    Parameters:
      redis_url: where the stream lives.
      block_ms: how long one ``XREAD`` blocks.
      batch_interval: the least time between two frames to one socket.
      queue_size: how many events may wait for one socket before it counts as slow.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        block_ms: int = BLOCK_MS,
        batch_interval: float = BATCH_INTERVAL_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.redis_url = redis_url
        self.block_ms = block_ms
        self.batch_interval = batch_interval
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.open_sockets = 0
        self.sockets_by_credential: Counter[Hashable] = Counter()
        self.client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stream_down = False  # the last read failed; cleared by the next that works
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Its own connection: a blocking XREAD must not hold a pooled one others need.
        self.client = live.async_client(
            self.redis_url, socket_timeout=self.block_ms / 1000 + 10, socket_connect_timeout=5
        )
        self._reader = asyncio.create_task(self._read_forever(), name="progress-hub-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.client is not None:
            await self.client.aclose()

    # -- the one reader
    async def _last_id(self) -> str:
        assert self.client is not None
        newest = cast(list[Entry], await self.client.xrevrange(live.EVENTS_STREAM, count=1))
        return newest[0][0] if newest else "0-0"

    async def _read_forever(self) -> None:
        assert self.client is not None
        last_id: str | None = None
        while True:
            try:
                if self.stream_down:
                    # A quick command first, so sockets are served again at once rather
                    # than after a blocking read that may wait out its whole block time.
                    await self.client.ping()
                    logger.info("reading the progress stream again")
                    self.stream_down = False
                if last_id is None:
                    last_id = await self._last_id()
                reply = cast(
                    list[tuple[str, list[Entry]]],
                    await self.client.xread(
                        {live.EVENTS_STREAM: last_id}, block=self.block_ms, count=REPLAY_CHUNK
                    ),
                )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not self.stream_down:
                    logger.warning(
                        "cannot read the progress stream (%s); closing its %d WebSockets, "
                        "retrying every %.0f s",
                        describe_failure(exc),
                        len(self.subscribers),
                        RECONNECT_DELAY_S,
                    )
                    self.stream_down = True
                    self._close_all(status.WS_1013_TRY_AGAIN_LATER, STREAM_DOWN_REASON)
                await asyncio.sleep(RECONNECT_DELAY_S)  # back off before reconnecting
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    self.fan_out(Event(entry_id, fields))

    def fan_out(self, event: Event) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.wants(event) and not subscriber.offer(event):
                logger.warning("closing a slow WebSocket: its queue is full")
                self._close_later(
                    subscriber,
                    status.WS_1013_TRY_AGAIN_LATER,
                    "too slow: events came faster than it read them",
                )

    def _close_all(self, code: int, reason: str) -> None:
        for subscriber in list(self.subscribers):
            self._close_later(subscriber, code, reason)

    def _close_later(self, subscriber: Subscriber, code: int, reason: str) -> None:
        """Close a socket without waiting on it here (the reader must not stall)."""
        self.subscribers.discard(subscriber)
        task = asyncio.create_task(subscriber.close(code, reason))
        self._closing.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._closing.discard)

    # -- per socket
    def open_socket(
        self, credential: Hashable, *, max_sockets: int, max_per_credential: int
    ) -> None:
        """Count a new socket in; every call that returns needs one ``close_socket``.

        Raises:
          TooManySockets: the process or this credential already has its cap open.
        """
        if self.open_sockets >= max_sockets:
            raise TooManySockets(
                f"this server has {max_sockets} WebSockets open, its most; retry later"
            )
        if self.sockets_by_credential[credential] >= max_per_credential:
            raise TooManySockets(
                f"this credential has {max_per_credential} WebSockets open, its most; "
                "close one first"
            )
        self.open_sockets += 1
        self.sockets_by_credential[credential] += 1

    def close_socket(self, credential: Hashable) -> None:
        self.open_sockets -= 1
        self.sockets_by_credential[credential] -= 1
        if self.sockets_by_credential[credential] <= 0:
            del self.sockets_by_credential[credential]  # no key kept per credential ever seen

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def serve(
        self,
        subscriber: Subscriber,
        since: str | None,
        *,
        max_replay_events: int = MAX_REPLAY_EVENTS,
    ) -> None:
        """Replay after ``since`` (or send ``resync``), then send live events forever.

        Raises:
          StreamUnavailable: the reader cannot read the stream now.
          RedisError: the replay's reads failed.
        """
        if self.stream_down:
            raise StreamUnavailable(STREAM_DOWN_REASON)
        if since is not None:
            await self._replay(subscriber, since, max_replay_events)
        loop = asyncio.get_running_loop()
        while True:
            batch = [await subscriber.queue.get()]
            wait = subscriber.last_send_at + self.batch_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # waiting out the batch interval, by design
            while not subscriber.queue.empty() and len(batch) < MAX_BATCH:
                batch.append(subscriber.queue.get_nowait())
            await subscriber.send_events(batch)

    async def _replay(self, subscriber: Subscriber, since: str, max_events: int) -> None:
        assert self.client is not None
        since_id = parse_stream_id(since)
        oldest = cast(list[Entry], await self.client.xrange(live.EVENTS_STREAM, count=1))
        newest = cast(list[Entry], await self.client.xrevrange(live.EVENTS_STREAM, count=1))
        covered = since_id == (0, 0) or bool(
            oldest and parse_stream_id(oldest[0][0]) <= since_id <= parse_stream_id(newest[0][0])
        )
        # One read of at most max_events + 1 entries tells "too many" apart and, when it
        # is not, holds the whole replay: events added later reach the subscriber's queue.
        entries: list[Entry] = []
        if covered:
            entries = cast(
                list[Entry],
                await self.client.xrange(live.EVENTS_STREAM, min=f"({since}", count=max_events + 1),
            )
        if not covered or len(entries) > max_events:
            # The stream no longer holds what came after ``since`` (trimmed, or Redis
            # lost it), or replaying it would cost more than reloading: the client
            # reloads the job list, and the live events queued meanwhile all go out.
            await subscriber.send_text(json.dumps({"type": "resync"}))
            subscriber.last_sent = None
            return
        subscriber.last_sent = since_id
        for start in range(0, len(entries), MAX_BATCH):
            events = (
                Event(entry_id, fields) for entry_id, fields in entries[start : start + MAX_BATCH]
            )
            wanted = [event for event in events if subscriber.wants(event)]
            if wanted:
                await subscriber.send_events(wanted)
        if entries:
            # Skipped (unwanted) events still move the mark, so live ones are compared right.
            subscriber.last_sent = parse_stream_id(entries[-1][0])
