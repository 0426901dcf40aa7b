"""Users, roles, sessions, CSRF and API tokens over HTTP: sign-in by name and password
(the cookie's flags, the same 401 for an unknown name and a wrong password, 429s per
user name and per client), CSRF on every cookie mutation, viewers refused, a password
change or a removal ending sessions and tokens, /api/users and /api/tokens, the
per-credential job cap per user, and hostile cookies, CSRF tokens and bearer tokens
never being a 5xx."""

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
from tests.support import api_client, live_server, wait_for

ORIGIN = "http://testserver"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "a long enough password"


@pytest.fixture
def lenient(settings: Any) -> Any:
    """Settings where no limit on guesses gets in a test's way."""
    return dataclasses.replace(
        settings, auth_failures_per_minute=10**9, login_failures_per_user=10**9
    )


@pytest.fixture
def client(lenient: Any) -> Iterator[TestClient]:
    from web.app import create_app

    with TestClient(create_app(lenient), raise_server_exceptions=True) as client:
        yield client


def add_user(client: Any, name: str, role: str = "viewer", password: str = PASSWORD) -> int:
    made = client.post(
        "/api/users", json={"name": name, "password": password, "role": role}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def sign_in(
    client: Any, name: str, password: str = PASSWORD, origin: str = ORIGIN
) -> httpx.Response:
    return client.post(
        "/api/session", json={"username": name, "password": password}, headers={"Origin": origin}
    )


class Browser:
    """A signed-in browser's credentials: its cookie and CSRF token, sent by hand so one
    client can play several browsers."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        self.cookie = response.cookies["vf_session"]
        self.csrf = response.json()["csrf"]

    def headers(self, *, csrf: bool = True, origin: str = ORIGIN) -> dict[str, str]:
        headers = {"Cookie": f"vf_session={self.cookie}", "Origin": origin}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers


def cookie_attributes(response: httpx.Response) -> set[str]:
    (cookie,) = response.headers.get_list("set-cookie")
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_an_admin_adds_lists_and_removes_users(client: TestClient) -> None:
    for body, field in (
        ({"name": "", "password": PASSWORD}, "name"),
        ({"name": "bad\nname", "password": PASSWORD}, "name"),
        ({"name": "x" * 65, "password": PASSWORD}, "name"),
        ({"name": "ok", "password": "short"}, "password"),
        ({"name": "ok", "password": PASSWORD, "role": "root"}, "role"),
        ({"name": "ok", "password": ["not", "text"]}, "password"),
    ):
        refused = client.post("/api/users", json=body, headers=ADMIN)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["field"] == field
    made = client.post(
        "/api/users", json={"name": "Alice", "password": PASSWORD, "role": "admin"}, headers=ADMIN
    )
    assert made.status_code == 201
    alice = made.json()
    assert {k: alice[k] for k in ("name", "role")} == {"name": "Alice", "role": "admin"}
    twice = client.post("/api/users", json={"name": "ALICE", "password": PASSWORD}, headers=ADMIN)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_exists"
    bob = add_user(client, "bob")
    listed = client.get("/api/users", headers=ADMIN).json()["items"]
    assert [(u["name"], u["role"]) for u in listed] == [("Alice", "admin"), ("bob", "viewer")]
    assert all("password" not in json.dumps(u) for u in listed)
    # A viewer may not even read the users.
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert client.get("/api/users", headers=viewer).status_code == 403
    assert client.delete(f"/api/users/{bob}", headers=viewer).status_code == 403
    assert client.delete(f"/api/users/{bob}", headers=ADMIN).json() == {"id": bob, "deleted": True}
    assert client.delete(f"/api/users/{bob}", headers=ADMIN).status_code == 404
    assert client.delete(f"/api/users/{2**40}", headers=ADMIN).status_code == 404


def test_a_user_signs_in_with_a_lax_httponly_cookie_and_gets_its_session(
    client: TestClient,
) -> None:
    alice = add_user(client, "Alice", "admin")
    signed_in = sign_in(client, "alice")  # names compare case-insensitively
    assert signed_in.status_code == 200, signed_in.text
    answer = signed_in.json()
    assert answer["user"] == {"id": alice, "name": "Alice"} and answer["role"] == "admin"
    assert isinstance(answer["csrf"], str) and len(answer["csrf"]) == 64
    attributes = cookie_attributes(signed_in)
    assert {"httponly", "samesite=lax", "path=/"} <= attributes
    assert "secure" not in attributes
    assert any(a.startswith("max-age=") and int(a.split("=")[1]) > 86400 for a in attributes)
    browser = Browser(signed_in)
    assert client.get("/api/session", headers=browser.headers()).json() == answer
    assert client.get("/api/jobs", headers=browser.headers(csrf=False)).status_code == 200
    out = client.delete("/api/session", headers=browser.headers())
    assert out.status_code == 200
    assert client.get("/api/jobs", headers=browser.headers(csrf=False)).status_code == 401
    assert client.get("/api/session", headers=browser.headers()).status_code == 401


def test_the_cookie_is_secure_when_the_app_sees_https(lenient: Any) -> None:
    from web.app import create_app

    with TestClient(create_app(lenient), base_url="https://vidfleet.example") as client:
        add_user(client, "carol")
        for signed_in in (
            sign_in(client, "carol", origin="https://vidfleet.example"),
            client.post(
                "/api/session",
                json={"token": ADMIN_TOKEN},
                headers={"Origin": "https://vidfleet.example"},
            ),
        ):
            assert signed_in.status_code == 200, signed_in.text
            assert {"secure", "httponly", "samesite=lax"} <= cookie_attributes(signed_in)


def test_an_unknown_name_and_a_wrong_password_get_the_same_slow_401(client: TestClient) -> None:
    from db import users

    add_user(client, "dave")
    stored = users.hash_password("another password")
    started = time.perf_counter()
    users.verify_password(stored, "not it")
    verify_s = time.perf_counter() - started
    answers = []
    for name, password in (("dave", "wrong password"), ("nobody", "wrong password")):
        started = time.perf_counter()
        refused = sign_in(client, name, password)
        took = time.perf_counter() - started
        assert refused.status_code == 401
        # An unknown name is verified against a dummy hash: no quick "no such user".
        assert took >= verify_s / 2, (name, took, verify_s)
        answers.append(refused.json())
    assert answers[0] == answers[1]
    assert sign_in(client, "dave", "x" * 5000).status_code == 401
    for body in ({"username": "dave"}, {"username": 7, "password": PASSWORD}, {"password": "x"}):
        bad = client.post("/api/session", json=body, headers={"Origin": ORIGIN})
        assert bad.status_code == 400, bad.text


def test_a_cookie_mutation_needs_the_csrf_token_and_our_origin(
    server: Any, media_server: Any
) -> None:
    with api_client(server.url, ADMIN_TOKEN) as admin:
        add_user(admin, "erin", "admin")
    body = {"url": media_server.url("/media/csrf-user.mp4")}
    with httpx.Client(base_url=server.url) as browser:
        signed_in = browser.post(
            "/api/session", json={"username": "erin", "password": PASSWORD},
            headers={"Origin": server.url},
        )  # fmt: skip
        assert signed_in.status_code == 200
        csrf = signed_in.json()["csrf"]
        # A plain cross-site HTML form: the cookie, a foreign Origin, no header.
        form = browser.post(
            "/api/videos/download",
            data={"url": body["url"]},
            headers={"Origin": "http://evil.example"},
        )
        assert form.status_code == 403 and form.json()["error"]["code"] == "bad_origin"
        foreign = browser.post(
            "/api/videos/download",
            json=body,
            headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf},
        )
        assert foreign.status_code == 403
        for headers in (
            {"Origin": server.url},  # our own Origin (a same-site page), no token
            {"Origin": server.url, "X-CSRF-Token": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")},
            {"Origin": server.url, "X-CSRF-Token": ""},
            {"Origin": server.url, "X-CSRF-Token": ("é" * 32).encode()},
        ):
            refused = browser.post("/api/videos/download", json=body, headers=headers)
            assert refused.status_code == 403, (headers, refused.text)
            assert refused.json()["error"]["code"] == "csrf"
        accepted = browser.post(
            "/api/videos/download", json=body, headers={"Origin": server.url, "X-CSRF-Token": csrf}
        )
        assert accepted.status_code == 202, accepted.text
        # Reads need no token.
        assert browser.get("/api/jobs").status_code == 200
    # Bearer requests need neither token nor Origin: no browser adds them by itself.
    with api_client(server.url, ADMIN_TOKEN) as bearer:
        assert bearer.get(f"/api/jobs/{accepted.json()['id']}").status_code == 200
        assert bearer.post(f"/api/jobs/{accepted.json()['id']}/cancel").status_code == 202


def test_a_viewer_user_reads_but_gets_403_on_every_mutation(
    client: TestClient, media_server: Any
) -> None:
    add_user(client, "frank", "viewer")
    viewer = Browser(sign_in(client, "frank"))
    assert client.get("/api/jobs", headers=viewer.headers()).status_code == 200
    assert client.get("/api/videos", headers=viewer.headers()).status_code == 200
    refused = client.post(
        "/api/videos/download",
        json={"url": media_server.url("/media/viewer.mp4")},
        headers=viewer.headers(),
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    made = client.post(
        "/api/users", json={"name": "x", "password": PASSWORD}, headers=viewer.headers()
    )
    assert made.status_code == 403
    assert client.get("/api/users", headers=viewer.headers()).status_code == 403


def test_a_password_change_ends_the_users_other_sessions(client: TestClient) -> None:
    add_user(client, "gina")
    first, second = Browser(sign_in(client, "gina")), Browser(sign_in(client, "gina"))
    wrong = client.post(
        "/api/session/password",
        json={"current": "not the password", "new": "the new password"},
        headers=first.headers(),
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "current"
    short = client.post(
        "/api/session/password", json={"current": PASSWORD, "new": "short"}, headers=first.headers()
    )
    assert short.status_code == 400 and short.json()["error"]["field"] == "new"
    no_csrf = client.post(
        "/api/session/password",
        json={"current": PASSWORD, "new": "the new password"},
        headers=first.headers(csrf=False),
    )
    assert no_csrf.status_code == 403
    changed = client.post(
        "/api/session/password",
        json={"current": PASSWORD, "new": "the new password"},
        headers=first.headers(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["user"]["name"] == "gina"
    fresh = Browser(changed)
    for old in (first, second):
        assert client.get("/api/jobs", headers=old.headers()).status_code == 401
    assert client.get("/api/jobs", headers=fresh.headers()).status_code == 200
    assert sign_in(client, "gina").status_code == 401
    assert sign_in(client, "gina", "the new password").status_code == 200
    # The bootstrap tokens have no password to change.
    bootstrap = client.post(
        "/api/session/password", json={"current": "x", "new": "y" * 8}, headers=ADMIN
    )
    assert bootstrap.status_code == 400 and bootstrap.json()["error"]["code"] == "no_user"


def test_removing_a_user_ends_its_sessions_and_tokens(client: TestClient) -> None:
    user_id = add_user(client, "hank", "admin")
    browser = Browser(sign_in(client, "hank"))
    made = client.post("/api/tokens", json={"name": "script", "user": "hank"}, headers=ADMIN)
    token = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/api/jobs", headers=token).status_code == 200
    assert client.get("/api/jobs", headers=browser.headers()).status_code == 200
    assert client.delete(f"/api/users/{user_id}", headers=ADMIN).status_code == 200
    assert client.get("/api/jobs", headers=token).status_code == 401
    assert client.get("/api/jobs", headers=browser.headers()).status_code == 401
    assert client.get("/api/tokens", headers=ADMIN).json()["items"] == []
    # A new user of the same name is someone else: the old cookie stays refused.
    add_user(client, "hank", "admin")
    assert client.get("/api/jobs", headers=browser.headers()).status_code == 401


def test_api_tokens_are_made_listed_used_and_revoked(client: TestClient) -> None:
    add_user(client, "ivy", "admin")
    add_user(client, "jack", "viewer")
    needs_user = client.post("/api/tokens", json={"name": "ci"}, headers=ADMIN)
    assert needs_user.status_code == 400 and needs_user.json()["error"]["field"] == "user"
    unknown = client.post("/api/tokens", json={"name": "ci", "user": "nobody"}, headers=ADMIN)
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "user"
    bad_name = client.post("/api/tokens", json={"name": "\x1b[2J", "user": "ivy"}, headers=ADMIN)
    assert bad_name.status_code == 400 and bad_name.json()["error"]["field"] == "name"

    made = client.post("/api/tokens", json={"name": "ci", "user": "IVY"}, headers=ADMIN)
    assert made.status_code == 201
    ivys = made.json()
    assert set(ivys) == {"id", "name", "user", "token", "created_at"}
    assert ivys["user"] == "ivy" and ivys["token"].startswith("vf_")
    ivy = {"Authorization": f"Bearer {ivys['token']}"}
    # A token acts as its user: an admin's may mutate, and makes tokens of its own user.
    own = client.post("/api/tokens", json={"name": "laptop"}, headers=ivy)
    assert own.status_code == 201 and own.json()["user"] == "ivy"

    jack = Browser(sign_in(client, "jack"))
    jacks = client.post("/api/tokens", json={"name": "phone"}, headers=jack.headers())
    assert jacks.status_code == 201 and jacks.json()["user"] == "jack"
    for other in ("ivy", "nobody"):
        refused = client.post(
            "/api/tokens", json={"name": "x", "user": other}, headers=jack.headers()
        )
        assert refused.status_code == 403
    jack_token = {"Authorization": f"Bearer {jacks.json()['token']}"}
    assert client.get("/api/jobs", headers=jack_token).status_code == 200
    assert client.post("/api/jobs/x/cancel", headers=jack_token).status_code == 403

    everything = client.get("/api/tokens", headers=ADMIN).json()["items"]
    assert [(t["name"], t["user"]) for t in everything] == [
        ("ci", "ivy"), ("laptop", "ivy"), ("phone", "jack"),
    ]  # fmt: skip
    assert all(set(t) == {"id", "name", "user", "created_at", "last_used_at"} for t in everything)
    assert everything[0]["last_used_at"] is not None  # it was used above
    assert everything[1]["last_used_at"] is None
    assert ivys["token"] not in json.dumps(everything)
    mine = client.get("/api/tokens", headers=jack.headers()).json()["items"]
    assert [t["name"] for t in mine] == ["phone"]
    assert client.get(
        "/api/tokens", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
    ).json() == {"items": []}

    # A viewer revokes only its own: another's is "not found", whether or not it exists.
    assert client.delete(f"/api/tokens/{ivys['id']}", headers=jack.headers()).status_code == 404
    revoked = client.delete(f"/api/tokens/{jacks.json()['id']}", headers=jack.headers())
    assert revoked.json() == {"id": jacks.json()["id"], "revoked": True}
    assert client.get("/api/jobs", headers=jack_token).status_code == 401
    assert client.delete(f"/api/tokens/{ivys['id']}", headers=ADMIN).status_code == 200
    assert client.get("/api/jobs", headers=ivy).status_code == 401
    assert client.delete(f"/api/tokens/{ivys['id']}", headers=ADMIN).status_code == 404


def test_another_replica_sees_a_revocation_within_the_cache_bound(lenient: Any) -> None:
    from web.app import create_app
    from web.credentials import CACHE_TTL_S

    with TestClient(create_app(lenient)) as here, TestClient(create_app(lenient)) as there:
        add_user(here, "kate", "admin")
        made = here.post("/api/tokens", json={"name": "ci", "user": "kate"}, headers=ADMIN).json()
        token = {"Authorization": f"Bearer {made['token']}"}
        browser = Browser(sign_in(here, "kate"))
        assert there.get("/api/jobs", headers=token).status_code == 200
        assert there.get("/api/jobs", headers=browser.headers()).status_code == 200
        changed = here.post(
            "/api/session/password",
            json={"current": PASSWORD, "new": "another password"},
            headers=browser.headers(),
        )
        assert changed.status_code == 200
        here.delete(f"/api/tokens/{made['id']}", headers=ADMIN)
        started = time.monotonic()
        wait_for(
            lambda: (
                there.get("/api/jobs", headers=token).status_code == 401
                and there.get("/api/jobs", headers=browser.headers()).status_code == 401
            ),
            timeout=CACHE_TTL_S + 5,
            what="the other replica to drop the revoked token and the old session",
        )
        assert time.monotonic() - started <= CACHE_TTL_S + 1


def test_five_wrong_passwords_for_a_name_make_it_wait_from_every_client(settings: Any) -> None:
    from web.app import create_app

    limited = dataclasses.replace(settings, auth_failures_per_minute=10**9)
    app = create_app(limited)
    with live_server(app) as server, httpx.Client(base_url=server.url) as guesser:
        with api_client(server.url, ADMIN_TOKEN) as admin:
            add_user(admin, "Liam")
            add_user(admin, "mia")

        def attempt(client: Any, name: str, password: str) -> httpx.Response:
            return client.post(
                "/api/session",
                json={"username": name, "password": password},
                headers={"Origin": str(client.base_url).rstrip("/")},
            )

        answers = [attempt(guesser, "liam", f"guess {n}").status_code for n in range(5)]
        assert answers == [401] * 5
        for name, password in (("liam", "guess 6"), ("LIAM", PASSWORD)):
            blocked = attempt(guesser, name, password)  # even the right password waits
            assert blocked.status_code == 429, blocked.text
            assert blocked.json()["error"]["code"] == "too_many_failures"
            assert "try again in 15 min" in blocked.json()["error"]["message"]
            assert 800 < int(blocked.headers["Retry-After"]) <= 900
        # Other names go on; and from another client address the name waits too.
        assert attempt(guesser, "mia", PASSWORD).status_code == 200
    with TestClient(app) as elsewhere:
        assert attempt(elsewhere, "liam", PASSWORD).status_code == 429
        # The window ends (here: its key expires), and the right password works again.
        from db import live
        from web.login_limit import _key

        with live.sync_client(settings.redis_url) as redis:
            redis.delete(_key("liam"))
        assert attempt(elsewhere, "liam", PASSWORD).status_code == 200


def test_wrong_passwords_count_against_the_client_address_too(settings: Any) -> None:
    from web.app import create_app

    strict = dataclasses.replace(settings, auth_failures_per_minute=3)
    with live_server(create_app(strict)) as server, httpx.Client(base_url=server.url) as guesser:
        answers = [
            guesser.post(
                "/api/session",
                json={"username": f"name-{n}", "password": "a wrong password"},
                headers={"Origin": server.url},
            ).status_code
            for n in range(4)
        ]
        assert answers == [401, 401, 401, 429]


def test_per_credential_job_caps_count_per_user(settings: Any, media_server: Any) -> None:
    from web.app import create_app

    capped = dataclasses.replace(settings, max_active_jobs_per_credential=1)
    with live_server(create_app(capped)) as server, api_client(server.url, ADMIN_TOKEN) as admin:
        add_user(admin, "nina", "admin")
        add_user(admin, "omar", "admin")
        tokens = {
            name: admin.post("/api/tokens", json={"name": "t", "user": name}).json()["token"]
            for name in ("nina", "omar")
        }

        def download(token: str, name: str) -> int:
            with api_client(server.url, token) as client:
                url = media_server.url(f"/media/{name}.mp4")
                return client.post("/api/videos/download", json={"url": url}).status_code

        assert download(tokens["nina"], "n1") == 202
        assert download(tokens["nina"], "n2") == 429
        assert download(tokens["omar"], "o1") == 202  # a cap per user, not per role
        jobs = admin.get("/api/jobs").json()["items"]
    from sqlalchemy import select

    from actors import stores
    from db.models import Job

    with stores.sessions()() as session:
        owners = set(session.scalars(select(Job.owner).where(Job.id.in_([j["id"] for j in jobs]))))
    assert len(owners) == 2 and all(owner.startswith("user:") for owner in owners)


PROPERTY = hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(
    cookie=st.text(max_size=200)
    | st.from_regex(
        r"v2\.[0-9]{1,14}\.[0-9]{1,14}\.[0-9]{1,14}\.[A-Za-z0-9_-]{16,64}\.[0-9a-f]{64}"
    )
    | st.builds(
        lambda user, epoch: f"v2.{user}.{epoch}.{int(time.time())}.{'a' * 22}.{'0' * 64}",
        st.integers(min_value=-5, max_value=10**13),
        st.integers(min_value=-5, max_value=10**13),
    ),
    csrf=st.text(max_size=100) | st.from_regex(r"[0-9a-f]{64}"),
    token=st.text(max_size=100).map(lambda t: "vf_" + t) | st.text(max_size=600),
)
def test_no_hostile_cookie_csrf_or_token_is_a_server_error(
    client: TestClient, cookie: str, csrf: str, token: str
) -> None:
    def header(value: str) -> bytes:
        raw = value.encode("utf-8", "surrogatepass")
        return raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")

    answers = [
        client.post(
            "/api/videos/download",
            json={},
            headers={
                "Cookie": b"vf_session=" + header(cookie),
                "X-CSRF-Token": header(csrf),
                "Origin": ORIGIN,
            },
        ),
        client.get("/api/session", headers={"Cookie": b"vf_session=" + header(cookie)}),
        client.get("/api/jobs", headers={"Authorization": b"Bearer " + header(token)}),
        client.post(
            "/api/session",
            content=json.dumps({"username": cookie, "password": token}),
            headers={"Origin": ORIGIN, "Content-Type": "application/json"},
        ),
    ]
    for answer in answers:
        assert answer.status_code in (400, 401, 403), (answer.status_code, answer.text)
        assert answer.json()["error"]["code"]


def test_a_user_credential_while_the_database_is_down_is_a_503_not_a_500(
    lenient: Any,
) -> None:
    from tests.support import free_port
    from web.app import create_app

    with TestClient(create_app(lenient)) as client:
        add_user(client, "quinn", "admin")
        browser = Browser(sign_in(client, "quinn"))
        made = client.post("/api/tokens", json={"name": "ci", "user": "quinn"}, headers=ADMIN)
        token = made.json()["token"]
    dead = dataclasses.replace(
        lenient,
        database_url=f"postgresql+psycopg://vidfleet:secret@127.0.0.1:{free_port()}/vidfleet",
    )
    with TestClient(create_app(dead), raise_server_exceptions=True) as client:
        for headers in (browser.headers(), {"Authorization": f"Bearer {token}"}):
            answer = client.get("/api/videos", headers=headers)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["store"] == "database"
            assert int(answer.headers["Retry-After"]) > 0
        signing_in = sign_in(client, "quinn")
        assert signing_in.status_code == 503
        # The bootstrap tokens need no database to be recognised.
        assert client.get("/api/system/storage", headers=ADMIN).status_code == 200
