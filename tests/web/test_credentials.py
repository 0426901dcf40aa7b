"""Credentials are hostile input: no odd cookie, token or header is ever a 5xx; a
session ends when its token is rotated or removed, or on sign-out; sign-in checks the
Origin; token guessing is rate-limited per client address."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import live_server

REFUSED = {400, 401, 403}
HEADER_BYTES = st.binary(max_size=300).filter(lambda raw: not set(raw) & {0, 10, 13})


@pytest.fixture
def lenient(settings: Any) -> Any:
    """Settings where guessing is not limited, so the properties see every answer."""
    return dataclasses.replace(settings, auth_failures_per_minute=10**9)


@pytest.fixture
def client(lenient: Any) -> Iterator[TestClient]:
    from web.app import create_app

    # raise_server_exceptions: any exception in the app fails the test outright.
    with TestClient(create_app(lenient), raise_server_exceptions=True) as client:
        yield client


def sign_in(client: Any, token: str, origin: str = "http://testserver") -> httpx.Response:
    return client.post("/api/session", json={"token": token}, headers={"Origin": origin})


def assert_json_refusal(response: httpx.Response) -> None:
    assert response.status_code in REFUSED, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] and error["message"]


PROPERTY = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(
    value=st.text(max_size=300)
    | st.from_regex(r"v1\.(admin|viewer)\.[0-9]+\..*\..*")
    # role.issued.signature, a fresh issue time: the shape cookies had before
    | st.builds(lambda sig: f"admin.{int(time.time())}.{sig}", st.text(max_size=80))
)
def test_no_session_cookie_text_is_a_server_error(client: TestClient, value: str) -> None:
    raw = value.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
    response = client.get("/api/jobs", headers={"Cookie": b"vf_session=" + raw.replace(b"\0", b"")})
    assert_json_refusal(response)


@PROPERTY
@given(raw=HEADER_BYTES)
def test_no_cookie_or_authorization_bytes_are_a_server_error(
    client: TestClient, raw: bytes
) -> None:
    assert_json_refusal(client.get("/api/videos", headers={"Authorization": b"Bearer " + raw}))
    assert_json_refusal(client.get("/api/videos", headers={"Authorization": raw}))
    assert_json_refusal(client.get("/api/jobs", headers={"Cookie": raw}))
    assert_json_refusal(client.post("/api/videos/download", headers={"Cookie": raw}, json={}))


@PROPERTY
@given(token=st.text(max_size=200) | st.just("\ud800") | st.integers() | st.none())
def test_no_token_in_a_sign_in_is_a_server_error(client: TestClient, token: Any) -> None:
    body = json.dumps({"token": token})  # ensure_ascii: a lone surrogate arrives as \ud800
    response = client.post(
        "/api/session",
        content=body,
        headers={"Origin": "http://testserver", "Content-Type": "application/json"},
    )
    assert_json_refusal(response)


@pytest.mark.parametrize(
    "cookie",
    [
        "v1.admin.1700000000.abcdefghijklmnop." + "é" * 64,  # non-ASCII signature
        f"admin.{int(time.time())}." + "é" * 64,  # the same in the old format
        "v1.admin.1700000000.abcdefghijklmnop.00.11.22",  # extra dots
        "admin.1700000000.0123456789abcdef",  # the old format
        "v1.root.1700000000.abcdefghijklmnop." + "0" * 64,
        "." * 50,
    ],
    ids=["non-ascii-mac", "old-format-non-ascii", "extra-dots", "old-format", "no-role", "dots"],
)
def test_odd_cookies_are_a_401(client: TestClient, cookie: str) -> None:
    response = client.get("/api/jobs", headers={"Cookie": f"vf_session={cookie}".encode()})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_a_session_ends_when_its_token_is_rotated_or_removed(lenient: Any) -> None:
    from web.app import create_app

    with TestClient(create_app(lenient)) as before:
        viewer = sign_in(before, VIEWER_TOKEN).cookies["vf_session"]
        admin = sign_in(before, ADMIN_TOKEN).cookies["vf_session"]
        assert before.get("/api/jobs", cookies={"vf_session": viewer}).status_code == 200
    rotated = dataclasses.replace(lenient, viewer_token=type(lenient.admin_token)("n" * 24))
    with TestClient(create_app(rotated)) as after:
        assert after.get("/api/jobs", cookies={"vf_session": viewer}).status_code == 401
        assert after.get("/api/jobs", cookies={"vf_session": admin}).status_code == 200
    removed = dataclasses.replace(lenient, viewer_token=None)
    with TestClient(create_app(removed)) as after:
        assert after.get("/api/jobs", cookies={"vf_session": viewer}).status_code == 401
    new_admin = dataclasses.replace(lenient, admin_token=type(lenient.admin_token)("a" * 24))
    with TestClient(create_app(new_admin)) as after:
        assert after.get("/api/jobs", cookies={"vf_session": admin}).status_code == 401


def test_signing_out_revokes_the_session_on_the_server(client: TestClient) -> None:
    signed_in = sign_in(client, ADMIN_TOKEN)
    cookie, csrf = signed_in.cookies["vf_session"], signed_in.json()["csrf"]
    assert client.get("/api/jobs", cookies={"vf_session": cookie}).status_code == 200
    for headers, status in (
        ({"Origin": "http://testserver"}, 403),  # a cross-site page cannot sign you out
        ({"Origin": "http://testserver", "X-CSRF-Token": csrf}, 200),
    ):
        out = client.request(
            "DELETE", "/api/session", headers=headers, cookies={"vf_session": cookie}
        )
        assert out.status_code == status, out.text
    # A copy of the cookie kept elsewhere (stolen, or another tab) no longer works.
    assert client.get("/api/jobs", cookies={"vf_session": cookie}).status_code == 401


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None])
def test_signing_in_or_out_needs_our_own_origin(client: TestClient, origin: str | None) -> None:
    headers = {"Origin": origin} if origin else {}
    signed_in = client.post("/api/session", json={"token": ADMIN_TOKEN}, headers=headers)
    assert signed_in.status_code == 403 and "vf_session" not in signed_in.cookies
    assert signed_in.json()["error"]["code"] == "bad_origin"
    assert client.request("DELETE", "/api/session", headers=headers).status_code == 403


def test_token_guessing_is_limited_per_client_address(settings: Any) -> None:
    from web.app import create_app

    strict = dataclasses.replace(settings, auth_failures_per_minute=5)
    app = create_app(strict)
    with live_server(app) as server, httpx.Client(base_url=server.url) as guesser:
        answers = [
            guesser.get("/api/jobs", headers={"Authorization": f"Bearer guess-{n}"}).status_code
            for n in range(5)
        ]
        assert answers == [401] * 5
        for attempt in (
            lambda: guesser.get("/api/jobs", headers={"Authorization": "Bearer guess-6"}),
            lambda: guesser.post(
                "/api/session", json={"token": "guess-7"}, headers={"Origin": server.url}
            ),
            # Even the right token waits: the address is blocked, not the guess.
            lambda: guesser.get("/api/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        ):
            blocked = attempt()
            assert blocked.status_code == 429, blocked.text
            assert blocked.json()["error"]["code"] == "too_many_failures"
            assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        # Requests without a credential are not guesses, and other addresses go on.
        assert guesser.get("/healthz").status_code == 200
        # Another replica shares the count in Redis: one more guess there, then 429s.
        with live_server(create_app(strict)) as replica:
            answers = [
                guesser.get(
                    f"{replica.url}/api/jobs", headers={"Authorization": "Bearer guess-8"}
                ).status_code
                for _ in range(2)
            ]
            assert answers == [401, 429]
    with TestClient(app) as elsewhere:  # the client address "testclient"
        ok = elsewhere.get("/api/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200
