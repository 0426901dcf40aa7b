"""``vidfleet download URL``: ask the server for a download, and with ``--wait``
follow it to its end.

Exit status: 0 when the job was queued (or, with ``--wait``, succeeded); 1 when the
server refused (a bad URL, a video already in the library, a wrong token) or cannot
be reached; 2 when the job failed or was cancelled; 130 on Ctrl-C, which stops the
waiting and not the job.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from db.queues import Priority
from media.formats import QUALITY_FORMATS
from web.cli.client import Api, ApiFailure, add_connection_options
from web.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_JOB_FAILED, CommandFailed
from web.cli.follow import follow_to_end
from web.cli.output import clean, mapping


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download a video into the library",
        description="Ask the server to download URL; prints the job's id. With --wait, "
        "shows the job's progress and exits 0 once the video is in the library, 2 if "
        "the job failed or was cancelled.",
    )
    parser.add_argument("video_url", metavar="URL", help="the video's page or file (http/https)")
    parser.add_argument("--quality", choices=list(QUALITY_FORMATS), help="default: best")
    parser.add_argument(
        "--priority", choices=[str(p) for p in Priority], help="default: high (the queue)"
    )
    parser.add_argument(
        "--force", action="store_true", help="download it again even if it is in the library"
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow the job until it ends (Ctrl-C stops waiting)"
    )
    add_connection_options(parser)
    parser.set_defaults(func=download)


def download(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.video_url}
    if args.quality:
        body["quality"] = args.quality
    if args.priority:
        body["priority"] = args.priority
    if args.force:
        body["force"] = True
    with Api.from_args(args) as api:
        try:
            status, job = api.request("POST", "/api/videos/download", body=body)
        except ApiFailure as refused:
            if refused.code == "already_in_library":
                video = clean(refused.error.get("video_id"), 20)
                print(
                    f"already in the library: video {video} (--force downloads it again)",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            raise
        job_id = str(job["id"])
        state = "already queued" if status == 200 else "queued"
        print(f"{state}: job {clean(job_id, 36)} ({clean(job.get('status'), 20)})", flush=True)
        if not args.wait:
            return 0
        return wait_for_download(api, job_id)


def wait_for_download(api: Api, job_id: str) -> int:
    job = follow_to_end(api, job_id)
    if job is None:
        return EXIT_INTERRUPTED
    return report_outcome(api, job)


def report_outcome(api: Api, job: dict[str, Any]) -> int:
    """Print how the job ended: the video it filed, or why it did not."""
    job_id = clean(job.get("id"), 36)
    if job.get("status") != "succeeded":
        error = mapping(job.get("error"))
        reason = clean(error.get("message") or "no reason given")
        kind = f" ({clean(error['type'], 40)})" if error.get("type") else ""
        print(f"job {job_id} {clean(job.get('status'), 20)}: {reason}{kind}", file=sys.stderr)
        return EXIT_JOB_FAILED
    result = mapping(job.get("result"))
    video_id = result.get("video_id")
    if not isinstance(video_id, int) or isinstance(video_id, bool):
        print(f"job {job_id} succeeded")
        return 0
    note = " (it was already in the library)" if result.get("already_in_library") else ""
    try:
        video = api.get(f"/api/videos/{video_id}")
    except CommandFailed:
        print(f"job {job_id} succeeded: video {video_id}{note}")
        return 0
    name = clean(video.get("title") or "untitled", 200)
    if video.get("artist"):
        name = f"{clean(video['artist'], 100)} - {name}"
    print(f"job {job_id} succeeded: video {video_id}: {name}{note}")
    return 0
