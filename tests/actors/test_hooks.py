"""Refresh hooks on a real worker and Redis, against local servers standing in for
Jellyfin, Plex and a webhook receiver: a burst of changes is one call, with the token;
a failing server is retried with backoff and the download succeeds regardless; a 401
is recorded, not retried; the webhook's body is signed with its timestamp; calls keep
their minimum interval; a deleted video is announced as removed."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.fake_hooks import Call, Configure, FakeHookServer
from tests.support import wait_for, wait_for_job

TOKEN = "jellyfin-api-key-0123456789abcdef"
PLEX_TOKEN = "plex-token-abcdef0123456789"
SECRET = "webhook-secret-0123456789abcdef"


def change(video_id: int, event: str = "video.added", title: str = "Song") -> Any:
    from db.refresh_hooks import ChangeEvent, VideoChange

    return VideoChange(ChangeEvent(event), video_id, title, "Artist", f"Artist/{title}.mp4")


def settled(target: str) -> bool:
    """No send of ``target`` is due or under way."""
    from actors import stores
    from db.refresh_hooks import due_key

    return not stores.redis_client().exists(due_key(target))


def state_of(target: str) -> dict[str, str]:
    from actors import stores
    from db.refresh_hooks import state_key

    return dict(stores.redis_client().hgetall(state_key(target)))


def pending(target: str) -> int:
    from actors import stores
    from db.refresh_hooks import changes_key

    return int(stores.redis_client().llen(changes_key(target)))


def test_a_burst_of_changes_makes_one_jellyfin_refresh_with_the_token(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    jellyfin = hook_server(204)
    configure_hooks(jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN), delay=1.0)
    for video_id in (1, 2, 3):
        announce([change(video_id)])
    assert pending("jellyfin") == 3
    wait_for(lambda: jellyfin.calls and settled("jellyfin"), what="the refresh")
    (call,) = jellyfin.calls  # and no send is due: none can follow
    assert (call.method, call.path) == ("POST", "/Library/Refresh")
    assert call.headers["authorization"] == f'MediaBrowser Token="{TOKEN}"'
    assert pending("jellyfin") == 0
    assert state_of("jellyfin")["last_outcome"] == "ok"


def test_a_failing_jellyfin_is_retried_and_the_download_succeeds_regardless(
    api: Any,
    worker: Any,
    media_server: Any,
    configure_hooks: Configure,
    hook_server: Callable[..., FakeHookServer],
) -> None:
    jellyfin = hook_server(500, 500, 204)
    configure_hooks(jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN))
    response = api.post("/api/videos/download", json={"url": media_server.url("/media/hook.mp4")})
    assert response.status_code == 202, response.text
    job = wait_for_job(api, response.json()["id"])
    assert job["status"] == "succeeded", job
    # Retried with Dramatiq's backoff until the third try answers 204.
    wait_for(lambda: len(jellyfin.calls) == 3 and settled("jellyfin"), what="the retries")
    assert [c.path for c in jellyfin.calls] == ["/Library/Refresh"] * 3
    assert jellyfin.calls[1].at - jellyfin.calls[0].at >= 0.1  # a backoff, not a loop
    state = state_of("jellyfin")
    assert (state["last_outcome"], state["failures"]) == ("ok", "0")
    assert pending("jellyfin") == 0


def test_a_jellyfin_down_for_good_is_tried_five_times_then_its_changes_wait(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    jellyfin = hook_server(503)
    configure_hooks(jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN))
    announce([change(1), change(2)])
    wait_for(lambda: len(jellyfin.calls) == 5 and settled("jellyfin"), what="five tries")
    assert state_of("jellyfin")["failures"] == "5"
    assert state_of("jellyfin")["last_outcome"] == "http 503"
    assert pending("jellyfin") == 2  # for the call the next change makes
    jellyfin.statuses = [204]
    announce([change(3)])
    wait_for(lambda: len(jellyfin.calls) == 6 and settled("jellyfin"), what="the next call")
    assert pending("jellyfin") == 0
    assert state_of("jellyfin")["failures"] == "0"


def test_a_401_is_recorded_and_not_retried(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    jellyfin = hook_server(401)
    configure_hooks(jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN))
    announce([change(1)])
    wait_for(lambda: jellyfin.calls and settled("jellyfin"), what="the refused call")
    assert len(jellyfin.calls) == 1
    assert state_of("jellyfin")["last_outcome"] == "http 401"


def test_a_redirect_is_not_followed(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    jellyfin = hook_server(302)
    configure_hooks(jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN))
    announce([change(1)])
    wait_for(lambda: jellyfin.calls and settled("jellyfin"), what="the redirected call")
    assert len(jellyfin.calls) == 1  # and nothing went to its Location
    assert state_of("jellyfin")["last_outcome"] == "http 302"


def test_plex_is_asked_with_its_token(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    plex = hook_server(200)
    configure_hooks(plex_url=plex.url, plex_token=secret(PLEX_TOKEN))
    announce([change(1), change(2, "video.removed")])
    wait_for(lambda: plex.calls and settled("plex"), what="the refresh")
    (call,) = plex.calls
    assert (call.method, call.path) == ("GET", "/library/sections/all/refresh")
    assert call.headers["x-plex-token"] == PLEX_TOKEN
    assert PLEX_TOKEN not in call.path

    configure_hooks(plex_url=plex.url, plex_token=secret(PLEX_TOKEN), plex_section="3")
    announce([change(3)])
    wait_for(lambda: len(plex.calls) == 2 and settled("plex"), what="the section's refresh")
    assert plex.calls[1].path == "/library/sections/3/refresh"


def verified(call: Call) -> dict[str, Any]:
    """The webhook call's body, once its signature checks out as README.md says."""
    timestamp = call.headers["x-vidfleet-timestamp"]
    signed = f"{timestamp}.".encode() + call.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call.headers["x-vidfleet-signature"], expected)
    body: dict[str, Any] = json.loads(call.body)
    assert call.headers["x-vidfleet-event"] == body["event"]
    return body


