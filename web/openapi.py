"""``GET /openapi.json``: the OpenAPI 3.1 document of every route, made from the router.

It walks the app's routes; each handler carries its :class:`web.apidoc.Operation`
(declared beside it), and a route without one makes the document fail to build (a test
builds it), so no route can be added undescribed. What the middleware does to a route
is added here from the middleware's own rules: a protected path (web/auth.py) needs a
credential (bearer token, or the session cookie plus ``X-CSRF-Token`` on a mutating
request) and may answer 401, 429 and, when mutating, 403; a body may be refused with 413
(web/body_limit.py); any route that reads a store may answer 503. No library builds
this from Starlette routes without a YAML docstring per handler (Starlette's
SchemaGenerator), which would not be checked against the handler's constants.

The document is public, like ``/healthz``: it tells only the API's shape, which is
this open-source project's anyway, and a client needs it before it holds a credential.
"""

from __future__ import annotations

from typing import Any

from starlette import status
from starlette.convertors import IntegerConvertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from web.apidoc import (
    SCHEMAS,
    Answer,
    Operation,
    Schema,
    documented,
    obj,
    operation_of,
    ref,
)
from web.auth import CSRF_HEADER, SAFE_METHODS, AuthMiddleware
from web.cookies import SESSION_COOKIE
from web.errors import MAX_JSON_BODY

TITLE = "vidfleet"
VERSION = "0.1.0"
#: Mounts that are files, not API: the pages' scripts and styles.
STATIC_MOUNTS = frozenset({"/static"})
PUBLIC_STORELESS = frozenset({"/healthz", "/openapi.json", "/login", "/"})

ERROR_TEXT = {
    400: "Bad request: the error's `field` names what is wrong",
    401: "No valid credential",
    403: "Refused: a viewer asked to change something (`forbidden`), or a cookie without "
    "its `X-CSRF-Token` (`csrf`) or from a foreign Origin (`bad_origin`)",
    404: "Not found",
    409: "Conflict with the current state",
    413: f"The body is larger than the cap ({MAX_JSON_BODY} bytes; uploads: "
    "VIDFLEET_MAX_UPLOAD_BYTES)",
    415: "Not a picture we accept",
    416: "The range lies past the end of the file",
    422: "The file could not be processed",
    429: "Too many: jobs, failed credentials or streams; see `Retry-After`",
    503: "A store (database or Redis) cannot answer now, or no transcode slot is free; "
    "see `Retry-After`",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}

WEBSOCKET_NOTE = """
**WebSocket `/ws`** (OpenAPI has no WebSocket): live job events. Send
`{"action": "subscribe", "jobs": ["*"] or [ids], "since": id-or-null}`; each frame is one
event or a JSON array of events, `{"type": "job", "id": stream-id, "job": {...}}` or
`{"type": "resync"}`. It takes the same credentials as the API (a cookie only from an
allowed Origin); past the socket caps the handshake is a `429`.
"""


def _path_parameters(route: Route, operation: Operation) -> list[Schema]:
    parameters = []
    for name, convertor in route.param_convertors.items():
        schema = operation.path_params.get(name)
        if schema is None:
            is_int = isinstance(convertor, IntegerConvertor)
            schema = {"type": "integer", "minimum": 0} if is_int else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _answer(answer: Answer, *, head: bool) -> Schema:
    response: Schema = {"description": answer.description or "OK"}
    if answer.media_type is not None and not head:
        media: Schema = {}
        if answer.schema is not None:
            media["schema"] = answer.schema
        response["content"] = {answer.media_type: media}
    if answer.headers:
        response["headers"] = {name: {"schema": {"type": "string"}} for name in answer.headers}
    return response


def _error(code: int, *, head: bool) -> Schema:
    return {"$ref": f"#/components/responses/{'Head' if head else ''}Error{code}"}


