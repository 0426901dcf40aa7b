"""The user service: people who sign in with a name and password, and their API tokens.

Every function takes a SQLAlchemy :class:`Connection` (the web runs them through its
``ConnectionRunner``, the CLI on an engine of its own) and commits what it changes.

Passwords are hashed with argon2id (argon2-cffi's defaults), which is slow on purpose:
callers hash and verify outside the event loop (the web in a thread), never inside a
unit of work here. A hash made under older parameters is replaced after the next
successful sign-in (:func:`needs_rehash`).

API tokens are ``vf_`` + 32 random bytes, shown once; only their sha256 is stored. A
fast hash is right for them, unlike for passwords: a token has 256 bits of entropy, so
no guessing of its preimage can succeed however fast the hash, and the lookup of a
bearer token on every request has to be cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from db.jobs import iso
from db.models import ApiToken, Role, User, utcnow

MAX_NAME_LENGTH = 64
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
TOKEN_PREFIX = "vf_"
#: A token's last use is written at most this often (one write a minute per token,
#: not one per request).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
#: API tokens one user may hold: enough for every machine and script, and a bound on
#: what one viewer can make the database keep.
MAX_TOKENS_PER_USER = 100

PASSWORDS = PasswordHasher()


class InvalidInput(ValueError):
    """A name or password that may not be used; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UserExists(Exception):
    """Another user has this name (names compare case-insensitively)."""


class TooManyTokens(Exception):
    """The user already holds :data:`MAX_TOKENS_PER_USER` tokens."""


@dataclass(frozen=True)
class UserAuth:
    """What a request needs of its user: who, which role, and the session epoch its
    cookie must carry."""

    id: int
    name: str
    role: Role
    session_epoch: int


@dataclass(frozen=True)
class TokenAuth:
    """The user a bearer token acts as."""

    token_id: int
    token_hash: str
    user: UserAuth
    last_used_at: datetime | None


@dataclass(frozen=True)
class Login:
    """A user found by name for a sign-in: the hash to verify against."""

    user: UserAuth
    password_hash: str


def checked_name(name: object, field: str = "name") -> str:
    """``name`` when it is 1 to 64 printable characters (no control characters, no
    line breaks, nothing at either end that looks like nothing).

    Raises:
      InvalidInput: naming ``field``.
    """
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or not name.isprintable()
        or name != name.strip()
    ):
        raise InvalidInput(
            field,
            f"{field} must be 1 to {MAX_NAME_LENGTH} printable characters, "
            "without spaces at either end",
        )
    return name