def test_the_webhook_gets_each_run_of_changes_signed_with_its_timestamp(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    webhook = hook_server(200)
    configure_hooks(webhook_url=webhook.url + "/hooks/vidfleet", webhook_secret=secret(SECRET))
    announce([change(1, title="Hoppípolla"), change(2)])
    announce([change(1, "video.removed", title="Hoppípolla")])
    wait_for(lambda: len(webhook.calls) == 2 and settled("webhook"), what="the webhook")
    added, removed = (verified(call) for call in webhook.calls)
    assert added["event"] == "video.added"
    assert added["videos"] == [
        {"id": 1, "title": "Hoppípolla", "artist": "Artist", "path": "Artist/Hoppípolla.mp4"},
        {"id": 2, "title": "Song", "artist": "Artist", "path": "Artist/Song.mp4"},
    ]
    assert removed["event"] == "video.removed"
    assert [v["id"] for v in removed["videos"]] == [1]
    assert removed["at"].endswith("Z")
    assert all(call.path == "/hooks/vidfleet" for call in webhook.calls)
    # A tampered body or another timestamp no longer matches the signature.
    call = webhook.calls[0]
    with pytest.raises(AssertionError):
        verified(dataclasses.replace(call, body=call.body.replace(b"Song", b"Gnos")))
    earlier = str(int(call.headers["x-vidfleet-timestamp"]) - 600)
    stale = {**call.headers, "x-vidfleet-timestamp": earlier}
    with pytest.raises(AssertionError):
        verified(dataclasses.replace(call, headers=stale))


def test_a_change_after_a_call_waits_for_the_minimum_interval(
    worker: Any, configure_hooks: Configure, hook_server: Callable[..., FakeHookServer]
) -> None:
    from actors.refresh_hooks import announce

    jellyfin = hook_server(204)
    configure_hooks(
        jellyfin_url=jellyfin.url, jellyfin_token=secret(TOKEN), delay=0.1, min_interval=2.0
    )
    announce([change(1)])
    wait_for(lambda: jellyfin.calls and settled("jellyfin"), what="the first call")
    announce([change(2)])
    wait_for(lambda: len(jellyfin.calls) == 2, what="the second call")
    first, second = jellyfin.calls
    assert second.at - first.at >= 1.9


def test_a_deleted_video_is_announced_as_removed(
    api: Any,
    worker: Any,
    settings: Any,
    configure_hooks: Configure,
    hook_server: Callable[..., FakeHookServer],
) -> None:
    from tests.actors.test_bulk_delete import add_video

    webhook = hook_server(204)
    configure_hooks(webhook_url=webhook.url, webhook_secret=secret(SECRET))
    video_id = add_video(settings, "Sigur Rós/Hoppípolla [x1].mp4")
    response = api.delete(f"/api/videos/{video_id}")
    assert response.status_code == 202, response.text
    assert wait_for_job(api, response.json()["id"])["status"] == "succeeded"
    wait_for(lambda: webhook.calls and settled("webhook"), what="the webhook")
    body = verified(webhook.calls[0])
    assert body["event"] == "video.removed"
    assert body["videos"] == [
        {"id": video_id, "title": "Sigur Rós/Hoppípolla [x1].mp4", "artist": None,
         "path": "Sigur Rós/Hoppípolla [x1].mp4"}
    ]  # fmt: skip


def secret(value: str) -> Any:
    from starlette.datastructures import Secret

    return Secret(value)
