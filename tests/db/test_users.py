"""The user service (db/users.py, migration 0008): argon2 passwords, names compared
case-insensitively, session epochs, API tokens stored as their sha256; SQLite always,
PostgreSQL when ``TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select

from db import users
from db.models import ApiToken, Role, utcnow


def add(engine: Engine, name: str, role: Role = Role.viewer, password: str = "a password") -> int:
    with engine.connect() as connection:
        user = users.add_user(
            connection, name=name, role=role, password_hash=users.hash_password(password)
        )
    return user.id


def test_a_password_is_stored_as_an_argon2id_hash_that_verifies_only_itself(
    engine: Engine,
) -> None:
    user_id = add(engine, "Alice", password="correct horse")
    with engine.connect() as connection:
        stored = users.password_hash_of(connection, user_id)
    assert stored is not None and stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert users.verify_password(stored, "correct horse")
    assert not users.verify_password(stored, "correct horsE")
    assert not users.verify_password(stored, "\ud800 lone surrogate")
    assert not users.verify_password("not a hash", "correct horse")
    # An unknown user: a dummy hash is verified (the same time), and it never matches.
    assert not users.verify_password(None, "correct horse")


def test_a_hash_under_weaker_parameters_is_noticed_for_rehashing(engine: Engine) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("old password")
    assert users.verify_password(weak, "old password")
    assert users.needs_rehash(weak)
    assert not users.needs_rehash(users.hash_password("old password"))


def test_names_are_unique_whatever_their_case_and_kept_as_given(engine: Engine) -> None:
    alice = add(engine, "Alice")
    for taken in ("alice", "ALICE", "Alice"):
        with pytest.raises(users.UserExists), engine.connect() as connection:
            users.add_user(connection, name=taken, role=Role.admin, password_hash="x")
    add(engine, "Straße")
    with pytest.raises(users.UserExists), engine.connect() as connection:
        users.add_user(connection, name="STRASSE", role=Role.admin, password_hash="x")
    with engine.connect() as connection:
        found = users.find_user(connection, "aLiCe")
        listed = users.list_users(connection)
    assert found is not None and (found.id, found.name) == (alice, "Alice")
    assert [item["name"] for item in listed] == ["Alice", "Straße"]
    assert listed[0]["role"] == "viewer" and listed[0]["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "name",
    ["", " alice", "alice ", "a\nb", "a\x00b", "a\x1bb", "\u2028", "x" * 65, "\ud800", 7, None],
)
def test_a_name_must_be_1_to_64_printable_characters(name: object) -> None:
    with pytest.raises(users.InvalidInput) as refused:
        users.checked_name(name)
    assert refused.value.field == "name"


def test_good_names_and_passwords_pass() -> None:
    assert users.checked_name("Zoë O'Brien") == "Zoë O'Brien"
    assert users.checked_name("x" * 64) == "x" * 64
    assert users.checked_password("8 chars!") == "8 chars!"
    for bad in ("7 chars", "x" * 1025, 12345678, "\ud800" * 8):
        with pytest.raises(users.InvalidInput):
            users.checked_password(bad)


def test_a_password_change_bumps_the_session_epoch_and_a_rehash_does_not(
    engine: Engine,
) -> None:
    user_id = add(engine, "bob")
    with engine.connect() as connection:
        changed = users.set_password(connection, user_id, users.hash_password("new password"))
        assert changed is not None and changed.session_epoch == 1
        same = users.set_password(connection, user_id, "rehashed", end_sessions=False)
        assert same is not None and same.session_epoch == 1
        assert users.set_password(connection, 10**6, "x") is None
        login = users.find_login(connection, "BOB")
    assert login is not None and login.password_hash == "rehashed"


def test_a_token_is_shown_once_stored_as_its_sha256_and_finds_its_user(engine: Engine) -> None:
    user_id = add(engine, "carol", Role.admin)
    with engine.connect() as connection:
        item, token = users.create_token(connection, user_id=user_id, name="ci")
        stored = connection.execute(select(ApiToken.token_hash)).scalar_one()
        found = users.find_by_token(connection, token)
        listed = users.list_tokens(connection)
    assert token.startswith("vf_") and len(token) > 40
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert item == {
        "id": item["id"],
        "name": "ci",
        "user": "carol",
        "created_at": item["created_at"],
        "last_used_at": None,
    }
    assert listed == [item] and token not in str(listed)
    assert found is not None and found.user.id == user_id and found.user.role == Role.admin
    with engine.connect() as connection:
        for other in (token + "x", token[:-1], "vf_", "", token.replace("vf_", "xx_")):
            assert users.find_by_token(connection, other) is None


def test_a_tokens_use_is_noted_at_most_once_a_minute(engine: Engine) -> None:
    user_id = add(engine, "dave")
    with engine.connect() as connection:
        item, token = users.create_token(connection, user_id=user_id, name="laptop")
        first = utcnow()
        users.note_token_use(connection, item["id"], first)
        users.note_token_use(connection, item["id"], first + timedelta(seconds=30))
        noted = users.find_by_token(connection, token)
        assert noted is not None and noted.last_used_at is not None
        assert noted.last_used_at.replace(tzinfo=None) == first.replace(tzinfo=None)
        later = first + timedelta(minutes=2)
        users.note_token_use(connection, item["id"], later)
        again = users.find_by_token(connection, token)
    assert again is not None and again.last_used_at is not None
    assert again.last_used_at.replace(tzinfo=None) == later.replace(tzinfo=None)


def test_revoking_a_token_and_removing_a_user_end_their_tokens(engine: Engine) -> None:
    erin, frank = add(engine, "erin"), add(engine, "frank")
    with engine.connect() as connection:
        kept, kept_token = users.create_token(connection, user_id=erin, name="kept")
        revoked, revoked_token = users.create_token(connection, user_id=erin, name="revoked")
        _, franks = users.create_token(connection, user_id=frank, name="frank's")
        assert users.token_owner(connection, revoked["id"]) == erin
        assert users.revoke_token(connection, revoked["id"]) == users.token_hash(revoked_token)
        assert users.revoke_token(connection, revoked["id"]) is None
        assert users.find_by_token(connection, revoked_token) is None
        assert [t["name"] for t in users.list_tokens(connection, user_id=erin)] == ["kept"]

        assert users.remove_user(connection, frank)
        assert not users.remove_user(connection, frank)
        assert users.find_by_token(connection, franks) is None  # cascaded with its user
        assert users.user_auth(connection, frank) is None
        assert users.find_by_token(connection, kept_token) is not None
        assert [t["id"] for t in users.list_tokens(connection)] == [kept["id"]]


def test_a_user_holds_a_bounded_number_of_tokens(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "MAX_TOKENS_PER_USER", 2)
    user_id = add(engine, "gina")
    with engine.connect() as connection:
        users.create_token(connection, user_id=user_id, name="one")
        users.create_token(connection, user_id=user_id, name="two")
        with pytest.raises(users.TooManyTokens):
            users.create_token(connection, user_id=user_id, name="three")
        with pytest.raises(LookupError):
            users.create_token(connection, user_id=10**6, name="nobody's")


def test_a_removed_users_id_is_never_given_again(engine: Engine) -> None:
    first = add(engine, "olga")
    with engine.connect() as connection:
        assert users.remove_user(connection, first)
    second = add(engine, "olga")
    assert second > first  # its cookies (which name the id) cannot become the new olga's