def checked_password(password: object, field: str = "password") -> str:
    """Raises:
    InvalidInput: unless ``password`` is text of 8 to 1024 characters."""
    if not isinstance(password, str) or not (
        MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    ):
        raise InvalidInput(
            field,
            f"{field} must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        )
    try:
        password.encode()
    except UnicodeEncodeError:  # a lone surrogate from JSON: not text argon2 can hash
        raise InvalidInput(field, f"{field} must be valid Unicode text") from None
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (slow: run it off the event loop)."""
    return PASSWORDS.hash(password)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (an unknown user) it verifies against
    a dummy one, so an unknown name takes as long as a wrong password."""
    try:
        return PASSWORDS.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return PASSWORDS.check_needs_rehash(password_hash)


def name_key(name: str) -> str:
    return name.casefold()


def _auth(row: Any) -> UserAuth:
    return UserAuth(id=row.id, name=row.name, role=Role(row.role), session_epoch=row.session_epoch)


_AUTH_COLUMNS = (User.id, User.name, User.role, User.session_epoch)


def add_user(connection: Connection, *, name: str, role: Role, password_hash: str) -> UserAuth:
    """A new user.

    Raises:
      UserExists: the name is taken (in any case).
    """
    try:
        user_id = connection.execute(
            insert(User)
            .values(
                name=name,
                name_key=name_key(name),
                role=role,
                password_hash=password_hash,
                session_epoch=0,
                created_at=utcnow(),
            )
            .returning(User.id)
        ).scalar_one()
        connection.commit()
    except IntegrityError:
        connection.rollback()
        raise UserExists(name) from None
    return UserAuth(id=user_id, name=name, role=role, session_epoch=0)


def list_users(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(*_AUTH_COLUMNS, User.created_at).order_by(User.id))
    return [
        {"id": row.id, "name": row.name, "role": row.role, "created_at": iso(row.created_at)}
        for row in rows
    ]


def user_auth(connection: Connection, user_id: int) -> UserAuth | None:
    row = connection.execute(select(*_AUTH_COLUMNS).where(User.id == user_id)).one_or_none()
    return None if row is None else _auth(row)


def find_user(connection: Connection, name: str) -> UserAuth | None:
    row = connection.execute(
        select(*_AUTH_COLUMNS).where(User.name_key == name_key(name))
    ).one_or_none()
    return None if row is None else _auth(row)


def find_login(connection: Connection, name: str) -> Login | None:
    row = connection.execute(
        select(*_AUTH_COLUMNS, User.password_hash).where(User.name_key == name_key(name))
    ).one_or_none()
    return None if row is None else Login(user=_auth(row), password_hash=row.password_hash)


def password_hash_of(connection: Connection, user_id: int) -> str | None:
    return connection.execute(
        select(User.password_hash).where(User.id == user_id)
    ).scalar_one_or_none()


def set_password(
    connection: Connection, user_id: int, password_hash: str, *, end_sessions: bool = True
) -> UserAuth | None:
    """Store a new hash; ``end_sessions`` bumps the epoch, so every session cookie made
    before no longer counts (a rehash of the same password keeps them). None: no such
    user."""
    values: dict[str, Any] = {"password_hash": password_hash}
    if end_sessions:
        values["session_epoch"] = User.session_epoch + 1
    row = connection.execute(
        update(User).where(User.id == user_id).values(**values).returning(*_AUTH_COLUMNS)
    ).one_or_none()
    connection.commit()
    return None if row is None else _auth(row)


def remove_user(connection: Connection, user_id: int) -> bool:
    """The user goes, and its API tokens with it (the foreign key cascades)."""
    removed = connection.execute(delete(User).where(User.id == user_id)).rowcount
    connection.commit()
    return bool(removed)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _token_item(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "user": row.user_name,
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
    }


_TOKEN_COLUMNS = (
    ApiToken.id,
    ApiToken.name,
    User.name.label("user_name"),
    ApiToken.created_at,
    ApiToken.last_used_at,
)


def create_token(connection: Connection, *, user_id: int, name: str) -> tuple[dict[str, Any], str]:
    """A new token for the user: its list item and the token itself (shown once).

    Raises:
      LookupError: no such user.
      TooManyTokens: the user holds the most tokens one may.
    """
    held = connection.execute(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id)
    ).scalar_one()
    if held >= MAX_TOKENS_PER_USER:
        raise TooManyTokens(user_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        token_id = connection.execute(
            insert(ApiToken)
            .values(user_id=user_id, name=name, token_hash=token_hash(token), created_at=utcnow())
            .returning(ApiToken.id)
        ).scalar_one()
    except IntegrityError:  # the user was removed meanwhile
        connection.rollback()
        raise LookupError(user_id) from None
    row = connection.execute(
        select(*_TOKEN_COLUMNS).join(User).where(ApiToken.id == token_id)
    ).one()
    connection.commit()
    return _token_item(row), token


def list_tokens(connection: Connection, *, user_id: int | None = None) -> list[dict[str, Any]]:
    """Every token (``user_id`` None) or one user's, oldest first; never the token."""
    query = select(*_TOKEN_COLUMNS).join(User).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [_token_item(row) for row in connection.execute(query)]


def token_owner(connection: Connection, token_id: int) -> int | None:
    return connection.execute(
        select(ApiToken.user_id).where(ApiToken.id == token_id)
    ).scalar_one_or_none()


def revoke_token(connection: Connection, token_id: int) -> str | None:
    """Delete the token; its hash (for caches to forget it), or None when there was none."""
    revoked = connection.execute(
        delete(ApiToken).where(ApiToken.id == token_id).returning(ApiToken.token_hash)
    ).scalar_one_or_none()
    connection.commit()
    return revoked


def find_by_token(connection: Connection, token: str) -> TokenAuth | None:
    """The user this bearer token acts as; None for anything that is not a live token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = token_hash(token)
    row = connection.execute(
        select(*_AUTH_COLUMNS, ApiToken.id.label("token_id"), ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    ).one_or_none()
    if row is None:
        return None
    return TokenAuth(
        token_id=row.token_id, token_hash=digest, user=_auth(row), last_used_at=row.last_used_at
    )


def note_token_use(connection: Connection, token_id: int, now: datetime) -> None:
    """Record that the token was used, unless a use within the last minute already was
    (by any process)."""
    connection.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            (ApiToken.last_used_at.is_(None))
            | (ApiToken.last_used_at < now - TOKEN_USE_RESOLUTION),
        )
        .values(last_used_at=now)
    )
    connection.commit()
