"""``vidfleet jobs`` (the recent jobs as a table, or their JSON) and ``vidfleet job
show|cancel|retry ID``.

A job is named by its id, or by the first 8 or more characters of it as the table
shows them, looked up among the 200 most recent jobs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from typing import Any

from web.cli.client import Api, add_connection_options
from web.cli.errors import CommandFailed
from web.cli.output import age, clean, mapping, percent, table
from web.cli.progress import job_state, live_figures, short_id

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PREFIX = re.compile(r"[0-9a-f-]{8,35}")
#: How far back a short id is looked for (the API's largest page).
PREFIX_SEARCH_LIMIT = 200


def add_commands(subparsers: Any) -> None:
    listing = subparsers.add_parser(
        "jobs", help="list recent jobs", description="The most recent jobs, newest first."
    )
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--kind", help="e.g. download, thumbnails, playlist_sync")
    listing.add_argument("--search", metavar="TEXT", help="in the URL, title or error message")
    listing.add_argument("--limit", type=int, default=20, help="how many (1-200; default 20)")
    listing.add_argument("--json", action="store_true", help="the API's JSON as it is")
    add_connection_options(listing)
    listing.set_defaults(func=list_jobs)

    job = subparsers.add_parser("job", help="show, cancel or retry one job")
    actions = job.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("show", show_job, "a job's details"),
        ("cancel", cancel_job, "stop a queued or running job"),
        ("retry", retry_job, "run a failed or cancelled job again, as a new job"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument(
            "job_id", metavar="ID", help="the job's id (or its first 8+ characters)"
        )
        if name == "show":
            action.add_argument("--json", action="store_true", help="the API's JSON as it is")
        add_connection_options(action)
        action.set_defaults(func=func)


def describe(job: dict[str, Any]) -> str:
    """What a job is about: a download's title or URL, else its kind's parameters."""
    params = mapping(job.get("params"))
    for key in ("title", "url", "name"):
        if params.get(key):
            return clean(params[key], 300)
    if job.get("message"):
        return clean(job["message"], 300)
    return ""


def list_jobs(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        page = api.get(
            "/api/jobs", status=args.status, kind=args.kind, q=args.search, limit=args.limit
        )
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    items = [job for job in page.get("items", []) if isinstance(job, dict)]
    if not items:
        print("no jobs")
        return 0
    rows = [
        [
            short_id(job.get("id")),
            clean(job.get("kind"), 20),
            clean(job.get("status"), 12),
            percent(job.get("progress")),
            age(job.get("created_at")),
            describe(job),
        ]
        for job in items
    ]
    width = shutil.get_terminal_size((120, 24)).columns
    print(table(["ID", "KIND", "STATUS", "PROGRESS", "AGE", "URL / TITLE"], rows, width))
    return 0


def resolve(api: Api, text: str) -> str:
    """A whole job id from an id or its first characters.

    Raises:
      CommandFailed: not an id, or a prefix that names no recent job or several.
    """
    given = text.strip().lower()
    if _JOB_ID.fullmatch(given):
        return given
    if not _PREFIX.fullmatch(given):
        raise CommandFailed(f"{clean(text, 60)!r} is not a job id (or 8+ of its first characters)")
    page = api.get("/api/jobs", limit=PREFIX_SEARCH_LIMIT)
    found = [
        str(job["id"])
        for job in page.get("items", [])
        if isinstance(job, dict) and str(job.get("id", "")).startswith(given)
    ]
    if len(found) != 1:
        which = "no" if not found else "more than one"
        raise CommandFailed(
            f"{which} recent job starts with {given}: give more of the id, or all of it"
        )
    return found[0]


def show_job(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        job = api.get(f"/api/jobs/{resolve(api, args.job_id)}")
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    for name, value in details(job):
        if value:
            print(f"{name + ':':<10} {value}")
    return 0


def details(job: dict[str, Any]) -> list[tuple[str, str]]:
    """``job show``'s lines: (name, text), the empty ones left for the caller to skip."""
    attempts = f"{clean(job.get('attempts'), 10)} of {clean(job.get('max_attempts'), 10)}"
    lines = [
        ("id", clean(job.get("id"), 36)),
        ("kind", clean(job.get("kind"), 40)),
        ("status", job_state(job)),
        ("progress", percent(job.get("progress"))),
        ("live", live_figures(job)),
        ("about", describe(job)),
        ("message", clean(job.get("message") or "")),
        ("attempts", attempts),
        ("queue", clean(job.get("queue"), 40)),
    ]
    for name in ("created_at", "started_at", "finished_at"):
        if job.get(name):
            when = f"{clean(job[name], 40)} ({age(job[name])} ago)"
            lines.append((name.removesuffix("_at"), when))
    error = mapping(job.get("error"))
    if error:
        lines.append(("error", f"{clean(error.get('message'))} ({clean(error.get('type'), 40)})"))
    if job.get("result") is not None:
        lines.append(("result", clean(json.dumps(job["result"]))))
    children = mapping(job.get("children"))
    counts = ", ".join(f"{clean(state, 20)} {clean(n, 10)}" for state, n in children.items())
    lines.append(("children", counts))
    for relation in ("parent_id", "retry_of"):
        lines.append((relation.replace("_", " "), clean(job.get(relation) or "", 36)))
    return lines


def cancel_job(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        job = api.post(f"/api/jobs/{resolve(api, args.job_id)}/cancel")
    state = clean(job.get("status"), 20)
    if state == "cancelled":
        print(f"job {clean(job.get('id'), 36)}: cancelled")
    else:
        print(f"job {clean(job.get('id'), 36)}: cancel requested ({state}; it stops shortly)")
    return 0


def retry_job(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        retry = api.post(f"/api/jobs/{resolve(api, args.job_id)}/retry")
    retry_of = clean(retry.get("retry_of"), 36)
    print(f"queued: job {clean(retry.get('id'), 36)} (a retry of {retry_of})")
    return 0
