"""Direct play, ``GET``/``HEAD /stream/{video_id}``, against a real uvicorn server and
a real mp4 made by FFmpeg: ranges of every shape, ``If-Range``, unsatisfiable ranges,
too many ranges, HEAD, unknown ids and requests without a credential."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support import api_client, make_video
from web.streams import MAX_RANGES

SAMPLE_NAME = "Artist/Direct_play_[generic-direct].mp4"


@pytest.fixture(scope="module")
def source_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("stream") / "direct.mp4", seconds=4)


@pytest.fixture
def video(settings: Any, source_video: Path) -> dict[str, Any]:
    """The generated mp4 filed in the library with its probed row: id, path, bytes."""
    from actors import stores
    from db.library import NewVideo, save_video
    from media.probe import probe_file

    path = settings.media_root / SAMPLE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_video, path)
    info = probe_file(path)
    with stores.sessions().begin() as session:
        row = save_video(
            session,
            NewVideo(
                title="Direct play",
                artist="Artist",
                source_url="http://127.0.0.1/direct.mp4",
                extractor="generic",
                extractor_id="direct",
                path=SAMPLE_NAME,
                size=path.stat().st_size,
                duration=info.duration,
                width=info.width,
                height=info.height,
                vcodec=info.vcodec,
                acodec=info.acodec,
                container=info.container,
            ),
        )
        session.flush()
        video_id = row.id
    return {"id": video_id, "url": f"/stream/{video_id}", "data": path.read_bytes()}


def test_twenty_concurrent_range_clients_each_get_exactly_their_bytes(
    server: Any, video: dict[str, Any]
) -> None:
    data: bytes = video["data"]
    size = len(data)
    # Overlapping windows spread over the file, one of them the very last byte.
    windows = [(i * size // 23, i * size // 23 + size // 7) for i in range(19)]
    windows.append((size - 1, size - 1))

    def fetch(window: tuple[int, int]) -> tuple[int, httpx.Response]:
        start, end = window
        end = min(end, size - 1)
        with api_client(server.url, ADMIN_TOKEN) as client:
            return start, client.get(video["url"], headers={"Range": f"bytes={start}-{end}"})

    with ThreadPoolExecutor(max_workers=len(windows)) as pool:
        answers = list(pool.map(fetch, windows))
    assert len(answers) == 20
    for (start, end), (_, response) in zip(windows, answers, strict=True):
        end = min(end, size - 1)
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert int(response.headers["content-length"]) == end - start + 1
        assert response.content == data[start : end + 1]
        assert response.headers["content-type"] == "video/mp4"


def test_an_open_ended_range_gets_the_rest_of_the_file(api: httpx.Client, video: Any) -> None:
    data, start = video["data"], len(video["data"]) // 2 + 17
    response = api.get(video["url"], headers={"Range": f"bytes={start}-"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{len(data) - 1}/{len(data)}"
    assert response.content == data[start:]


def test_a_suffix_range_gets_the_last_bytes(api: httpx.Client, video: Any) -> None:
    data = video["data"]
    response = api.get(video["url"], headers={"Range": "bytes=-500"})
    assert response.status_code == 206
    assert response.headers["content-range"] == (
        f"bytes {len(data) - 500}-{len(data) - 1}/{len(data)}"
    )
    assert response.content == data[-500:]


def test_the_whole_file_comes_with_its_validators_and_media_headers(
    api: httpx.Client, video: Any
) -> None:
    response = api.get(video["url"])
    assert response.status_code == 200
    assert response.content == video["data"]
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] and response.headers["last-modified"]
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"


def test_if_range_with_the_current_etag_gets_the_range_and_a_stale_one_the_whole_file(
    api: httpx.Client, video: Any
) -> None:
    data = video["data"]
    etag = api.head(video["url"]).headers["etag"]
    current = api.get(video["url"], headers={"Range": "bytes=100-199", "If-Range": etag})
    assert current.status_code == 206 and current.content == data[100:200]
    stale = api.get(video["url"], headers={"Range": "bytes=100-199", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == data
    assert "content-range" not in stale.headers


def test_a_range_past_the_end_is_416_with_the_size(api: httpx.Client, video: Any) -> None:
    size = len(video["data"])
    for header in (f"bytes={size}-", f"bytes={size + 1000}-{size + 2000}", "bytes=-0"):
        response = api.get(video["url"], headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"
        assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_a_few_ranges_are_one_multipart_answer(api: httpx.Client, video: Any) -> None:
    data = video["data"]
    response = api.get(video["url"], headers={"Range": "bytes=0-9, 1000-1009"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert data[0:10] in response.content and data[1000:1010] in response.content
    assert f"Content-Range: bytes 1000-1009/{len(data)}".encode() in response.content


def test_as_many_ranges_as_the_cap_are_still_served_as_asked(api: httpx.Client, video: Any) -> None:
    data = video["data"]
    ranges = ", ".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(MAX_RANGES))
    response = api.get(video["url"], headers={"Range": f"bytes={ranges}"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges")
    assert response.content.count(b"Content-Range: bytes ") == MAX_RANGES
    assert data[(MAX_RANGES - 1) * 1000 : (MAX_RANGES - 1) * 1000 + 10] in response.content


@pytest.mark.parametrize("count", [MAX_RANGES + 1, 200])
def test_too_many_ranges_get_the_whole_file_never_a_5xx(
    api: httpx.Client, video: Any, count: int
) -> None:
    ranges = ", ".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(count))
    response = api.get(video["url"], headers={"Range": f"bytes={ranges}"})
    assert response.status_code == 200
    assert response.content == video["data"]


def test_head_gives_the_headers_and_no_body(api: httpx.Client, video: Any) -> None:
    size = len(video["data"])
    whole = api.head(video["url"])
    assert whole.status_code == 200
    assert whole.content == b""
    assert int(whole.headers["content-length"]) == size
    assert whole.headers["content-type"] == "video/mp4"
    ranged = api.head(video["url"], headers={"Range": "bytes=10-"})
    assert ranged.status_code == 206 and ranged.content == b""
    assert ranged.headers["content-range"] == f"bytes 10-{size - 1}/{size}"


def test_an_unknown_video_is_a_json_404(api: httpx.Client, video: Any) -> None:
    for path in (f"/stream/{video['id'] + 1}", "/stream/99999999999999999999"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"]


def test_a_row_whose_file_is_gone_is_a_json_404(
    api: httpx.Client, video: Any, settings: Any
) -> None:
    (settings.media_root / SAMPLE_NAME).unlink()
    response = api.get(video["url"])
    assert response.status_code == 404
    assert response.json()["error"]["code"]


def test_a_request_without_a_credential_is_refused(server: Any, video: Any) -> None:
    with api_client(server.url, None) as anonymous:
        for method in ("GET", "HEAD"):
            response = anonymous.request(method, video["url"], headers={"Range": "bytes=0-"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
    with api_client(server.url, "not-the-token-0123456789") as wrong:
        assert wrong.get(video["url"]).status_code == 401
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.get(video["url"], headers={"Range": "bytes=0-9"}).status_code == 206


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "items=0-9",
        "bytes=20-10",
        "bytes=",
        "bytes=--5",
        "bytes=0-9,,,",
        "bytes=99999999999999999999999999-",
        "bytes=" + "9" * 5000 + "-",
        "bytes=0-9," + ",".join(["x"] * 5000),
    ],
)
def test_a_malformed_range_is_a_4xx_or_the_whole_file_never_a_5xx(
    api: httpx.Client, video: Any, header: str
) -> None:
    response = api.get(video["url"], headers={"Range": header})
    assert response.status_code < 500
    if response.status_code == 200:
        assert response.content == video["data"]
    elif response.status_code != 206:  # a JSON error, as everywhere in the API
        assert response.status_code in (400, 416), response.text
        assert response.json()["error"]["code"] in ("invalid_range", "range_not_satisfiable")
