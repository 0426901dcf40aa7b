"""Benchmark 3, what the egress guard costs a download: the same local file (a 200 MiB
blob from a loopback HTTP server in this process) downloaded by yt-dlp through
``media.isolation.run_isolated``, once with the guard installed in the child (the audit
hook sees every event the child raises, and checks every process start) and once
without — the anchor. Private addresses are allowed in both (the server is on loopback),
so the connect check is not part of the figure: it runs once per connection, while the
hook runs on every audited event. Trials alternate (and which goes first); the median
seconds of each and guarded/bare are reported (1.0 means free).
"""

from __future__ import annotations

import tempfile
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.report import median, table

BLOB_BYTES = 200 * 1024 * 1024
CHUNK = 1024 * 1024


class _Blob(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(BLOB_BYTES))
        self.end_headers()
        chunk = b"\0" * CHUNK
        try:
            for _ in range(BLOB_BYTES // CHUNK):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # yt-dlp's first look at a URL reads only its start


def _download(url: str, guarded: bool) -> float:
    from media.download import download_video
    from media.egress import install_egress_guard
    from media.isolation import run_isolated

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        run_isolated(
            download_video,
            kwargs={"url": url, "workdir": Path(workdir), "allow_generic": True},
            setup=partial(install_egress_guard, allow_private=True) if guarded else None,
        )
        return time.perf_counter() - started


def run_egress(*, quick: bool = False) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Blob)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for n in range(2 if quick else 6):
            # Alternating which goes first: the second of a pair finds caches warm.
            for guarded in (False, True) if n % 2 == 0 else (True, False):
                url = f"http://127.0.0.1:{server.server_address[1]}/blob-{n}-{guarded}.mp4"
                times[guarded].append(_download(url, guarded))
    finally:
        server.shutdown()
        server.server_close()
    bare, with_guard = median(times[False]), median(times[True])
    mib = BLOB_BYTES / 2**20
    rows = [
        ["isolated download, no guard (anchor)", f"{bare:.2f}", f"{mib / bare:.0f}", "1.00"],
        ["isolated download, egress guard", f"{with_guard:.2f}", f"{mib / with_guard:.0f}",
         f"{with_guard / bare:.2f}"],
    ]  # fmt: skip
    return "Egress guard: one 200 MiB download (median s)\n" + table(
        ["run", "seconds", "MiB/s", "vs anchor"], rows
    )
