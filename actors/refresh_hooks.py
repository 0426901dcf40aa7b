"""Refresh hooks: after videos are added, replaced, moved or removed, Jellyfin and Plex
are asked to rescan their libraries and a webhook is told what changed (the calls:
:mod:`media.refresh_calls`), without ever holding up or failing the job that made the
change.

:func:`announce` is the one call a job makes after its commit: it records the changes
for each configured target (:mod:`db.refresh_hooks`) and, unless a send is already on
its way, sends :func:`send_refresh` for that target with a delay of
``VIDFLEET_HOOKS_DELAY`` (longer when the last call was less than
``VIDFLEET_HOOKS_MIN_INTERVAL`` ago). Everything recorded until that message runs goes
in the same call: a burst of 20 downloads is one refresh. Changes recorded while a send
runs get the next one, ``VIDFLEET_HOOKS_MIN_INTERVAL`` later.

A call that fails for a reason that may pass (no connection, a timeout, ``429``,
``5xx``) is retried by Dramatiq's Retries middleware with its exponential backoff (from
``VIDFLEET_RETRY_BACKOFF``), :data:`MAX_RETRIES` times, raising ``dramatiq.Retry`` so
that no traceback is logged; after that, or on any other answer (a ``401``), the send
ends with the outcome recorded for the system page and one warning, and its changes
stay pending for the call the next change makes (never a dead letter).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage

from actors import stores
from actors.broker import broker as _broker  # noqa: F401  (set before any actor)
from actors.retry_policy import RETRY_MAX_BACKOFF_MS
from db import refresh_hooks
from db.jobs import iso
from db.queues import Queue
from db.refresh_hooks import VideoChange
from db.settings import HookSettings, get_settings
from media.refresh_calls import CallOutcome, post_webhook, refresh_jellyfin, refresh_plex

logger = logging.getLogger(__name__)

#: Retries of a failing call after its first try (five tries in all).
MAX_RETRIES = 4
#: The most videos one webhook call carries.
WEBHOOK_BATCH = 100


def configured_targets(hooks: HookSettings) -> list[str]:
    """The targets whose URL is set, in :data:`db.refresh_hooks.TARGETS` order."""
    urls = {"jellyfin": hooks.jellyfin_url, "plex": hooks.plex_url, "webhook": hooks.webhook_url}
    return [target for target in refresh_hooks.TARGETS if urls[target]]


def announce(changes: list[VideoChange]) -> None:
    """Record ``changes`` (made and committed by the caller) for every configured
    target and see that a send follows. Never raises: the caller's work is done
    whatever happens here (a Redis that does not answer costs these changes' calls, and
    one warning)."""
    hooks = get_settings().hooks
    targets = configured_targets(hooks)
    if not targets or not changes:
        return
    try:
        client = stores.redis_client()
        due = refresh_hooks.record(client, targets, changes)
        now = time.time()
        for target, last_call in due.items():
            wait = hooks.delay
            if last_call is not None:
                wait = max(wait, last_call + hooks.min_interval - now)
            _send_later(client, target, wait)
    except Exception:
        logger.warning(
            "could not record %d library changes for the refresh hooks",
            len(changes),
            exc_info=True,
        )


def _send_later(client: redis.Redis, target: str, wait_s: float) -> None:
    try:
        send_refresh.send_with_options(args=(target,), delay=max(0, int(wait_s * 1000)))
    except Exception:
        client.delete(refresh_hooks.due_key(target))  # so the next change sends one
        raise


@dramatiq.actor(
    queue_name=Queue.maintenance,
    max_retries=MAX_RETRIES,
    min_backoff=int(get_settings().retry_backoff * 1000),
    max_backoff=RETRY_MAX_BACKOFF_MS,
)
def send_refresh(target: str) -> None:
    """Tell ``target`` (``jellyfin``, ``plex`` or ``webhook``) of its pending changes."""
    hooks = get_settings().hooks
    client = stores.redis_client()
    if target not in configured_targets(hooks):
        client.delete(refresh_hooks.due_key(target))  # turned off since it was sent
        return
    refresh_hooks.keep_due(client, target)
    outcome, left = _send(client, target, hooks)
    message = CurrentMessage.get_current_message()
    retries = message.options.get("retries", 0) if message is not None else MAX_RETRIES
    if outcome is not None and not outcome.ok:
        if outcome.retryable and retries < MAX_RETRIES:
            raise dramatiq.Retry(f"{target}: {outcome.summary()}")
        logger.warning(
            "refresh hook %s: %s after %d tries; its %d changes wait for the next one",
            target,
            outcome.summary(),
            retries + 1,
            left,
        )
    if refresh_hooks.release(client, target, left=left):
        _send_later(client, target, max(hooks.delay, hooks.min_interval))


def _send(client: redis.Redis, target: str, hooks: HookSettings) -> tuple[CallOutcome | None, int]:
    """Make the call(s) for the pending changes and forget those that went out; the
    outcome (None: nothing was pending) and how many taken changes are still pending."""
    if target == "webhook":
        return _send_webhook(client, hooks)
    taken = int(client.llen(refresh_hooks.changes_key(target)))
    if not taken:
        return None, 0
    started = time.time()
    if target == "jellyfin":
        assert hooks.jellyfin_token is not None
        outcome = refresh_jellyfin(hooks.jellyfin_url, str(hooks.jellyfin_token))
    else:
        assert hooks.plex_token is not None
        outcome = refresh_plex(hooks.plex_url, str(hooks.plex_token), section=hooks.plex_section)
    refresh_hooks.attempted(client, target, outcome.summary(), ok=outcome.ok, at=started)
    if not outcome.ok:
        return outcome, taken
    refresh_hooks.sent(client, target, taken)
    return outcome, 0


def _send_webhook(client: redis.Redis, hooks: HookSettings) -> tuple[CallOutcome | None, int]:
    """One signed POST per run of changes of one event (at most :data:`WEBHOOK_BATCH`
    videos each), oldest first; each run delivered is forgotten at once, so a retry
    sends only what did not arrive."""
    assert hooks.webhook_secret is not None
    changes = refresh_hooks.pending(client, "webhook")
    left = len(changes)
    outcome: CallOutcome | None = None
    started = time.time()
    for run in _runs(changes):
        now = time.time()
        body = {
            "event": str(run[0].event),
            "videos": [
                {"id": c.id, "title": c.title, "artist": c.artist, "path": c.path} for c in run
            ],
            "at": iso(datetime.fromtimestamp(now, UTC)),
        }
        outcome = post_webhook(
            hooks.webhook_url,
            str(hooks.webhook_secret),
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            event=str(run[0].event),
            timestamp=int(now),
        )
        if not outcome.ok:
            break
        refresh_hooks.sent(client, "webhook", len(run))
        left -= len(run)
    if outcome is not None:
        refresh_hooks.attempted(client, "webhook", outcome.summary(), ok=outcome.ok, at=started)
    return outcome, left


def _runs(changes: list[VideoChange]) -> Iterator[list[VideoChange]]:
    """``changes`` in order, cut where the event changes and every :data:`WEBHOOK_BATCH`."""
    run: list[VideoChange] = []
    for change in changes:
        if run and (change.event != run[0].event or len(run) == WEBHOOK_BATCH):
            yield run
            run = []
        run.append(change)
    if run:
        yield run
