"""What Redis must hear once a job change is committed, and the courier that tells it.

The database is the truth about a job (DESIGN §4). The jobs service
(:mod:`db.job_service`) commits a change there first and returns an :class:`Outbox`:
the new states to publish, the messages to send, the running jobs asked to stop, the
waiters to dismiss from the download line. A :class:`Courier` delivers it in one round
trip to Redis, on a sync client (the lifeline, bulk actors) or an asyncio one (the web):
redis-py's pipelines of both kinds take commands alike, so the commands are written once
(:meth:`Courier.load`) and only the round trip differs. With the broker on RabbitMQ
(:mod:`db.rabbitmq`) the messages are not Redis commands: they go out after that round
trip, through the broker.

Delivery is best effort by design: nothing of an outbox is the truth. An event that was
not published leaves the row and the snapshot's next update; a message that was not
sent is sent again by the lifeline (a queued job without a message); a cancel flag that
was not set leaves the job running, and the caller says so. Each failure is logged.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import dramatiq
from dramatiq.brokers.redis import DEFAULT_LUA_MAX_STACK, MAINTENANCE_SCALE, RedisBroker
from dramatiq.common import current_millis
from redis.exceptions import NoScriptError

from db import live
from db.queues import ACTOR_OF_KIND, job_message
from db.rabbitmq import BrokerSender, web_broker_sender
from db.settings import Settings
from db.slots import DISMISS_SCRIPT, FairSlots

logger = logging.getLogger(__name__)


@dataclass
class Outbox:
    """What Redis must hear of committed job changes.

    Attributes:
      publish: new public states of jobs, in the order they are published.
      send: queued jobs whose message goes to their queue.
      stop: running jobs asked to stop (their workers poll the flag).
      dismiss: jobs to take out of the download slots' waiting line.
    """

    publish: list[dict[str, Any]] = field(default_factory=list)
    send: list[dict[str, Any]] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    dismiss: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.publish or self.send or self.stop or self.dismiss)

    def add(self, other: Outbox) -> Outbox:
        self.publish += other.publish
        self.send += other.send
        self.stop += other.stop
        self.dismiss += other.dismiss
        return self


@dataclass
class Delivery:
    """How an outbox's delivery went: ``missed`` names the parts that did not reach
    Redis ("publish", "send", "stop", "dismiss"; each failure is logged)."""

    missed: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.missed


class MessageSender:
    """Dramatiq's ``RedisBroker.enqueue`` as one command of a pipeline.

    Why: Dramatiq's client is synchronous, so the web sent each message from a worker
    thread: a thread hop (which waits for the GIL while the event loop is busy) and a
    round trip of its own beside the publish's. As a pipeline command, the message
    rides in the publish's round trip, on any client.

    What it keeps of ``RedisBroker.enqueue`` (Dramatiq 2.2; setup.cfg pins it below
    2.3): the message as the broker would write it, with a fresh ``redis_message_id``
    option per enqueue; the broker's ``before_enqueue`` and ``after_enqueue`` hooks
    around the write; and the broker's own ``dispatch`` Lua script with the arguments
    it passes: the broker's id (its heartbeat), heartbeat timeout and dead-message TTL,
    queue maintenance on the same one-in-``maintenance_chance`` chance, and half the Lua
    stack as the unpack size. A job's message is never delayed, so the delay queue is
    not needed.

    Parameters:
      broker: a Redis broker of the fleet's Redis (the workers' own, or the web's, which
        has no actors: messages go by actor name, :func:`db.queues.job_message`).
      actor_of_kind: job kind -> the name of the actor that runs it, asked at each send
        (a worker asks its broker, which also knows actors declared after it started).
    """

    def __init__(
        self,
        broker: RedisBroker,
        actor_of_kind: Callable[[], Mapping[str, str]] = lambda: ACTOR_OF_KIND,
    ) -> None:
        self.broker = broker
        self.actor_of_kind = actor_of_kind
        self.script = broker.scripts["dispatch"].script
        self._unpack_size: int | None = (
            DEFAULT_LUA_MAX_STACK // 2 if DEFAULT_LUA_MAX_STACK else None
        )

    def knows_unpack_size(self) -> bool:
        return self._unpack_size is not None

    def learn_unpack_size(self, max_stack: int) -> None:
        """The server's Lua stack (the broker's ``maxstack`` script; asked once)."""
        self._unpack_size = int(max_stack) // 2

    @property
    def maxstack_script(self) -> Any:
        return self.broker.scripts["maxstack"].script

    def prepare(self, job: dict[str, Any]) -> tuple[dramatiq.Message, list[Any]]:
        """The message of ``job`` as it will be enqueued, and the ARGV of the
        ``dispatch`` script that enqueues it (``before_enqueue`` has run).

        Raises:
          KeyError: no actor runs jobs of its kind.
        """
        assert self._unpack_size is not None, "learn_unpack_size first"
        broker = self.broker
        message = job_message(
            job["kind"], job["id"], job["queue"], actor_of_kind=self.actor_of_kind()
        )
        message = message.copy(options={"redis_message_id": str(uuid4())})
        broker.logger.debug(
            "Enqueueing message %r on queue %r.", message.message_id, message.queue_name
        )
        broker.emit_before("enqueue", message, None)
        maintenance = random.randint(1, MAINTENANCE_SCALE) <= broker.maintenance_chance
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            int(maintenance),
            self._unpack_size,
            message.options["redis_message_id"],
            message.encode(),
        ]
        return message, args

    def enqueued(self, message: dramatiq.Message) -> None:
        self.broker.emit_after("enqueue", message, None)

    def close(self) -> None:
        self.broker.close()


def web_sender(settings: Settings) -> MessageSender | BrokerSender:
    """A sender for a process that declares no actors (the web). On RabbitMQ
    (``BROKER_URL``), :func:`db.rabbitmq.web_broker_sender`. On Redis, a Redis broker of
    its own, built from ``settings`` with no middleware, gives it the namespace, the
    ``dispatch`` script and a broker id whose heartbeat the script keeps."""
    if settings.uses_rabbitmq:
        return web_broker_sender(settings)
    broker = RedisBroker(middleware=[], connection_pool=live.broker_pool(settings))
    return MessageSender(broker)


@dataclass
class _Call:
    """One script call on the pipeline, kept to run again after a ``NOSCRIPT``."""

    what: str  # for the log: "publish", "send", "dismiss"
    script: Any  # a redis-py Script or AsyncScript
    keys: list[str]
    args: list[Any]
    job_ids: list[str]
    message: dramatiq.Message | None = None


class Courier:
    """Delivers outboxes to Redis.

    Parameters:
      client: a Redis client, sync or asyncio (``decode_responses=True``).
      sender: how job messages are written (:class:`MessageSender`).
      download_line: the download slots' key (:data:`db.live.DOWNLOAD_SLOTS_KEY`).
    """

    def __init__(
        self,
        client: Any,
        sender: MessageSender | BrokerSender,
        download_line: str = live.DOWNLOAD_SLOTS_KEY,
    ) -> None:
        self.client = client
        self.sender = sender
        self.publish_script = client.register_script(live.PUBLISH_SCRIPT)
        if isinstance(sender, MessageSender):
            self.dispatch_script = client.register_script(sender.script)
            self.maxstack_script = client.register_script(sender.maxstack_script)
        self.dismiss_script = client.register_script(DISMISS_SCRIPT)
        self.line_keys = [download_line, f"{download_line}:line", f"{download_line}:alive"]
        self.wake_prefix = f"{download_line}:wake:"

    def load(self, pipe: Any, outbox: Outbox) -> list[_Call | None]:
        """Put ``outbox`` on ``pipe``: the publishes first (a job's ``queued`` event
        precedes any event of a worker that takes it at once), then the messages, the
        stop flags, the dismissals. One entry per command: its call (None for a plain
        command)."""
        calls: list[_Call | None] = []
        if outbox.publish:
            keys, args = live.publish_many_arguments(outbox.publish)
            ids = [job["id"] for job in outbox.publish]
            calls.append(_Call("publish", self.publish_script, keys, args, ids))
        for job in outbox.send:
            assert isinstance(self.sender, MessageSender), "split() leaves sends to BrokerSender"
            try:
                message, args = self.sender.prepare(job)
            except KeyError:
                logger.error("job %s has kind %r that no actor handles", job["id"], job["kind"])
                continue
            namespace = [self.sender.broker.namespace]
            calls.append(_Call("send", self.dispatch_script, namespace, args, [job["id"]], message))
        for call in calls:
            assert call is not None
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        for job_id in outbox.stop:
            pipe.set(live.cancel_key(job_id), "1", ex=live.CANCEL_TTL_S)
            calls.append(None)
        for job_id in outbox.dismiss:
            args = [job_id, self.wake_prefix, FairSlots.WAKE_TTL_S]
            call = _Call("dismiss", self.dismiss_script, self.line_keys, args, [job_id])
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            calls.append(call)
        return calls

    def settle(
        self, calls: list[_Call | None], replies: list[Any], delivery: Delivery
    ) -> list[_Call]:
        """Go through the replies: note and log failures, finish the sends that went
        out; the calls to run again because Redis had lost their script."""
        again = []
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError) and call is not None:
                again.append(call)
            elif isinstance(reply, Exception):
                self.failed(call, reply, delivery)
            else:
                self.done(call)
        return again

    def done(self, call: _Call | None) -> None:
        if call is not None and call.message is not None:
            assert isinstance(self.sender, MessageSender)
            self.sender.enqueued(call.message)

    def failed(self, call: _Call | None, error: BaseException, delivery: Delivery) -> None:
        what = call.what if call is not None else "stop"
        ids = call.job_ids if call is not None else []
        delivery.missed.add(what)
        if what == "send":
            logger.warning("could not send job %s now; the lifeline will (%s)", ids, error)
        else:
            logger.warning("could not %s jobs %s (%s)", what, ids, error)

    def split(self, outbox: Outbox) -> tuple[Outbox, list[dict[str, Any]]]:
        """What goes to Redis in the pipeline, and the messages a :class:`BrokerSender`
        sends after it (none with a :class:`MessageSender`: its messages ride along)."""
        if isinstance(self.sender, MessageSender) or not outbox.send:
            return outbox, []
        return Outbox(publish=outbox.publish, stop=outbox.stop, dismiss=outbox.dismiss), outbox.send

    def deliver(self, outbox: Outbox) -> Delivery:
        """Deliver ``outbox`` on a sync client."""
        delivery = Delivery()
        on_redis, by_broker = self.split(outbox)
        if on_redis:
            self._deliver_on_redis(on_redis, delivery)
        if by_broker:
            assert isinstance(self.sender, BrokerSender)
            self._broker_sent(self.sender.send(by_broker), delivery)
        return delivery

    async def deliver_async(self, outbox: Outbox) -> Delivery:
        """:meth:`deliver` on an asyncio client."""
        delivery = Delivery()
        on_redis, by_broker = self.split(outbox)
        if on_redis:
            await self._deliver_on_redis_async(on_redis, delivery)
        if by_broker:
            assert isinstance(self.sender, BrokerSender)
            self._broker_sent(await self.sender.send_async(by_broker), delivery)
        return delivery

    def _deliver_on_redis(self, outbox: Outbox, delivery: Delivery) -> None:
        try:
            if (learner := self._unpack_size_learner(outbox)) is not None:
                learner.learn_unpack_size(self.maxstack_script())
            with self.client.pipeline(transaction=False) as pipe:
                calls = self.load(pipe, outbox)
                replies = pipe.execute(raise_on_error=False)
        except Exception as exc:
            self._all_failed(outbox, exc, delivery)
            return
        again = self.settle(calls, replies, delivery)
        for call in again:
            try:
                call.script(keys=call.keys, args=call.args)  # a Script loads itself
            except Exception as exc:
                self.failed(call, exc, delivery)
            else:
                self.done(call)

    async def _deliver_on_redis_async(self, outbox: Outbox, delivery: Delivery) -> None:
        try:
            if (learner := self._unpack_size_learner(outbox)) is not None:
                learner.learn_unpack_size(await self.maxstack_script())
            async with self.client.pipeline(transaction=False) as pipe:
                calls = self.load(pipe, outbox)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            self._all_failed(outbox, exc, delivery)
            return
        again = self.settle(calls, replies, delivery)
        for call in again:
            try:
                await call.script(keys=call.keys, args=call.args)
            except Exception as exc:
                self.failed(call, exc, delivery)
            else:
                self.done(call)

    def _unpack_size_learner(self, outbox: Outbox) -> MessageSender | None:
        """The sender that must learn the Lua stack before ``outbox``'s sends, if any."""
        sender = self.sender
        if outbox.send and isinstance(sender, MessageSender) and not sender.knows_unpack_size():
            return sender
        return None

    @staticmethod
    def _broker_sent(failed: dict[str, BaseException], delivery: Delivery) -> None:
        if failed:
            delivery.missed.add("send")
            error = next(iter(failed.values()))
            logger.warning(
                "could not send jobs %s now; the lifeline will (%s)", list(failed), error
            )

    def _all_failed(self, outbox: Outbox, error: BaseException, delivery: Delivery) -> None:
        parts = ("publish", "send", "stop", "dismiss")
        delivery.missed.update(part for part in parts if getattr(outbox, part))
        if outbox.send:
            ids = [job["id"] for job in outbox.send]
            logger.warning("could not send jobs %s now; the lifeline will (%s)", ids, error)
        if outbox.publish or outbox.stop or outbox.dismiss:
            ids = [job["id"] for job in outbox.publish] + outbox.stop + outbox.dismiss
            logger.warning("could not tell Redis of jobs %s (%s)", ids, error)
