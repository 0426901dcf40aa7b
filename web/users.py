"""``/api/users`` (admin): list, add and remove the people who sign in.

A user is added with ``{"name", "password", "role"}`` (the password hashed in a
thread: argon2 is slow on purpose); removing one ends its sessions and API tokens at
once in this process, and within :data:`web.credentials.CACHE_TTL_S` on the others.
"""

from __future__ import annotations

from functools import partial

from starlette import status
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db import users
from db.jobs import iso
from db.models import Role, utcnow
from db.users import InvalidInput
from web.apidoc import INT, STRING, TIME, array, choice, documented, integer, nullable, obj, text
from web.auth import principal_of
from web.credentials import CredentialCache
from web.errors import ApiError, not_found, read_json_object
from web.videos import MAX_ID

USER = obj({"id": INT, "name": STRING, "role": choice(Role), "created_at": nullable(TIME)})
#: What :func:`db.users.checked_name` takes (it also wants every character printable).
NAME = text(1, users.MAX_NAME_LENGTH, pattern=r"^[^\s\x00-\x1f\x7f](.*[^\s\x00-\x1f\x7f])?$")


def require_admin(request: Request) -> None:
    """A 403 unless the caller is an admin (the middleware lets viewers read)."""
    if principal_of(request).role != Role.admin:
        raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden", "only an admin may do this")


def invalid(exc: InvalidInput) -> ApiError:
    return ApiError(status.HTTP_400_BAD_REQUEST, "invalid_field", str(exc), field=exc.field)


@documented("The users (admin)", {200: obj({"items": array(USER)})}, errors=(403,))
async def list_users(request: Request) -> JSONResponse:
    require_admin(request)
    return JSONResponse({"items": await request.app.state.store.run(users.list_users)})


@documented(
    "Add a user (admin)",
    {201: USER},
    errors=(400, 409),
    body=obj(
        {
            "name": NAME,
            "password": text(users.MIN_PASSWORD_LENGTH, users.MAX_PASSWORD_LENGTH),
            "role": choice(Role),
        },
        required=["name", "password"],
    ),
)
async def create_user(request: Request) -> JSONResponse:
    require_admin(request)
    body = await read_json_object(request)
    try:
        name = users.checked_name(body.get("name"))
        password = users.checked_password(body.get("password"))
    except InvalidInput as exc:
        raise invalid(exc) from None
    role = body.get("role", Role.viewer)
    if role not in tuple(Role):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_field",
            "role must be admin or viewer",
            field="role",
        )
    password_hash = await run_in_threadpool(users.hash_password, password)
    try:
        user = await request.app.state.store.run(
            partial(users.add_user, name=name, role=Role(role), password_hash=password_hash),
            writes=True,
        )
    except users.UserExists:
        raise ApiError(
            status.HTTP_409_CONFLICT,
            "already_exists",
            "a user with this name already exists",
            field="name",
        ) from None
    return JSONResponse(
        {"id": user.id, "name": user.name, "role": user.role, "created_at": iso(utcnow())},
        status_code=status.HTTP_201_CREATED,
    )


@documented(
    "Remove a user (admin)",
    {200: obj({"id": INT, "deleted": {"const": True}})},
    errors=(404,),
    path_params={"user_id": integer(0)},
)
async def delete_user(request: Request) -> JSONResponse:
    user_id: int = request.path_params["user_id"]
    if user_id > MAX_ID:
        raise not_found("user")
    removed = await request.app.state.store.run(
        partial(users.remove_user, user_id=user_id), writes=True
    )
    credentials: CredentialCache = request.app.state.credentials
    credentials.forget_user(user_id)
    if not removed:
        raise not_found("user")
    return JSONResponse({"id": user_id, "deleted": True})


routes = [
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/users/{user_id:int}", delete_user, methods=["DELETE"]),
]
