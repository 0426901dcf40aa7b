"""The library's routes: ``DELETE /api/videos/{id}`` (a batch of one),
``POST /api/videos/bulk/{delete,analyze}`` and the ``better_version`` filter answer
bad input with a JSON 4xx, and only the admin token may delete; ``GET /api/videos``
sorts, searches and filters by artist, and its cursor pages every order exactly once
(on SQLite, and on PostgreSQL when ``TEST_DATABASE_URL`` is set)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.conftest import VIEWER_TOKEN
from tests.db.databases import BACKENDS, migrated_database
from tests.support import api_client, wait_for_job


def add_video(settings: Any, name: str, **analysis: Any) -> int:
    from actors import stores
    from db.models import Video

    path = settings.media_root / "Routes" / f"{name}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    with stores.sessions().begin() as session:
        video = Video(
            title=name, source_url=f"https://example.com/{name}", extractor="test",
            extractor_id=name, path=f"Routes/{name}.mp4", size=1, **analysis,
        )  # fmt: skip
        session.add(video)
        session.flush()
        return int(video.id)


def test_deleting_one_video_is_a_job_and_an_unknown_one_is_a_404(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    video_id = add_video(settings, "one")
    response = api.delete(f"/api/videos/{video_id}")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "deletes" and response.headers["location"] == f"/api/jobs/{job['id']}"
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded"
    assert (done["result"]["done"], done["result"]["failed_count"]) == (1, 0)
    assert not (settings.media_root / "Routes" / "one.mp4").exists()
    for gone in (video_id, 424242, 2**31, 10**30):
        missing = api.delete(f"/api/videos/{gone}")
        assert missing.status_code == 404, gone
        assert missing.json()["error"]["code"] == "not_found"
    assert api.delete("/api/videos/nope").status_code == 404


def test_only_the_admin_token_deletes(server: Any, settings: Any) -> None:
    video_id = add_video(settings, "kept")
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        for response in (
            viewer.delete(f"/api/videos/{video_id}"),
            viewer.post("/api/videos/bulk/delete", json={"all": True}),
            viewer.post("/api/videos/bulk/analyze", json={"all": True}),
        ):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
        assert viewer.get(f"/api/videos/{video_id}").status_code == 200
        assert viewer.get("/api/jobs").json()["items"] == []
    assert (settings.media_root / "Routes" / "kept.mp4").exists()


@pytest.mark.parametrize(
    ("route", "subset", "other"),
    [("delete", None, "missing"), ("analyze", "unanalyzed", "missing")],
)
def test_a_bulk_request_names_its_videos_clearly(
    api: httpx.Client, route: str, subset: str | None, other: str
) -> None:
    path = f"/api/videos/bulk/{route}"
    bad: list[Any] = [
        {}, {"all": True, "ids": [1]}, {"ids": []}, {"ids": ["1"]}, {"ids": [0]},
        {"ids": [True]}, {"all": "yes"}, {"all": False}, {"ids": list(range(1, 10_002))},
        {"ids": [1], "extra": 1}, {other: True},
    ]  # fmt: skip
    for body in bad:
        response = api.post(path, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in ("invalid_selection", "invalid_ids")
    assert api.post(path, content=b"[1, 2]").status_code == 400
    assert api.post(path, json={"ids": list(range(1, 10_001))}).status_code == 202  # the cap
    if subset is not None:
        nothing = api.post(path, json={subset: True})
        assert nothing.status_code == 202 and nothing.json()["status"] == "succeeded"


def test_better_version_is_true_or_false(api: httpx.Client, settings: Any) -> None:
    low = add_video(settings, "low", better_version=True, quality_label="good", quality_score=70)
    high = add_video(settings, "high", better_version=False, quality_label="excellent")
    add_video(settings, "never-analysed")
    for value in ("yes", "1", "TRUE", "", "true,false"):
        response = api.get("/api/videos", params={"better_version": value})
        assert response.status_code == 400, value
        assert response.json()["error"]["field"] == "better_version"

    def listed(**params: Any) -> list[int]:
        return [video["id"] for video in api.get("/api/videos", params=params).json()["items"]]

    assert listed(better_version="true") == [low]
    assert listed(better_version="false") == [high]
    assert listed(better_version="true", quality="excellent") == []


def add_listed(session: Any, title: str, artist: str | None, duration: float | None) -> int:
    """A library row (no file) with an artist, for the list's orders and searches."""
    from db.library import artist_named
    from db.models import Video

    video = Video(
        title=title, artist_id=artist_named(session, artist).id if artist else None,
        duration=duration, source_url=f"https://example.com/{title}", extractor="test",
        extractor_id=f"{title}-{artist}-{duration}", path=f"Listed/{title}-{artist}-{duration}",
        size=1,
    )  # fmt: skip
    session.add(video)
    session.flush()
    return int(video.id)