def _operation(route: Route, method: str, operation: Operation) -> Schema:
    path = route.path
    head = method == "HEAD"
    protected = AuthMiddleware._protected(path)
    mutating = method not in SAFE_METHODS
    errors = set(operation.errors)
    if protected:
        errors |= {status.HTTP_401_UNAUTHORIZED, status.HTTP_429_TOO_MANY_REQUESTS}
        if mutating:
            errors.add(status.HTTP_403_FORBIDDEN)
    if route.param_convertors:
        errors.add(status.HTTP_404_NOT_FOUND)  # a parameter of the wrong form matches no route
    if path not in PUBLIC_STORELESS:
        errors.add(status.HTTP_503_SERVICE_UNAVAILABLE)
    if operation.body is not None:
        errors |= {status.HTTP_400_BAD_REQUEST, status.HTTP_413_CONTENT_TOO_LARGE}
    responses: dict[str, Schema] = {
        str(code): _answer(answer, head=head) for code, answer in operation.answers.items()
    }
    for code in sorted(errors):
        responses.setdefault(str(code), _error(code, head=head))
    document: Schema = {
        "summary": operation.summary,
        "operationId": f"{method.lower()}{route.path_format}",
        "parameters": [*_path_parameters(route, operation), *operation.parameters],
        "responses": responses,
    }
    if operation.description:
        document["description"] = operation.description
    if protected:
        cookie: dict[str, list[str]] = {"session": [], "csrf": []} if mutating else {"session": []}
        document["security"] = [{"bearer": []}, cookie]
    else:
        document["security"] = []
    if operation.body is not None:
        document["requestBody"] = {
            "required": operation.body_required,
            "content": {kind: {"schema": operation.body} for kind in operation.body_types},
        }
    return document


class Undocumented(LookupError):
    """A route whose handler carries no :class:`web.apidoc.Operation`."""


def paths_of(routes: list[BaseRoute]) -> dict[str, dict[str, Schema]]:
    """Every route's operations by path and method (HEAD described as its GET).

    Raises:
      Undocumented: a route's handler has no description.
    """
    paths: dict[str, dict[str, Schema]] = {}
    for route in routes:
        if isinstance(route, Mount) and route.path in STATIC_MOUNTS:
            continue  # files for the pages, not API
        if isinstance(route, WebSocketRoute):
            continue  # no WebSocket in OpenAPI: described in the document's text
        if not isinstance(route, Route):
            raise Undocumented(f"{route!r} is not a kind of route the document knows")
        operation = operation_of(route.endpoint)
        if operation is None:
            raise Undocumented(f"{route.path} ({route.endpoint.__name__}) has no description")
        for method in sorted(route.methods or ()):
            entry = paths.setdefault(route.path_format, {})
            entry[method.lower()] = _operation(route, method, operation)
    return paths


def _error_responses() -> dict[str, Schema]:
    responses = {}
    for code, description in ERROR_TEXT.items():
        body: Schema = {"description": description}
        if code in (status.HTTP_429_TOO_MANY_REQUESTS, status.HTTP_503_SERVICE_UNAVAILABLE):
            body["headers"] = RETRY_AFTER
        responses[f"HeadError{code}"] = dict(body)
        responses[f"Error{code}"] = {
            **body,
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return responses


def build_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "The vidfleet media engine's HTTP API. Errors are "
            '`{"error": {"code", "message", "field"?}}`; lists are `{"items", "next"}`.'
            + WEBSOCKET_NOTE,
        },
        "paths": paths_of(routes),
        "components": {
            "schemas": SCHEMAS,
            "responses": _error_responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin or viewer token, or a user's API token",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": CSRF_HEADER,
                    "description": "the `csrf` of `/api/session`, on a mutating request "
                    "with the cookie",
                },
            },
        },
    }


@documented(
    "This document",
    {200: Answer("The OpenAPI 3.1 document", obj({"openapi": {"const": "3.1.0"}}, ["openapi"]))},
)
async def openapi_json(request: Request) -> JSONResponse:
    document = getattr(request.app.state, "openapi", None)
    if document is None:
        document = request.app.state.openapi = build_document(request.app.routes)
    return JSONResponse(document)


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
