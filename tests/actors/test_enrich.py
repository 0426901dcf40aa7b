"""Bulk artist enrichment across two worker processes against a fake MusicBrainz: the
fleet sends it no two requests less than a second apart, a clear match fills the artist
and its picture becomes the artist's image set, close candidates are kept as
``ambiguous``, a 503 with ``Retry-After`` is waited out, and a malformed answer or a
404 fails only its artist."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fake_musicbrainz import Answer, FakeMusicBrainz, artist, as_json, hit, search
from tests.support import procfile_workers, wait_for, wait_for_job

NINA = "9fe4d1d6-27e3-4a7c-9b1f-2a5b8d2e6f01"
NIRVANA_US = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"
NIRVANA_UK = "9282c8b4-ca0b-4c6b-b7e3-4f7762dfc4d6"
PATIENT = "0b0e0d3c-5b6a-4c1e-9a8f-7d6e5c4b3a21"
CONTACT = "ops@vidfleet.invalid"


@pytest.fixture
def musicbrainz() -> Iterator[FakeMusicBrainz]:
    server = FakeMusicBrainz().start()
    yield server
    server.stop()


def portrait() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 400), (20, 90, 200)).save(out, format="PNG")
    return out.getvalue()


def add_artists(*names: str) -> list[int]:
    from actors import stores
    from db.library import artist_named

    with stores.sessions().begin() as session:
        return [int(artist_named(session, name).id) for name in names]


def test_enrichment_across_two_workers_keeps_musicbrainz_pace_and_fails_only_bad_answers(
    api: httpx.Client, musicbrainz: FakeMusicBrainz, tmp_path: Path, monkeypatch: Any
) -> None:
    from db import job_service

    musicbrainz.images["nina.png"] = portrait()
    musicbrainz.searches.update({
        "Nina Simone": [search(hit("Nina Simone", NINA, 100, country="US"))],
        "Nirvana": [search(hit("Nirvana", NIRVANA_US, 100, disambiguation="US grunge band"),
                           hit("Nirvana", NIRVANA_UK, 100, disambiguation="60s UK band"))],
        "Patient Band": [as_json({"error": "rate limit"}, 503, **{"Retry-After": "1"}),
                         search(hit("Patient Band", PATIENT, 95))],
        "Broken Answer": [Answer(200, b'{"artists": [')],
    })  # fmt: skip
    musicbrainz.lookups.update({
        NINA: [artist(NINA, "Nina Simone", country="US", begin="1933-02-21",
                      genres={"jazz": 7, "soul": 5}, image=musicbrainz.url + "/images/nina.png")],
        PATIENT: [artist(PATIENT, "Patient Band", country="GB", begin="1999", tags={"indie": 2})],
    })  # fmt: skip
    nina, nirvana, patient, broken, gone = add_artists(
        "Nina Simone", "Nirvana", "Patient Band", "Broken Answer", "Gone Missing"
    )  # "Gone Missing" is no search the fake knows: a 404
    # Two parts (3 + 2 artists) instead of one of 20: each request costs a second.
    monkeypatch.setattr(job_service, "PART_SIZE", 3)
    bulk = api.post("/api/artists/bulk/enrich", json={"all": True})
    assert bulk.status_code == 202, bulk.text
    parent = bulk.json()
    assert parent["kind"] == "enrichments" and parent["status"] == "running"
    parts = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert sorted(len(p["params"]["items"]) for p in parts) == [2, 3]
    assert {(p["kind"], p["queue"]) for p in parts} == {("enrich_chunk", "bulk")}

    with procfile_workers(
        tmp_path / "workers.log",
        VIDFLEET_WORKER_PROCESSES="2",
        VIDFLEET_WORKER_THREADS="1",  # one part each: the two processes ask at once
        VIDFLEET_MUSICBRAINZ_URL=musicbrainz.url,
        VIDFLEET_MUSICBRAINZ_CONTACT=CONTACT,
    ):

        def finished(job_id: str) -> dict[str, Any] | None:
            job = api.get(f"/api/jobs/{job_id}").json()
            return job if job["finished_at"] else None

        done = wait_for(lambda: finished(parent["id"]), timeout=120, what="the enrichment")
        (image_job,) = api.get("/api/jobs?kind=artist_image").json()["items"]
        image_job = wait_for(lambda: finished(image_job["id"]), timeout=60, what="the image")

    arrivals = musicbrainz.api_arrivals()
    # Searches for all five, the 503's second try, lookups of the two clear matches.
    assert len(arrivals) == 8, [a.path for a in arrivals]
    gaps = [b.at - a.at for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 1.0, gaps
    assert {a.user_agent for a in arrivals} == {f"vidfleet/0.1.0 ( {CONTACT} )"}
    parts = api.get(f"/api/jobs?parent_id={parent['id']}").json()["items"]
    assert all(p["status"] == "succeeded" for p in parts)  # bad answers failed their artists
    assert len({p["result"]["worker"] for p in parts}) == 2  # both processes asked

    assert done["status"] == "succeeded", done
    summary = done["result"]
    assert (summary["done"], summary["failed_count"], summary["skipped"]) == (3, 2, 0), summary
    reasons = {f["id"]: f["reason"] for f in summary["failed"]}
    assert "malformed JSON" in reasons[broken], reasons
    assert "no such search (404 Not Found" in reasons[gone], reasons

    found = api.get(f"/api/artists/{nina}").json()
    assert (found["mbid"], found["country"], found["begin_year"]) == (NINA, "US", 1933)
    assert found["genres"] == ["jazz", "soul"]
    assert found["source_image_url"] == musicbrainz.url + "/images/nina.png"
    assert found["enrichment"]["status"] == "matched"
    image = {"url": found["source_image_url"], "job": image_job["id"]}
    assert found["enrichment"]["image"] == image
    assert image_job["status"] == "succeeded", image_job
    assert found["image_url"] and api.get(found["image_url"]).status_code == 200  # the set

    ambiguous = api.get(f"/api/artists/{nirvana}").json()
    assert ambiguous["enrichment"]["status"] == "ambiguous" and ambiguous["mbid"] is None
    assert [(c["mbid"], c["disambiguation"]) for c in ambiguous["enrichment"]["candidates"]] == [
        (NIRVANA_US, "US grunge band"), (NIRVANA_UK, "60s UK band")
    ]  # fmt: skip
    waited = api.get(f"/api/artists/{patient}").json()
    assert (waited["mbid"], waited["begin_year"], waited["genres"]) == (PATIENT, 1999, ["indie"])
    assert waited["image_url"] is None and waited["enrichment"].get("image") is None
    failed = api.get(f"/api/artists/{broken}").json()["enrichment"]
    assert failed["status"] == "failed" and "malformed JSON" in failed["reason"]


def test_a_musicbrainz_outage_retries_the_part_without_asking_again_for_what_it_did(
    api: httpx.Client, musicbrainz: FakeMusicBrainz, settings: Any, worker: Any, monkeypatch: Any
) -> None:
    import dataclasses

    from actors import enrich

    monkeypatch.setattr(
        enrich, "settings", dataclasses.replace(settings, musicbrainz_url=musicbrainz.url)
    )
    musicbrainz.searches.update({
        "Nina Simone": [search(hit("Nina Simone", NINA, 100))],
        # Busy for longer than a call may wait: the part's attempt fails at once.
        "Patient Band": [Answer(503, b"", {"Retry-After": "120"}), search()],
    })  # fmt: skip
    musicbrainz.lookups[NINA] = [artist(NINA, "Nina Simone", country="US")]
    nina, patient = add_artists("Nina Simone", "Patient Band")
    bulk = api.post("/api/artists/bulk/enrich", json={"ids": [nina, patient]}).json()
    done = wait_for_job(api, bulk["id"])

    assert done["status"] == "succeeded" and done["result"]["done"] == 2, done
    (part,) = api.get(f"/api/jobs?parent_id={bulk['id']}").json()["items"]
    assert part["attempts"] == 2, part
    asked = [a.query.get("query", [a.path])[0] for a in musicbrainz.api_arrivals()]
    # Nina's search and lookup once, in the first attempt; the second asked only again
    # for the artist the outage had stopped.
    assert asked == ['"Nina Simone"', f"/ws/2/artist/{NINA}", '"Patient Band"', '"Patient Band"']
    assert api.get(f"/api/artists/{nina}").json()["enrichment"]["status"] == "matched"
    assert api.get(f"/api/artists/{patient}").json()["enrichment"]["status"] == "not_found"
