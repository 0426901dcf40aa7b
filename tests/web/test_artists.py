"""Artists and their images on a real server and worker: an upload is checked from its
header at once (a JSON 4xx for anything but a sane picture), then made into an upright,
metadata-free set of sizes by an ``artist_image`` job; the set is served like the
thumbnails; only the admin may upload."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import VIEWER_TOKEN
from tests.support import api_client, wait_for_job


def artist(name: str = "Nina Simone") -> int:
    from actors import stores
    from db.library import artist_named

    with stores.sessions().begin() as session:
        found = artist_named(session, name)
        session.flush()
        return int(found.id)


def sideways_jpeg() -> bytes:
    """200x100 pixels stored, red left and blue right, tagged 'rotate 90° clockwise':
    upright it is 100x200 with red on top."""
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "A camera maker"  # metadata that must not survive
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=95)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that declares ``width`` x ``height`` pixels (and no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_an_uploaded_photo_becomes_an_upright_set_without_its_metadata(
    api: httpx.Client, worker: Any
) -> None:
    artist_id = artist()
    response = api.put(
        f"/api/artists/{artist_id}/image",
        content=sideways_jpeg(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["image"] == {"format": "JPEG", "width": 200, "height": 100}
    assert wait_for_job(api, response.json()["id"])["status"] == "succeeded"

    found = api.get(f"/api/artists/{artist_id}").json()
    assert found["name"] == "Nina Simone" and found["image_url"].endswith(".webp")
    assert set(found["images"]) == {"128", "256", "512", "1024"}
    for width, urls in found["images"].items():
        assert {"webp", "jpg"} <= set(urls)
        for url in urls.values():
            served = api.get(url)
            assert served.status_code == 200, url
            image = Image.open(io.BytesIO(served.content))
            # Never upscaled: the upright source is 100 wide.
            assert image.size == (min(int(width), 100), min(int(width), 100) * 2)
            assert not image.getexif()  # no orientation tag, no maker: nothing kept
            top, bottom = image.convert("RGB").getpixel((image.width // 2, 2)), None
            bottom = image.convert("RGB").getpixel((image.width // 2, image.height - 3))
            assert top[0] > 200 and top[2] < 60, top  # red on top: upright
            assert bottom[2] > 200 and bottom[0] < 60, bottom
    listed = api.get("/api/artists").json()["items"]
    assert [a["id"] for a in listed] == [artist_id]


def test_a_multipart_upload_works_and_a_later_picture_replaces_the_set(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    artist_id = artist("Miles Davis")
    first = io.BytesIO()
    Image.new("RGB", (300, 300), (0, 255, 0)).save(first, format="PNG")
    response = api.put(
        f"/api/artists/{artist_id}/image", files={"image": ("a.png", first.getvalue(), "image/png")}
    )
    assert response.status_code == 202, response.text
    assert wait_for_job(api, response.json()["id"])["status"] == "succeeded"
    second = io.BytesIO()
    Image.new("RGB", (300, 300), (255, 255, 0)).save(second, format="WEBP")
    response = api.put(f"/api/artists/{artist_id}/image", content=second.getvalue())
    assert wait_for_job(api, response.json()["id"])["status"] == "succeeded"
    served = api.get(f"/artists/{artist_id}/image/128.jpg")
    assert Image.open(io.BytesIO(served.content)).convert("RGB").getpixel((5, 5))[2] < 60  # yellow
    sets = [p for p in (settings.artists_dir / str(artist_id)).iterdir()]
    assert len(sets) == 1 and sets[0].is_dir()  # the old set and the uploads are gone


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (png_claiming(50_000, 50_000), 400, "image_too_large"),
        (b"just some text, named .png\n" * 20, 415, "invalid_image"),
        (b"GIF89a" + b"\x00" * 3, 415, "invalid_image"),  # a truncated header
        (b"", 400, "missing_file"),
        (b"BM" + b"\x00" * 60, 415, "invalid_image"),  # BMP: a decoder we do not run
    ],
)
def test_what_is_not_a_sane_picture_is_a_json_4xx_at_once(
    api: httpx.Client, body: bytes, status: int, code: str, settings: Any
) -> None:
    artist_id = artist()
    response = api.put(f"/api/artists/{artist_id}/image", content=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert api.get("/api/jobs?kind=artist_image").json()["items"] == []
    assert not (settings.artists_dir / str(artist_id)).exists()


def test_uploads_are_capped_admin_only_and_the_images_need_a_credential(
    api: httpx.Client, server: Any, settings: Any
) -> None:
    artist_id = artist()
    too_big = b"\xff" * (settings.max_upload_bytes + 1)
    response = api.put(f"/api/artists/{artist_id}/image", content=too_big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert api.post("/api/videos/download", content=b"x" * 70_000).status_code == 413
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        refused = viewer.put(f"/api/artists/{artist_id}/image", content=sideways_jpeg())
        assert refused.status_code == 403
        assert viewer.get(f"/api/artists/{artist_id}").status_code == 200
    with api_client(server.url, None) as anonymous:
        assert anonymous.get(f"/artists/{artist_id}/image/128.webp").status_code == 401
    assert api.get(f"/artists/{artist_id}/image/128.webp").status_code == 404  # no set yet
    assert api.put("/api/artists/424242/image", content=sideways_jpeg()).status_code == 404
    assert api.get("/api/artists/99999999999").status_code == 404


def test_a_picture_that_passes_its_header_check_but_does_not_decode_fails_its_job_cleanly(
    api: httpx.Client, worker: Any, settings: Any
) -> None:
    artist_id = artist()
    noise = io.BytesIO()
    Image.effect_noise((600, 400), 60).convert("RGB").save(noise, format="JPEG")
    truncated = noise.getvalue()[: len(noise.getvalue()) * 2 // 3]  # header whole, data not
    response = api.put(f"/api/artists/{artist_id}/image", content=truncated)
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "invalid_image", done
    assert done["attempts"] == 1
    assert list((settings.artists_dir / str(artist_id)).iterdir()) == []  # nothing left
    assert api.get(f"/api/artists/{artist_id}").json()["image_url"] is None


def test_a_bulk_enrichment_names_its_artists_and_only_the_admin_may_start_one(
    api: httpx.Client, server: Any
) -> None:
    first, second = artist("Nina Simone"), artist("Miles Davis")
    for body in ({}, {"ids": []}, {"ids": ["1"]}, {"all": "yes"}, {"missing": True},
                 {"ids": list(range(1, 10_002))}, {"ids": [1], "all": True}):  # fmt: skip
        response = api.post("/api/artists/bulk/enrich", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] in ("invalid_selection", "invalid_ids")
    with api_client(server.url, VIEWER_TOKEN) as viewer:
        assert viewer.post("/api/artists/bulk/enrich", json={"all": True}).status_code == 403
    assert api.get("/api/jobs").json()["items"] == []

    started = api.post("/api/artists/bulk/enrich", json={"ids": [second, first, 424242]})
    assert started.status_code == 202, started.text
    parent = started.json()
    assert started.headers["Location"] == f"/api/jobs/{parent['id']}"
    assert (parent["kind"], parent["queue"], parent["status"]) == ("enrichments", "bulk", "running")
    assert parent["params"] == {"selection": "ids", "items": 2, "not_found": 1}
    (part,) = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert (part["kind"], part["queue"]) == ("enrich_chunk", "bulk")
    assert part["params"]["items"] == sorted([first, second])
    # Not enriched yet: the fields are there, empty.
    found = api.get(f"/api/artists/{first}").json()
    assert {key: found[key] for key in ("mbid", "disambiguation", "country", "begin_year",
                                         "genres", "source_image_url", "enrichment")} == {
        "mbid": None, "disambiguation": None, "country": None, "begin_year": None,
        "genres": [], "source_image_url": None, "enrichment": None,
    }  # fmt: skip
    cancelled = api.post(f"/api/jobs/{parent['id']}/cancel")
    assert cancelled.status_code == 202
    assert api.get(f"/api/jobs/{parent['id']}").json()["status"] == "cancelled"
