"""The bounded run of ``make fuzz`` (tests/fuzz.py): schemathesis over every operation of
``/openapi.json`` on a real web process, Redis and database, with every check, a few
examples each (``make fuzz`` runs 50)."""

from __future__ import annotations

from tests.fuzz import fuzz


def test_the_api_answers_as_its_document_says_under_fuzzing() -> None:
    # Fuzzing and stateful links only: the coverage phase's thousands of edge cases
    # are for make fuzz, which has the time.
    assert fuzz(max_examples=3, seed=12, extra=["--phases", "fuzzing,stateful"]) == 0
