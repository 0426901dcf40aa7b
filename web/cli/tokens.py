"""``vidfleet token create|list|revoke``: API tokens, over ``/api/tokens`` (admin).

A new token is printed once, alone on stdout (so ``vidfleet token create ci >
ci.token`` keeps it and nothing else); the server stores only its hash and never
shows it again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any

from web.cli.client import Api, add_connection_options
from web.cli.output import age, clean, table


def add_commands(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="create, list or revoke API tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="make an API token", description="Make an API token; it is shown once."
    )
    create.add_argument("name", metavar="NAME", help="what the token is for, e.g. ci")
    create.add_argument("--user", help="the user it acts as (default: yours)")
    add_connection_options(create)
    create.set_defaults(func=create_token)

    listing = actions.add_parser("list", help="the API tokens (never the tokens themselves)")
    listing.add_argument("--json", action="store_true", help="the API's JSON as it is")
    add_connection_options(listing)
    listing.set_defaults(func=list_tokens)

    revoke = actions.add_parser("revoke", help="revoke an API token: it stops working at once")
    revoke.add_argument("token_id", metavar="ID", type=int, help="the token's id (token list)")
    add_connection_options(revoke)
    revoke.set_defaults(func=revoke_token)


def create_token(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.user:
        body["user"] = args.user
    with Api.from_args(args) as api:
        made = api.post("/api/tokens", body)
    print(
        f"token {clean(made.get('id'), 20)} ({clean(made.get('name'), 100)}) for "
        f"{clean(made.get('user'), 100)}: store it now, it is not shown again",
        file=sys.stderr,
    )
    print(clean(made.get("token"), 600))
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        page = api.get("/api/tokens")
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    items = [item for item in page.get("items", []) if isinstance(item, dict)]
    if not items:
        print("no API tokens")
        return 0
    rows = [
        [
            clean(item.get("id"), 20),
            clean(item.get("user"), 60),
            age(item.get("created_at")),
            f"{age(item['last_used_at'])} ago" if item.get("last_used_at") else "never",
            clean(item.get("name"), 200),
        ]
        for item in items
    ]
    width = shutil.get_terminal_size((120, 24)).columns
    print(table(["ID", "USER", "AGE", "LAST USED", "NAME"], rows, width))
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        revoked = api.delete(f"/api/tokens/{args.token_id}")
    print(f"token {clean(revoked.get('id'), 20)} revoked")
    return 0
