"""Users and API tokens as a request sees them, cached in this process for a moment.

A request with a user's cookie or API token needs the user's role and session epoch;
reading them from the database on every request would cost a round trip each (the
API's latency is benchmarked). So this process keeps what it read for at most
:data:`CACHE_TTL_S` seconds. The process that changes a user (a password, a removal)
or revokes a token forgets it at once; another replica, or the CLI, which writes the
database directly, takes effect within those seconds: that is the bound on how long a
removed user, a changed password's old sessions or a revoked token may still be
accepted elsewhere.
"""

from __future__ import annotations

import time
from functools import partial

from db import users
from db.engine import ConnectionRunner
from db.models import utcnow
from db.users import TokenAuth, UserAuth

CACHE_TTL_S = 5.0
#: Entries kept at most: past this the cache starts again (bounded memory beats a
#: perfect cache; a flood of tokens cannot grow it).
MAX_ENTRIES = 10_000


class CredentialCache:
    """Users by id and API tokens by hash, each for :data:`CACHE_TTL_S` seconds."""

    def __init__(self, store: ConnectionRunner) -> None:
        self.store = store
        self._users: dict[int, tuple[float, UserAuth | None]] = {}
        self._tokens: dict[str, tuple[float, TokenAuth]] = {}

    async def user(self, user_id: int) -> UserAuth | None:
        cached = self._users.get(user_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self.store.run(users.user_auth, user_id)
        if len(self._users) >= MAX_ENTRIES:
            self._users.clear()
        self._users[user_id] = (now + CACHE_TTL_S, found)
        return found

    async def token(self, token: str) -> TokenAuth | None:
        """The live API token ``token`` is, noting its use at most once a minute."""
        if not token.startswith(users.TOKEN_PREFIX):
            return None
        digest = users.token_hash(token)
        cached = self._tokens.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            found: TokenAuth | None = cached[1]
        else:
            # Unknown tokens are not cached: guesses are limited per client instead.
            found = await self.store.run(users.find_by_token, token)
        if found is None:
            self._tokens.pop(digest, None)
            return None
        moment = utcnow()
        last = found.last_used_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=moment.tzinfo)  # SQLite's are naive UTC
        if last is None or moment - last >= users.TOKEN_USE_RESOLUTION:
            await self.store.run(
                partial(users.note_token_use, token_id=found.token_id, now=moment), writes=True
            )
            found = TokenAuth(
                token_id=found.token_id,
                token_hash=found.token_hash,
                user=found.user,
                last_used_at=moment,
            )
        if len(self._tokens) >= MAX_ENTRIES:
            self._tokens.clear()
        expires = cached[0] if cached is not None and cached[0] > now else now + CACHE_TTL_S
        self._tokens[digest] = (expires, found)
        return found

    def forget_user(self, user_id: int) -> None:
        """The user changed here: the next request reads it again, as do its tokens."""
        self._users.pop(user_id, None)
        for digest, (_, found) in list(self._tokens.items()):
            if found.user.id == user_id:
                del self._tokens[digest]

    def forget_token(self, digest: str) -> None:
        self._tokens.pop(digest, None)
