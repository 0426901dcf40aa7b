"""``/api/tokens``: API tokens that act as their user (db/users.py).

An admin sees and revokes every token and makes them for anyone; a viewer only its
own (the middleware lets viewers call these routes: they check ownership here). A new
token is in the answer once; only its hash is kept. With the bootstrap admin token,
which is no user, ``user`` must say whose token to make.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import users
from db.models import Role
from db.users import InvalidInput
from web.apidoc import INT, STRING, TIME, array, documented, integer, nullable, obj
from web.auth import principal_of
from web.credentials import CredentialCache
from web.errors import ApiError, not_found, read_json_object
from web.users import NAME, invalid
from web.videos import MAX_ID

TOKEN = obj(
    {
        "id": INT,
        "name": STRING,
        "user": STRING,
        "created_at": nullable(TIME),
        "last_used_at": nullable(TIME),
    },
    required=["id", "name", "user", "created_at"],
)


@documented("API tokens: an admin's all, a viewer's own", {200: obj({"items": array(TOKEN)})})
async def list_tokens(request: Request) -> JSONResponse:
    principal = principal_of(request)
    items: list[dict[str, Any]] = []
    if principal.role == Role.admin:
        items = await request.app.state.store.run(users.list_tokens)
    elif principal.user is not None:
        items = await request.app.state.store.run(
            partial(users.list_tokens, user_id=principal.user.id)
        )
    return JSONResponse({"items": items})


async def _owner(request: Request, body: dict[str, Any]) -> int:
    """The id of the user the new token is for."""
    principal = principal_of(request)
    given = body.get("user")
    if given is None:
        if principal.user is None:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST,
                "invalid_field",
                "user is required: the admin token is no user",
                field="user",
            )
        return principal.user.id
    try:
        name = users.checked_name(given, "user")
    except InvalidInput as exc:
        raise invalid(exc) from None
    user = await request.app.state.store.run(users.find_user, name)
    if principal.role != Role.admin and (
        user is None or principal.user is None or principal.user.id != user.id
    ):
        # Said the same way whether or not the user exists.
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "forbidden", "only an admin makes tokens for other users"
        )
    if user is None:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "unknown_user", "there is no such user", field="user"
        )
    return user.id


@documented(
    "Make an API token",
    {201: {**TOKEN, "properties": {**TOKEN["properties"], "token": STRING}}},
    errors=(400, 403, 409),
    body=obj({"name": NAME, "user": NAME}, required=["name"]),
    description="`token` is shown this once. `user` defaults to the caller's own user.",
)
async def create_token(request: Request) -> JSONResponse:
    body = await read_json_object(request)
    try:
        name = users.checked_name(body.get("name"))
    except InvalidInput as exc:
        raise invalid(exc) from None
    user_id = await _owner(request, body)
    try:
        item, token = await request.app.state.store.run(
            partial(users.create_token, user_id=user_id, name=name), writes=True
        )
    except LookupError:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "unknown_user", "there is no such user", field="user"
        ) from None
    except users.TooManyTokens:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "too_many_tokens",
            f"a user may hold {users.MAX_TOKENS_PER_USER} API tokens; revoke one first",
        ) from None
    return JSONResponse(
        {
            "id": item["id"],
            "name": item["name"],
            "user": item["user"],
            "token": token,
            "created_at": item["created_at"],
        },
        status_code=status.HTTP_201_CREATED,
    )


@documented(
    "Revoke an API token",
    {200: obj({"id": INT, "revoked": {"const": True}})},
    errors=(404,),
    path_params={"token_id": integer(0)},
)
async def revoke_token(request: Request) -> JSONResponse:
    token_id: int = request.path_params["token_id"]
    principal = principal_of(request)
    store = request.app.state.store
    if token_id > MAX_ID:
        raise not_found("token")
    if principal.role != Role.admin:
        owner = await store.run(users.token_owner, token_id)
        if principal.user is None or owner != principal.user.id:
            raise not_found("token")  # another's token: not even whether it exists
    digest = await store.run(partial(users.revoke_token, token_id=token_id), writes=True)
    if digest is None:
        raise not_found("token")
    credentials: CredentialCache = request.app.state.credentials
    credentials.forget_token(digest)
    return JSONResponse({"id": token_id, "revoked": True})


routes = [
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens/{token_id:int}", revoke_token, methods=["DELETE"]),
]
