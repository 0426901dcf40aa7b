"""ProgressHub: one Redis Stream reader per web process, fanned out to its sockets.

The reader is a thread of its own: it ``XREAD BLOCK``s on ``vf:events`` from the last id
it saw (its own connection, a socket timeout above the block time), turns each reply
into events and hands the whole batch to the event loop in one callback, which offers
it to every matching subscriber. Busy sockets cannot starve it, and what the stream
holds is in the sockets' pending sets a moment later: a backlog never waits in Redis.

Each event is encoded once per process: the reader splices the stream entry's job JSON
into the event's wire text (:class:`Event`) and parses the job only when a filtered
subscription asks for its id; a frame is a join of those texts, so no socket encodes
anything, and sockets sent the same lone event send the same string.

What a socket has not been sent yet is bounded. A progress event (the reporter marks
those) replaces the same job's older unsent one, so a socket that falls behind gets
the latest progress of each job and every state change, in stream order; a socket
that still has more than ``queue_size`` events pending (it stopped reading, or state
changes come faster than it reads) is closed with 1013 instead of slowing the others.

A subscriber's sender sends at once when it has sent nothing in the last
``batch_interval``; otherwise it waits out the interval and sends everything pending
(at most ``MAX_BATCH`` events) as one frame, a JSON array. Idle sockets get no added
latency; busy ones get one frame per interval (DESIGN §5 has the measurements).

On subscribe with ``since`` the sender first replays the stream after that id through
the same pending set, a chunk at a time as the socket takes them, then joins the live
events (reading the stream once more for what came meanwhile; ids already sent are
skipped), so the switch loses and repeats nothing. A ``since`` that the stream no longer
covers, or that more than ``max_replay_events`` events follow, gets
``{"type": "resync"}`` instead of a replay. The hub also counts its open sockets, in
total and per credential, so the endpoint can refuse one over a cap.

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
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette import status

from db import live
from web.errors import describe_failure

logger = logging.getLogger(__name__)

BLOCK_MS = 5_000
BATCH_INTERVAL_S = 0.05
QUEUE_SIZE = 2_000
#: A socket whose oldest unsent event came this long ago gets what it lacks conflated.
LAG_LIMIT_S = 0.25
MAX_BATCH = 500  # events per frame: keeps frames well under clients' size limits
REPLAY_CHUNK = 1_000
MAX_REPLAY_EVENTS = 5_000
RECONNECT_DELAY_S = 1.0
STOP_READER_TIMEOUT_S = 5.0
STREAM_DOWN_REASON = "the progress stream is unavailable; reconnect shortly"
SLOW_REASON = "too slow: events came faster than it read them"

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
        wrote it; ``progress_of``: the job's id, on a progress event only).
    """

    __slots__ = ("_fields", "_job", "arrived", "id", "progress_of", "stream_id", "wire")

    def __init__(self, entry_id: str, fields: dict[str, str]) -> None:
        self.id = entry_id
        self.stream_id = parse_stream_id(entry_id)
        self.wire = live.event_wire(entry_id, fields)
        self.progress_of: str | None = fields.get(live.PROGRESS_FIELD)
        self.arrived = time.monotonic()
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
    """One socket's subscription: a filter, its place in the hub's log, the events held
    for it alone, and the last id sent.

    A subscriber that keeps up only has a ``cursor`` into the hub's shared log. What it
    has not taken when the log moves on (it fell more than ``behind`` events back), and
    what a replay hands it, is held in ``pending``: stream id -> event, in the order
    they came (stream order except just after a replay joins the live events; ``take``
    sorts then). Spilled events are conflated: a progress event replaces the same job's
    older pending one (``conflated`` counts those), while state changes always stay.

    Parameters:
      send_text: sends one text frame on the socket.
      close: closes the socket with a code and a reason.
      queue_size: the most events it may have pending before it counts as too slow.
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
        self.limit = queue_size
        self.behind = max(1, queue_size // 4)
        self.jobs: frozenset[str] | None = frozenset()  # None: every job
        self.cursor: int | None = None  # the next log position to take; None: not live
        self.pending: dict[StreamId, Event] = {}
        self._progress: dict[str, StreamId] = {}  # job id -> its newest pending progress
        self._newest: StreamId = (0, 0)
        self._unordered = False
        self.ready = asyncio.Event()  # set while something may be waiting for it
        self.last_sent: StreamId | None = None
        self.last_send_at = float("-inf")
        self.overflowed = False
        self.conflated = 0

    def wants(self, event: Event) -> bool:
        if self.jobs is None:
            return True
        job = event.job
        return job["id"] in self.jobs or job.get("parent_id") in self.jobs

    def offer(self, events: Iterable[Event], *, conflate: bool) -> bool:
        """Hold events for this socket; with ``conflate``, a progress event replaces the
        same job's older pending one. False when more than ``limit`` are pending (the
        socket is too slow)."""
        pending, progress, last_sent = self.pending, self._progress, self.last_sent
        for event in events:
            key = event.stream_id
            if (last_sent is not None and key <= last_sent) or key in pending:
                continue  # sent already, or pending already (a replay meeting live events)
            if not self.wants(event):
                continue
            job = event.progress_of
            if job is not None:
                older = progress.get(job)
                if older is None or older < key:
                    progress[job] = key
                if older is not None and conflate:
                    self.conflated += 1
                    if older > key:
                        continue  # a replayed progress event older than the live one here
                    del pending[older]
            if key < self._newest:
                self._unordered = True
            else:
                self._newest = key
            pending[key] = event
        if pending:
            self.ready.set()
        if len(pending) > self.limit:
            self.overflowed = True
            return False
        return True

    def take_pending(self, most: int) -> list[Event]:
        """Up to ``most`` pending events, oldest first, no longer pending."""
        if self._unordered:
            self.pending = dict(sorted(self.pending.items()))
            self._unordered = False
        if len(self.pending) <= most:
            events = list(self.pending.values())
            self.pending, self._progress = {}, {}
            return events
        items = list(self.pending.items())
        events = [event for _key, event in items[:most]]
        self.pending = dict(items[most:])
        for event in events:
            job = event.progress_of
            if job is not None and self._progress.get(job) == event.stream_id:
                del self._progress[job]
        return events

    def forget_pending(self) -> None:
        self.pending, self._progress = {}, {}
        self._newest, self._unordered = (0, 0), False

    def fresh(self, events: Iterable[Event]) -> list[Event]:
        """The events not sent yet, in order (drops what was sent since they were offered)."""
        out = []
        for event in events:
            if self.last_sent is None or event.stream_id > self.last_sent:
                out.append(event)
                self.last_sent = event.stream_id
        return out

    async def send_events(self, events: list[Event]) -> None:
        events = self.fresh(events)
        if events:
            await self.send_frame(frame(events))

    async def send_frame(self, text: str) -> None:
        await self.send_text(text)
        self.last_send_at = asyncio.get_running_loop().time()


class ProgressHub:
    """Reads the event stream once per process and fans it out.

    Parameters:
      redis_url: where the stream lives.
      block_ms: how long one ``XREAD`` blocks.
      batch_interval: the least time between two frames to one socket.
      queue_size: how many events may wait for one socket before it counts as slow.

    ``delivered``, ``conflated`` and ``slow_closed`` count events sent to sockets,
    progress events replaced before they were sent and sockets closed for being too
    slow, over the process's life (``GET /metrics`` reads them).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        block_ms: int = BLOCK_MS,
        batch_interval: float = BATCH_INTERVAL_S,
        queue_size: int = QUEUE_SIZE,
        lag_limit: float = LAG_LIMIT_S,
    ) -> None:
        self.redis_url = redis_url
        self.lag_limit = lag_limit
        self.block_ms = block_ms
        self.batch_interval = batch_interval
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.open_sockets = 0
        self.sockets_by_credential: Counter[Hashable] = Counter()
        self.client: aioredis.Redis | None = None
        self.stream_down = False  # the last read failed; cleared by the next that works
        self.slow_closed = 0
        self.delivered = 0
        self._conflated_gone = 0  # of subscribers no longer here
        # The events read lately, shared by every live subscriber: log[0] is at
        # position ``base``, and ``head`` is the position the next event will take.
        self.log: list[Event] = []
        self.base = 0
        self._frames: dict[tuple[int, int], tuple[list[Event], str]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._reader_client: redis.Redis | None = None
        self._stopping = threading.Event()

    @property
    def conflated(self) -> int:
        return self._conflated_gone + sum(s.conflated for s in self.subscribers)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Replays and the first id: short commands on a pooled async client.
        self.client = live.async_client(self.redis_url, socket_connect_timeout=5)
        # The reader's own connection: a blocking XREAD must not hold a pooled one others
        # need, and its timeout is above the block time.
        # No retries: it reconnects itself, and a stop must end its read, not renew it.
        self._reader_client = live.sync_client(
            self.redis_url,
            retries=0,
            socket_timeout=self.block_ms / 1000 + 10,
            socket_connect_timeout=5,
        )
        self._stopping.clear()
        # Where live events start, known before the first socket can subscribe (the
        # thread may take a while to run on a busy machine); if Redis does not answer
        # now, the reader asks once it does.
        start_id: str | None = None
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            newest = cast(
                list[Entry],
                await asyncio.wait_for(self.client.xrevrange(live.EVENTS_STREAM, count=1), 2),
            )
            start_id = newest[0][0] if newest else "0-0"
        self._reader = threading.Thread(
            target=self._read_forever, args=(start_id,), name="progress-hub-reader", daemon=True
        )
        self._reader.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._reader is not None:
            assert self._reader_client is not None
            # Closing its connection ends a blocking read at once.
            self._reader_client.connection_pool.disconnect()
            await asyncio.to_thread(self._reader.join, STOP_READER_TIMEOUT_S)
            if self._reader.is_alive():
                logger.warning("the progress stream reader did not stop")
            self._reader_client.close()
        if self.client is not None:
            await self.client.aclose()

    # -- the one reader, on its own thread
    def _read_forever(self, last_id: str | None) -> None:
        assert self._reader_client is not None and self._loop is not None
        client, loop = self._reader_client, self._loop
        down = False
        while not self._stopping.is_set():
            try:
                if down:
                    # A quick command first, so sockets are served again at once rather
                    # than after a blocking read that may wait out its whole block time.
                    client.ping()
                    down = False
                    loop.call_soon_threadsafe(self._stream_back)
                if last_id is None:
                    newest = cast(list[Entry], client.xrevrange(live.EVENTS_STREAM, count=1))
                    last_id = newest[0][0] if newest else "0-0"
                reply = cast(
                    list[tuple[str, list[Entry]]],
                    client.xread(
                        {live.EVENTS_STREAM: last_id}, block=self.block_ms, count=REPLAY_CHUNK
                    ),
                )
            except (RedisError, OSError) as exc:
                if self._stopping.is_set():
                    return
                if not down:
                    down = True
                    loop.call_soon_threadsafe(self._stream_lost, describe_failure(exc))
                self._stopping.wait(RECONNECT_DELAY_S)  # back off before reconnecting
                continue
            for _stream, entries in reply or ():
                if entries:
                    last_id = entries[-1][0]
                    events = [Event(entry_id, fields) for entry_id, fields in entries]
                    try:
                        loop.call_soon_threadsafe(self.fan_out, events)
                    except RuntimeError:  # the loop is closed: the process is ending
                        return

    def _stream_lost(self, failure: str) -> None:
        logger.warning(
            "cannot read the progress stream (%s); closing its %d WebSockets, "
            "retrying every %.0f s",
            failure,
            len(self.subscribers),
            RECONNECT_DELAY_S,
        )
        self.stream_down = True
        for subscriber in list(self.subscribers):
            self._close_later(subscriber, status.WS_1013_TRY_AGAIN_LATER, STREAM_DOWN_REASON)

    def _stream_back(self) -> None:
        logger.info("reading the progress stream again")
        self.stream_down = False

    @property
    def head(self) -> int:
        return self.base + len(self.log)

    def fan_out(self, events: list[Event]) -> None:
        """Append a batch of events (in stream order) to the log and wake the
        subscribers that want any of them: one step per subscriber, not per event."""
        self.log.extend(events)
        self._frames.clear()
        for subscriber in self.subscribers:
            if not subscriber.ready.is_set() and (
                subscriber.jobs is None or any(subscriber.wants(event) for event in events)
            ):
                subscriber.ready.set()
        keep = max(1, self.queue_size // 4)
        if len(self.log) > 2 * keep:
            self._trim(self.head - keep)

    def _trim(self, new_base: int) -> None:
        """Drop the log before ``new_base``; a subscriber that has not taken all of it
        yet has fallen behind and gets what it lacks spilled (:meth:`_spill`)."""
        for subscriber in list(self.subscribers):
            assert subscriber.cursor is not None
            if subscriber.cursor < new_base:
                self._spill(subscriber, new_base)
        del self.log[: new_base - self.base]
        self.base = new_base

    def _spill(self, subscriber: Subscriber, upto: int) -> bool:
        """Move what ``subscriber`` has not taken of the log before ``upto`` into its
        own pending events, conflated; if even that is too much, close it with 1013
        (and answer False)."""
        assert subscriber.cursor is not None
        lacking = self.log[subscriber.cursor - self.base : upto - self.base]
        subscriber.cursor = upto
        if subscriber.offer(lacking, conflate=True):
            return True
        logger.warning("closing a slow WebSocket: %d events pending", len(subscriber.pending))
        self.slow_closed += 1
        self._close_later(subscriber, status.WS_1013_TRY_AGAIN_LATER, SLOW_REASON)
        return False

    def take(self, subscriber: Subscriber, most: int) -> tuple[list[Event], str | None]:
        """Up to ``most`` events for one frame: its pending ones first, then the log's
        from its cursor; and the frame's text when it is one other subscribers share
        (every job, the same window of the log)."""
        events = subscriber.take_pending(most) if subscriber.pending else []
        cursor = subscriber.cursor
        if (
            cursor is not None
            and cursor < self.head
            and self.log[cursor - self.base].arrived < time.monotonic() - self.lag_limit
        ):
            # Fallen behind: what it lacks goes out conflated, the latest progress of
            # each job and every state change, rather than all of it late.
            if not self._spill(subscriber, self.head):
                return [], None
            events += subscriber.take_pending(most - len(events))
            cursor = subscriber.cursor
        if cursor is not None and cursor < self.head and len(events) < most:
            end = min(cursor + most - len(events), self.head)
            subscriber.cursor = end
            if not events and subscriber.jobs is None:
                shared = self._frames.get((cursor, end))
                if shared is None:
                    window = self.log[cursor - self.base : end - self.base]
                    shared = self._frames[(cursor, end)] = (window, frame(window))
                window = shared[0]
                if subscriber.last_sent is None or window[0].stream_id > subscriber.last_sent:
                    subscriber.last_sent = window[-1].stream_id
                    self._settle(subscriber)
                    return window, shared[1]
                events = list(window)  # overlaps what a replay sent: filtered below
            else:
                window = self.log[cursor - self.base : end - self.base]
                events += window if subscriber.jobs is None else filter(subscriber.wants, window)
        self._settle(subscriber)
        return subscriber.fresh(events), None

    def _settle(self, subscriber: Subscriber) -> None:
        if not subscriber.pending and (subscriber.cursor is None or subscriber.cursor >= self.head):
            subscriber.ready.clear()

    def _close_later(self, subscriber: Subscriber, code: int, reason: str) -> None:
        """Close a socket without waiting on it here (the reader must not stall)."""
        self.remove(subscriber)
        subscriber.forget_pending()
        subscriber.ready.clear()
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
        """Live from the next event read on (a subscriber already here stays where it is)."""
        if subscriber not in self.subscribers:
            subscriber.cursor = self.head
            self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            subscriber.cursor = None
            self._conflated_gone += subscriber.conflated
            subscriber.conflated = 0

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
        if since is None:
            self.add(subscriber)  # a subscriber already here keeps what it has pending
        else:
            # Live events join after the replay, in order: none may go out before it.
            self.remove(subscriber)
            subscriber.forget_pending()
            subscriber.ready.clear()
            await self._replay(subscriber, since, max_replay_events)
        while True:
            await self._send_pending(subscriber)

    async def _send_pending(self, subscriber: Subscriber) -> None:
        """Wait for events and send one frame of them. A socket that sent less than a
        batch interval ago waits for the next tick of the hub's clock, which every busy
        socket shares: they take the same window of the log and send the same text."""
        await subscriber.ready.wait()
        now = asyncio.get_running_loop().time()
        if now - subscriber.last_send_at < self.batch_interval:
            tick = (now // self.batch_interval + 1) * self.batch_interval
            await asyncio.sleep(tick - now)  # waiting for the batch tick, by design
        events, text = self.take(subscriber, MAX_BATCH)
        if text is not None:
            await subscriber.send_frame(text)
        elif events:
            await subscriber.send_frame(frame(events))
        self.delivered += len(events)

    async def _replay(self, subscriber: Subscriber, since: str, max_events: int) -> None:
        """Send what came after ``since`` through the subscriber's pending set, then
        join the live events; a ``resync`` instead where the stream cannot tell."""
        assert self.client is not None
        since_id = parse_stream_id(since)
        oldest = cast(list[Entry], await self.client.xrange(live.EVENTS_STREAM, count=1))
        newest = cast(list[Entry], await self.client.xrevrange(live.EVENTS_STREAM, count=1))
        covered = since_id == (0, 0) or bool(
            oldest and parse_stream_id(oldest[0][0]) <= since_id <= parse_stream_id(newest[0][0])
        )
        # One read of at most max_events + 1 entries tells "too many" apart and, when it
        # is not, holds the whole replay.
        entries: list[Entry] = []
        if covered:
            entries = cast(
                list[Entry],
                await self.client.xrange(live.EVENTS_STREAM, min=f"({since}", count=max_events + 1),
            )
        if not covered or len(entries) > max_events:
            # The stream no longer holds what came after ``since`` (trimmed, or Redis
            # lost it), or replaying it would cost more than reloading: the client
            # reloads the job list, and live events go out from now on.
            self.add(subscriber)
            await subscriber.send_text(json.dumps({"type": "resync"}))
            subscriber.last_sent = None
            return
        subscriber.last_sent = since_id
        # A chunk at a time, each once the last is sent: a slow socket holds back its
        # own replay, and nothing else.
        chunk = min(MAX_BATCH, subscriber.behind)  # below the mark: nothing is conflated
        for start in range(0, len(entries), chunk):
            subscriber.offer(
                (Event(*entry) for entry in entries[start : start + chunk]), conflate=False
            )
            while subscriber.pending:
                await self._send_pending(subscriber)
        # Live from here on; what was added to the stream since the read above comes from
        # one more read (the pending set drops what the reader offered as well).
        self.add(subscriber)
        after = entries[-1][0] if entries else since
        while True:
            more = cast(
                list[Entry],
                await self.client.xrange(live.EVENTS_STREAM, min=f"({after}", count=REPLAY_CHUNK),
            )
            # Conflated only if the socket has fallen behind by that much already.
            behind = len(subscriber.pending) + len(more) > subscriber.behind
            if more and not subscriber.offer((Event(*e) for e in more), conflate=behind):
                self.slow_closed += 1
                self._close_later(subscriber, status.WS_1013_TRY_AGAIN_LATER, SLOW_REASON)
                return
            if len(more) < REPLAY_CHUNK:
                return
            after = more[-1][0]
