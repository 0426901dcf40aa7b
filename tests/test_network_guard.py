"""Downloads never reach internal addresses (issue 6, item 1), proven in a network
namespace of the test's own.

The cases live in ``tests/netns/ssrf_cases.py`` (a name the normal run does not
collect): a redirect to a loopback service, a page embedding a loopback ``<video src>``
and a host that rebinds from a public address to loopback must each fail as not
retryable without the loopback service seeing a request, while a direct public URL still
downloads; so must a playlist's sync whose feed redirects to loopback, and a public
feed's entries on loopback are rejected while its public entry downloads. This test
runs them in a fresh pytest session under ``unshare --net --mount``: loopback up, the
global-looking :data:`~tests.netns.ssrf_cases.PUBLIC_ADDRESS` added to it as the
"public internet" (so traffic never leaves the namespace), and a resolv.conf naming the
cases' own DNS server on 127.0.0.1 bind-mounted over ``/etc/resolv.conf`` (only inside
the new mount namespace). The inner session starts its own Redis and database, as every
session does, and must report exactly six passed tests. The test skips only where
``unshare`` is not permitted, and never as root (CI runs as root): there a namespace
that cannot be made is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns.ssrf_cases import LOOPBACK_ADDRESS, PUBLIC_ADDRESS

REPO = Path(__file__).resolve().parent.parent
CASES = "tests/netns/ssrf_cases.py"
EXPECTED = {"passed": 7}
TIMEOUT_S = 180  # a hang, not a slow run: the cases take about 20 s

# Runs inside the new namespaces: $1 the public address, $2 the resolv.conf to mount,
# $3 the Python to run pytest with, $4 the cases.
STEP = """
set -eu
ip link set lo up
ip addr add "$1/32" dev lo
mount --bind "$2" /etc/resolv.conf
exec "$3" -m pytest -q -p no:cacheprovider "$4"
"""


def _unshare_argv() -> list[str]:
    """``unshare`` for new network and mount namespaces; a user that is not root asks
    for a user namespace too, where unprivileged ones are allowed."""
    argv = ["unshare", "--net", "--mount"]
    if os.geteuid() != 0:
        argv.insert(1, "--map-root-user")
    return argv


def _require_unshare() -> None:
    """Skip where namespaces are not permitted; fail instead when running as root."""
    if shutil.which("unshare") is None:
        problem = "unshare is not installed"
    else:
        probe = subprocess.run(
            [*_unshare_argv(), "true"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return
        problem = f"`{' '.join(_unshare_argv())} true` failed: {probe.stderr.strip()}"
    if os.geteuid() == 0:
        pytest.fail(f"running as root, so a network namespace must be possible: {problem}")
    pytest.skip(f"no network namespace here: {problem}")


def summary_counts(output: str) -> dict[str, int]:
    """The outcome counts of pytest's final summary line (``4 passed, 1 warning in
    3.2s``), warnings left out; empty when there is no summary line."""
    for line in reversed(output.splitlines()):
        found = re.fullmatch(r"=*\s*(.+?) in [\d.]+s(?: \([\d:]+\))?\s*=*", line.strip())
        if not found:
            continue
        counts: dict[str, int] = {}
        for part in found.group(1).split(", "):
            number, _, outcome = part.partition(" ")
            if number.isdigit() and outcome not in ("warning", "warnings"):
                counts[outcome] = int(number)
        return counts
    return {}


def test_downloads_never_reach_internal_addresses(tmp_path: Path) -> None:
    _require_unshare()
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(f"nameserver {LOOPBACK_ADDRESS}\noptions timeout:2 attempts:2\n")
    env = dict(os.environ)
    # Servers of the outer run are out of reach inside the namespace: the inner session
    # starts its own Redis and uses SQLite.
    for name in ("TEST_REDIS_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    command = [
        *_unshare_argv(),
        "sh", "-c", STEP, "sh", PUBLIC_ADDRESS, str(resolv_conf), sys.executable, CASES,
    ]  # fmt: skip
    inner = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a hang is killed with everything it started
    )
    try:
        output, _ = inner.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(inner.pid, signal.SIGKILL)
        output, _ = inner.communicate()
        pytest.fail(f"the cases did not finish in {TIMEOUT_S} s:\n{output}")
    assert inner.returncode == 0, f"the cases exited with {inner.returncode}:\n{output}"
    counts = summary_counts(output)
    assert counts == EXPECTED, f"expected {EXPECTED}, the cases reported {counts}:\n{output}"
