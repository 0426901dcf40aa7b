"""``/openapi.json``: built from the router, so every route is in it and a route without
a description cannot be served; public; and the fixes the fuzzer's findings led to."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute

from tests.conftest import ADMIN_TOKEN
from tests.support import LiveServer, api_client
from web.openapi import STATIC_MOUNTS, Undocumented, build_document


def router_operations(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every HTTP route of the app."""
    found = set()
    for route in app.routes:
        if isinstance(route, Route):
            found |= {(method.lower(), route.path_format) for method in route.methods or ()}
        else:
            assert isinstance(route, WebSocketRoute | Mount), f"unknown route {route!r}"
            if isinstance(route, Mount):
                assert route.path in STATIC_MOUNTS, f"{route.path}: not in the document"
    return found


def test_every_route_of_the_router_is_in_the_document(app: Any) -> None:
    document = build_document(app.routes)
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    operations = router_operations(app)
    assert len(operations) > 60
    assert operations == described
    assert "/ws" in document["info"]["description"]  # the WebSocket, as a note


def test_a_route_without_a_description_stops_the_document(app: Any) -> None:
    async def undescribed(request: Request) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(Undocumented, match="/api/undescribed"):
        build_document([*app.routes, Route("/api/undescribed", undescribed)])


def test_protected_routes_declare_their_credentials_and_refusals(app: Any) -> None:
    paths = build_document(app.routes)["paths"]
    download = paths["/api/videos/download"]["post"]
    assert {"bearer": []} in download["security"]
    assert {"session": [], "csrf": []} in download["security"]
    assert {"400", "401", "403", "409", "413", "429", "503"} <= set(download["responses"])
    listing = paths["/api/jobs"]["get"]
    assert {"session": []} in listing["security"] and "403" not in listing["responses"]
    assert paths["/healthz"]["get"]["security"] == []
    # Built from the handler's own constants.
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}


def test_the_document_is_public(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert "/api/videos/download" in document["paths"]


def test_a_405_allows_every_method_of_the_path(server: LiveServer) -> None:
    # GET and POST /api/playlists are two routes: Starlette named only the first's.
    with api_client(server.url, ADMIN_TOKEN) as client:
        response = client.request("PATCH", "/api/playlists")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_bulk_ids_may_be_integral_json_numbers(server: LiveServer) -> None:
    # To JSON and to JSON Schema, 7.0 is the integer 7: the fuzzer's finding.
    with api_client(server.url, ADMIN_TOKEN) as client:
        accepted = client.post("/api/artists/bulk/enrich", json={"ids": [7.0, 8]})
        refused = client.post("/api/artists/bulk/enrich", json={"ids": [7.5]})
        boolean = client.post("/api/artists/bulk/enrich", json={"ids": [True]})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["params"]["not_found"] == 2
    assert refused.status_code == 400 and boolean.status_code == 400
