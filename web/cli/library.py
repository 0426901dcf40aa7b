"""``vidfleet library relayout [--dry-run]``: rename the library in place to the current
names (``POST /api/library/relayout``), following the job to its end.

A dry run prints the moves it found (``video N: FROM -> TO``, the first 200) and how
many there are, and touches nothing; otherwise the summary of what moved. Exit status:
0 when the job succeeded with no item failed; 1 when the server refused or cannot be
reached; 2 when the job failed or was cancelled, or some videos could not be moved
(each with its reason on stderr); 130 on Ctrl-C, which stops the waiting and not the
job.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from web.cli.client import Api, add_connection_options
from web.cli.errors import EXIT_INTERRUPTED, EXIT_JOB_FAILED
from web.cli.follow import follow_to_end
from web.cli.output import clean, mapping, number


def add_commands(subparsers: Any) -> None:
    library = subparsers.add_parser("library", help="work on the whole library")
    actions = library.add_subparsers(dest="action", required=True, metavar="ACTION")
    relayout = actions.add_parser(
        "relayout",
        help="rename the library's files to the current names",
        description="Move every video whose file is not under the current names (an old "
        "library's ASCII-only names) to them, with the files beside it, and its row; "
        "follows the job to its end. Safe to run again: what is in place stays.",
    )
    relayout.add_argument(
        "--dry-run", action="store_true", help="only list the moves; nothing is touched"
    )
    add_connection_options(relayout)
    relayout.set_defaults(func=run_relayout)


def run_relayout(args: argparse.Namespace) -> int:
    with Api.from_args(args) as api:
        status, job = api.request(
            "POST", "/api/library/relayout", body={"dry_run": bool(args.dry_run)}
        )
        job_id = clean(job["id"], 36)
        state = "already running" if status == 200 else "queued"
        print(f"{state}: job {job_id} ({clean(job.get('status'), 20)})", flush=True)
        finished = follow_to_end(api, job_id)
    if finished is None:
        return EXIT_INTERRUPTED
    if finished.get("status") != "succeeded":
        error = mapping(finished.get("error"))
        reason = clean(error.get("message") or "no reason given")
        print(f"job {job_id} {clean(finished.get('status'), 20)}: {reason}", file=sys.stderr)
        return EXIT_JOB_FAILED
    result = mapping(finished.get("result"))
    if mapping(finished.get("params")).get("dry_run"):
        return print_moves(result)
    return print_summary(job_id, result)


def count(value: Any) -> int:
    figure = number(value)
    return int(figure) if figure is not None else 0


def print_moves(result: dict[str, Any]) -> int:
    """A dry run's moves, one a line, then how many there are."""
    moves = [mapping(move) for move in result.get("moves") or []]
    for move in moves:
        print(
            f"video {clean(move.get('video_id'), 20)}: "
            f"{clean(move.get('from'), 1000)} -> {clean(move.get('to'), 1000)}"
        )
    total = count(result.get("total"))
    listed = f" (the first {len(moves)} listed)" if len(moves) < total else ""
    print(f"{total} videos would move{listed}; nothing was touched (dry run)")
    return 0


def print_summary(job_id: str, result: dict[str, Any]) -> int:
    """What a relayout moved; the videos it could not move, with why, on stderr."""
    done, skipped = count(result.get("done")), count(result.get("skipped"))
    failed = count(result.get("failed_count"))
    print(f"job {job_id} succeeded: {done} videos moved, {skipped} skipped, {failed} failed")
    for item in result.get("failed") or []:
        item = mapping(item)
        print(
            f"video {clean(item.get('id'), 20)}: {clean(item.get('reason'), 500)}",
            file=sys.stderr,
        )
    return EXIT_JOB_FAILED if failed else 0
