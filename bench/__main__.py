"""``python -m bench`` (``make bench``): sets up a throwaway Redis, SQLite database and
environment, runs the HTTP latency, job pipeline, egress guard, isolation, WebSocket
fan-out, direct play, streaming (TTFB, backends, capacity), job history, backlog and
media benchmarks in it and prints their tables; ``--quick`` runs a short version, ``--only``
one of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

from bench.env import bench_env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (fewer requests/jobs)")
    parser.add_argument(
        "--only",
        choices=(
            "http",
            "pipeline",
            "egress",
            "isolation",
            "ws",
            "stream",
            "streams",
            "history",
            "backlog",
            "media",
        ),
        help="run just one of the benchmarks",
    )
    parser.add_argument(
        "--ws-clients",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="split the WebSocket bench's 1,000 sockets over N Node.js client processes "
        "(default 1); several values run each rate with each split, servers taking turns",
    )
    parser.add_argument(
        "--ws-profile",
        type=Path,
        metavar="DIR",
        help="sample vidfleet's server with py-spy during each WebSocket trial (collapsed "
        "stacks in DIR; needs pip install py-spy)",
    )
    parser.add_argument(
        "--media-parts",
        nargs="+",
        choices=("probe", "poster", "images", "loop", "cores"),
        default=["probe", "poster", "images", "loop", "cores"],
        metavar="PART",
        help="run only these parts of the media bench: probe, poster, images, loop (the "
        "event loop under thumbnail work), cores (image work over threads and processes); "
        "default all",
    )
    args = parser.parse_args(argv)
    if min(args.ws_clients) < 1:
        parser.error("--ws-clients: at least 1 client process")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    print(
        f"vidfleet bench {'(quick) ' if args.quick else ''}on {date.today().isoformat()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"
    )
    with bench_env() as env:
        if args.only in (None, "http"):
            from bench.http_latency import run_http

            print()
            print(run_http(env, quick=args.quick).render(), flush=True)
        if args.only in (None, "pipeline"):
            from bench.pipeline import run_pipeline

            print()
            print(run_pipeline(env, quick=args.quick).render(), flush=True)
        if args.only in (None, "egress"):
            from bench.egress import run_egress

            print()
            print(run_egress(quick=args.quick), flush=True)
        if args.only in (None, "isolation"):
            from bench.isolation import run_isolation

            print()
            print(run_isolation(quick=args.quick), flush=True)
        if args.only in (None, "ws"):
            from bench.ws_fanout import run_ws

            print()
            ws = run_ws(
                env,
                quick=args.quick,
                client_processes=tuple(args.ws_clients),
                profile=args.ws_profile,
            )
            print(ws.render(), flush=True)
        if args.only in (None, "stream"):
            from bench.streaming import run_stream

            print()
            print(run_stream(env, quick=args.quick).render(), flush=True)
        if args.only in (None, "streams"):
            from bench.streams import run_streams

            print()
            print(run_streams(env, quick=args.quick).render(), flush=True)
        if args.only in (None, "history"):
            from bench.history import run_history

            print()
            print(run_history(quick=args.quick).render(), flush=True)
        if args.only in (None, "backlog"):
            from bench.backlog import run_backlog

            print()
            print(run_backlog(quick=args.quick).render(), flush=True)
        if args.only in (None, "media"):
            from bench.media import run_media

            print()
            print(run_media(quick=args.quick, parts=args.media_parts), flush=True)
    print(f"\ndone in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