# Titles and names of letters only (collation-proof: PostgreSQL's locale and Python
# agree on their order), with ties, cases, missing artists and durations.
LIBRARY = [
    ("bravo", "Zed", 200.0), ("Alpha", "amy", None), ("charlie", None, 30.5),
    ("alpha", "Zed", 30.5), ("Delta", "amy", 10.0), ("echo", None, None),
    ("bravo", "amy", 200.0),
]  # fmt: skip


def expected_order(ids: list[int], sort: str, only: list[int] | None = None) -> list[int]:
    """The order each sort promises of the rows of ``LIBRARY`` (whose ids are ``ids``),
    or of those ``only``, computed here from their values."""
    rows = {video_id: row for video_id, row in zip(ids, LIBRARY, strict=True)}
    keys = {
        "newest": lambda i: -i,
        "oldest": lambda i: i,
        "title": lambda i: (rows[i][0].lower(), i),
        "artist": lambda i: (rows[i][1] is None, (rows[i][1] or "").lower(), rows[i][0].lower(), i),
        "duration": lambda i: (rows[i][2] is None, rows[i][2] or 0.0, i),
    }
    return sorted(ids if only is None else only, key=keys[sort])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_order_pages_through_the_whole_library_once(backend: str, tmp_path: Any) -> None:
    """The keyset of each order on SQLite and PostgreSQL: pages of 2 add up to the
    order the sort promises, each video once, with ties, NULLs and cases."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from db.library import LibraryQuery, VideoSort, library_page

    with migrated_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            with Session(engine) as session, session.begin():
                ids = [add_listed(session, *row) for row in LIBRARY]
            for sort in VideoSort:
                seen: list[int] = []
                after = None
                with Session(engine) as session:
                    while True:
                        query = LibraryQuery(sort=sort, after=after)
                        rows = session.execute(library_page(query, 3)).all()
                        seen += [row[0].id for row in rows[:2]]
                        if len(rows) < 3:
                            break
                        after = tuple(rows[1][1:])
                assert seen == expected_order(ids, sort.value), sort
            with Session(engine) as session, session.begin():
                wild = add_listed(session, "100% a_b", "x\\y", None)
                add_listed(session, "100x aXb", None, None)

            def found(search: str) -> list[int]:
                query = LibraryQuery(sort=VideoSort.title, search=search)
                with Session(engine) as session:
                    return [row[0].id for row in session.execute(library_page(query, 50))]

            assert found("ZE") == [ids[3], ids[0]]  # the artist's name, without case
            assert found("0%") == found("A_B") == found("x\\Y") == [wild]  # no wildcards
            assert found("ALPHA") == [ids[1], ids[3]]  # a tie of titles: by id
        finally:
            engine.dispose()


def page_through(api: httpx.Client, **params: Any) -> list[int]:
    """Every video a list gives, following ``next`` with pages of 2."""
    seen: list[int] = []
    cursor = None
    while True:
        asked = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = api.get("/api/videos", params=asked)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [video["id"] for video in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return seen
        assert len(seen) <= 100, "the pages never end"


def test_the_list_sorts_searches_and_pages_through_the_api(api: httpx.Client) -> None:
    from actors import stores

    with stores.sessions().begin() as session:
        ids = [add_listed(session, *row) for row in LIBRARY]
        wild = add_listed(session, "100% a_b", None, None)
        near = add_listed(session, "100x aXb", None, None)
    assert page_through(api) == [near, wild, *reversed(ids)]
    for sort in ("newest", "oldest", "title", "artist", "duration"):
        listed = [i for i in page_through(api, sort=sort) if i in ids]
        assert listed == expected_order(ids, sort), sort
    # The search is a case-insensitive substring of the title or the artist's name ...
    assert page_through(api, q="ALPH", sort="oldest") == [ids[1], ids[3]]
    assert page_through(api, q="zE", sort="oldest") == [ids[0], ids[3]]
    amy = expected_order(ids, "title", only=[ids[1], ids[4], ids[6]])
    assert page_through(api, q="aMy", sort="title") == amy
    # ... whose LIKE wildcards are plain characters.
    assert page_through(api, q="0%") == [wild]
    assert page_through(api, q="a_b") == [wild]
    assert page_through(api, q="nothing like it") == []
    zed = api.get(f"/api/videos/{ids[0]}").json()["artist_id"]
    assert page_through(api, artist_id=zed, sort="oldest") == [ids[0], ids[3]]
    assert page_through(api, artist_id=zed, q="bra") == [ids[0]]
    assert page_through(api, artist_id=2**31 - 1) == []


def test_long_titles_sort_by_their_first_200_characters_and_page_exactly(
    api: httpx.Client,
) -> None:
    """A cursor carries the sort key, so the key holds at most 200 characters of a title
    (SQLite holds titles of any length): titles alike that far sort by id, and paging
    through them misses none."""
    from actors import stores

    same, artist = "X" * 300, "\N{GRINNING FACE}" * 300
    with stores.sessions().begin() as session:
        late = add_listed(session, same + "b", artist, None)
        early = add_listed(session, same + "a", artist, None)
        first = add_listed(session, "x" * 199 + "a", None, None)
    assert page_through(api, sort="title") == [first, late, early]
    assert page_through(api, sort="artist") == [late, early, first]
    cursor = api.get("/api/videos", params={"sort": "artist", "limit": 1}).json()["next"]
    assert len(cursor) < 4096


def test_bad_list_parameters_are_a_400_naming_them(api: httpx.Client) -> None:
    from actors import stores

    with stores.sessions().begin() as session:
        for row in LIBRARY:
            add_listed(session, *row)
    title_cursor = api.get("/api/videos", params={"sort": "title", "limit": 1}).json()["next"]
    assert title_cursor and not title_cursor.isdigit()
    bad = [
        ("sort", "NEWEST"), ("sort", ""), ("sort", "id"), ("sort", "title;drop"),
        ("q", ""), ("q", "   "), ("q", "x" * 201), ("q", "a\x00b"), ("q", "line\nbreak"),
        ("artist_id", "0"), ("artist_id", "-1"), ("artist_id", "x"), ("artist_id", "1.5"),
        ("artist_id", str(2**31)), ("artist_id", "١٢"), ("artist_id", ""),
        ("cursor", "12"), ("cursor", ""), ("cursor", "!!!"), ("cursor", "x" * 5000),
        ("cursor", "W10"), ("cursor", "bnVsbA"), ("cursor", "WyJuZXdlc3QiXQ"),
        ("cursor", '["newest",1]'), ("cursor", title_cursor),
    ]  # fmt: skip
    for field, value in bad:
        response = api.get("/api/videos", params={field: value})
        assert response.status_code == 400, (field, value, response.text)
        assert response.json()["error"]["field"] == field, (field, value)
    # Keys of the wrong type or out of range inside a well-formed cursor.
    malformed = [
        ["newest", "1"], ["newest", 2**31], ["newest", -1], ["newest", True], ["title", 1, 1],
        ["title", "a"], ["duration", 0, "NaN", 1], ["duration", 0, 1e400, 1],
        ["artist", 0, "a\u0000", "b", 1], ["nope", 1], ["duration", 0, 10**400, 1],
        ["artist", 0, "a" * 2000, "b", 1],
    ]  # fmt: skip
    for key in malformed:
        raw = json.dumps(key).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        sort = key[0] if key[0] != "nope" else "newest"
        response = api.get("/api/videos", params={"cursor": cursor, "sort": sort})
        assert response.status_code == 400, key
    nested = base64.urlsafe_b64encode(b"[" * 3000).decode()
    assert api.get("/api/videos", params={"cursor": nested}).status_code == 400
    # The cursor of one order in another: refused, saying so.
    response = api.get("/api/videos", params={"cursor": title_cursor, "sort": "artist"})
    assert response.status_code == 400
    assert "title order" in response.json()["error"]["message"]
    assert api.get("/api/videos", params={"cursor": title_cursor, "sort": "title"}).is_success


def test_the_library_pages_and_hls_js_load_under_the_page_policy(server: Any) -> None:
    """The pages hold nothing inline; the policy lets the player's Media Source
    (a blob: URL) play and nothing else use blob:; hls.js and its worker are served
    from our origin as scripts, byte for byte what its README names."""
    import hashlib
    import re
    from pathlib import Path

    from tests.web.test_http_hardening import InlineCode
    from web.security_headers import HTML_POLICY

    directives = dict(part.split(" ", 1) for part in HTML_POLICY.split("; "))
    assert directives["media-src"] == "'self' blob:"
    assert directives["script-src"] == "'self'" and "worker-src" not in directives
    assert [name for name, value in directives.items() if "blob:" in value] == ["media-src"]
    for path in ("/library", "/library/artists/1", "/library/videos/1"):
        page = httpx.get(server.url + path)
        assert page.status_code == 200 and page.headers["content-security-policy"] == HTML_POLICY
        inline = InlineCode()
        inline.feed(page.text)
        assert inline.found == [], path
    vendor = Path(__file__).resolve().parents[2] / "web" / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    for name in ("hls-1.7.4.min.js", "hls-1.7.4.worker.js"):
        asset = httpx.get(f"{server.url}/static/vendor/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith("text/javascript")
        digest = hashlib.sha256(asset.content).hexdigest()
        assert re.search(rf"`{re.escape(name)}`.*{digest}", readme), name


def test_every_static_file_is_packaged() -> None:
    """``pip install .`` (docker-compose's install) ships only what ``package_data``
    names: a page's module or the vendored hls.js left out would be a 404 there."""
    import configparser
    from fnmatch import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    globs = [glob.strip() for glob in config["options.package_data"]["web.static"].split(",")]
    static = root / "web" / "static"
    for path in static.rglob("*"):
        if path.is_file():
            name = path.relative_to(static).as_posix()
            assert any(
                glob.count("/") == name.count("/") and fnmatch(name, glob) for glob in globs
            ), name
