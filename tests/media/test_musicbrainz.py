"""The MusicBrainz client against a local fake server: a clear match is looked up and
filled, close candidates are ``ambiguous`` (never a guess), a busy server is waited for
as its ``Retry-After`` says (and given up on, retryably, past the wait cap), and a
malformed answer or a 404 is an error with a readable reason."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from media.musicbrainz import (
    Candidate,
    MusicBrainz,
    MusicBrainzError,
    MusicBrainzUnavailable,
    image_url,
    pick,
    user_agent,
)
from tests.fake_musicbrainz import Answer, FakeMusicBrainz, artist, as_json, hit, search

NINA = "9fe4d1d6-27e3-4a7c-9b1f-2a5b8d2e6f01"
NIRVANA_US = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"
NIRVANA_UK = "9282c8b4-ca0b-4c6b-b7e3-4f7762dfc4d6"
AGENT = user_agent("1.2.3", "ops@example.com")


@pytest.fixture
def fake() -> Iterator[FakeMusicBrainz]:
    server = FakeMusicBrainz().start()
    yield server
    server.stop()


def client(fake: FakeMusicBrainz, **options: float) -> MusicBrainz:
    return MusicBrainz(base_url=fake.url + "/", user_agent=AGENT, **options)  # type: ignore[arg-type]


def test_a_clear_match_is_looked_up_and_its_facts_filled(fake: FakeMusicBrainz) -> None:
    fake.searches["Nina Simone"] = [
        search(
            hit("Nina Simone", NINA, 100, country="US"), hit("Nina Simone Tribute", NIRVANA_UK, 62)
        )  # fmt: skip
    ]
    fake.lookups[NINA] = [
        artist(
            NINA,
            "Nina Simone",
            country="US",
            begin="1933-02-21",
            genres={"soul": 3, "jazz": 9, "blues": 0},
            tags={"piano": 4},
            image="https://commons.wikimedia.org/wiki/File:Nina_Simone_1965.jpg",
            disambiguation="American singer",
        )  # fmt: skip
    ]
    with client(fake) as musicbrainz:
        found = musicbrainz.enrich("Nina Simone")
    assert found.status == "matched"
    assert [c.mbid for c in found.candidates] == [NINA, NIRVANA_UK]
    facts = found.facts
    assert facts is not None
    assert (facts.mbid, facts.country, facts.begin_year) == (NINA, "US", 1933)
    assert facts.disambiguation == "American singer"
    assert facts.genres == ["jazz", "soul"]  # by votes; a genre nobody voted for is not one
    assert facts.image_url == (
        "https://commons.wikimedia.org/wiki/Special:FilePath/Nina_Simone_1965.jpg?width=1024"
    )
    searched, looked_up = fake.api_arrivals()
    assert searched.query["query"] == ['"Nina Simone"'] and searched.query["fmt"] == ["json"]
    assert looked_up.path == f"/ws/2/artist/{NINA}"
    assert looked_up.query["inc"] == ["tags genres url-rels"]  # sent as tags+genres+url-rels
    assert {a.user_agent for a in fake.arrivals} == {"vidfleet/1.2.3 ( ops@example.com )"}


def test_close_candidates_are_ambiguous_and_all_kept_without_a_lookup(
    fake: FakeMusicBrainz,
) -> None:
    fake.searches["Nirvana"] = [
        search(hit("Nirvana", NIRVANA_US, 100, country="US", disambiguation="90s US grunge band"),
               hit("Nirvana", NIRVANA_UK, 96, country="GB", disambiguation="60s band from the UK"))
    ]  # fmt: skip
    with client(fake) as musicbrainz:
        found = musicbrainz.enrich("Nirvana")
    assert found.status == "ambiguous" and found.facts is None
    assert [c.to_dict() for c in found.candidates] == [
        {"mbid": NIRVANA_US, "name": "Nirvana", "score": 100,
         "disambiguation": "90s US grunge band", "country": "US"},
        {"mbid": NIRVANA_UK, "name": "Nirvana", "score": 96,
         "disambiguation": "60s band from the UK", "country": "GB"},
    ]  # fmt: skip
    assert len(fake.api_arrivals()) == 1  # no lookup of a guess


def test_no_candidate_good_enough_is_not_found(fake: FakeMusicBrainz) -> None:
    fake.searches["Nobody Knows"] = [search(hit("Nobody", NINA, 71))]
    fake.searches['Quote " and \\ back'] = [search()]
    with client(fake) as musicbrainz:
        weak = musicbrainz.enrich("Nobody Knows")
        none = musicbrainz.enrich('Quote " and \\ back')  # escaped into the phrase
    assert (weak.status, [c.score for c in weak.candidates]) == ("not_found", [71])
    assert (none.status, none.candidates) == ("not_found", [])


def test_a_busy_server_is_waited_for_as_retry_after_says(fake: FakeMusicBrainz) -> None:
    fake.searches["Patient"] = [
        as_json({"error": "Your requests are exceeding the allowable rate limit."}, 503,
                **{"Retry-After": "1"}),
        search(),
    ]  # fmt: skip
    with client(fake) as musicbrainz:
        assert musicbrainz.enrich("Patient").status == "not_found"
    first, second = fake.api_arrivals()
    assert second.at - first.at >= 1.0


def test_a_server_busy_past_the_wait_cap_is_given_up_retryably(fake: FakeMusicBrainz) -> None:
    fake.searches["Busy"] = [as_json({"error": "slow down"}, 503, **{"Retry-After": "1"})]
    fake.searches["Very busy"] = [Answer(503, b"", {"Retry-After": "120"})]
    with client(fake, max_wait=2.5) as musicbrainz:
        with pytest.raises(MusicBrainzUnavailable) as busy:
            musicbrainz.enrich("Busy")
        assert len(fake.api_arrivals()) == 3  # at 0, 1 and 2 s; a third wait passes the cap
        started = time.monotonic()
        with pytest.raises(MusicBrainzUnavailable) as very:
            musicbrainz.enrich("Very busy")
        assert time.monotonic() - started < 1  # a wait past the cap is not even begun
    assert busy.value.retryable and "503" in busy.value.message
    assert very.value.code == "musicbrainz_unavailable"


def test_an_unreachable_server_is_unavailable(fake: FakeMusicBrainz) -> None:
    url = fake.url
    fake.stop()
    waits: list[float] = []
    gone = MusicBrainz(base_url=url, user_agent=AGENT, max_wait=3, sleep=waits.append)
    with gone, pytest.raises(MusicBrainzUnavailable) as error:
        gone.search("Anyone")
    assert waits == [1.0, 2.0] and "did not answer" in error.value.message  # then 4: past 3


def test_a_malformed_answer_and_a_404_are_readable_errors(fake: FakeMusicBrainz) -> None:
    fake.searches["Broken"] = [Answer(200, b'{"artists": [{"id": ')]
    fake.searches["Odd"] = [as_json({"artists": "none"})]
    fake.searches["Dangling"] = [search(hit("Dangling", NINA, 100))]  # its lookup is a 404
    with client(fake) as musicbrainz:
        with pytest.raises(MusicBrainzError) as broken:
            musicbrainz.enrich("Broken")
        with pytest.raises(MusicBrainzError) as odd:
            musicbrainz.enrich("Odd")
        with pytest.raises(MusicBrainzError) as dangling:
            musicbrainz.enrich("Dangling")
    assert not broken.value.retryable and "malformed JSON" in broken.value.message
    assert "no list of artists" in odd.value.message
    assert dangling.value.code == "musicbrainz_not_found"
    assert dangling.value.message == "MusicBrainz has no such artist (404 Not Found: Not Found)"


def test_hostile_hits_are_skipped_and_scores_are_bounded(fake: FakeMusicBrainz) -> None:
    fake.searches["Mixed"] = [
        search(hit("No id", "../../etc/passwd", 100), hit("", NINA, 100),
               {"id": NIRVANA_US, "name": "Mixed", "score": "100"},
               hit("Mixed", NIRVANA_UK, 1000, country="X" * 50))
    ]  # fmt: skip
    with client(fake) as musicbrainz:
        found = musicbrainz.search("Mixed")
    assert [(c.mbid, c.score, c.country) for c in found] == [
        (NIRVANA_US, 100, None), (NIRVANA_UK, 100, "XXXXXXXX")
    ]  # fmt: skip


def test_picking_takes_only_a_clear_best_above_the_threshold() -> None:
    def ranked(*scores: int) -> list[Candidate]:
        return [Candidate(mbid=NINA, name="n", score=s) for s in scores]

    assert pick(ranked()) == ("not_found", None)
    assert pick(ranked(89))[0] == "not_found"
    assert pick(ranked(90))[0] == "matched"
    assert pick(ranked(100, 91))[0] == "ambiguous"
    assert pick(ranked(100, 90))[0] == "matched"


def test_the_picture_is_the_first_image_relation() -> None:
    def relation(kind: str, url: object) -> dict[str, object]:
        return {"type": kind, "url": {"resource": url}}

    assert image_url(None) is None
    assert image_url([relation("wikidata", "https://www.wikidata.org/wiki/Q1"),
                      relation("image", "javascript:alert(1)"),
                      relation("image", "https://example.com/a.png")]) == (
        "https://example.com/a.png"
    )  # fmt: skip
    commons = relation("image", "https://commons.wikimedia.org/wiki/File:Bj%C3%B6rk%20(2).jpg")
    assert image_url([commons]) == (
        "https://commons.wikimedia.org/wiki/Special:FilePath/Bj%C3%B6rk%20%282%29.jpg?width=1024"
    )
