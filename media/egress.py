"""The egress guard: what a download's process may connect to and start.

Checking a URL's host once before the download leaves every later connection open:
yt-dlp follows redirects, resolves names again (DNS rebinding) and fetches whatever URLs
an extractor produces (embedded ``<video src>``, manifests, fragments). So the check
sits where the connection is made: an audit hook (PEP 578) on ``socket.connect`` sees
the numeric address the socket is about to connect to, after every redirect and
resolution, and refuses it unless it is public. The same hook refuses every process
start but an ffmpeg/ffprobe whose inputs are local files (FFmpeg then keeps nested
opens to ``file``, so a crafted playlist cannot reach the network either), which rules
out external downloaders (aria2c, rtmpdump, ffmpeg fetching URLs) that no socket hook
could see.

Audit hooks cannot be removed: install the guard only in a process of its own, such as
the child :func:`media.isolation.run_isolated` starts for each download.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from media.errors import MediaError

logger = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
PROGRAMS = ("ffmpeg", "ffprobe")
SPAWN_EVENTS = frozenset({"os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork"})
SEND_EVENTS = frozenset({"socket.sendto", "socket.sendmsg"})
#: Modules that make connections from C code an audit hook cannot see.
UNGUARDED_MODULES = ("curl_cffi",)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, compatible, 6to4,
    Teredo, NAT64): each must be public too."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if int(ip) >> 32 == 0:  # ::a.b.c.d, the deprecated IPv4-compatible form
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public_address(address: str | IpAddress) -> bool:
    """Whether ``address`` is a global unicast address, and so is every IPv4 address it
    embeds. CGNAT (100.64.0.0/10), 0.0.0.0/8, benchmarking, documentation, reserved,
    private, loopback, link-local and multicast addresses are not."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    except ValueError:
        return False
    candidates: list[IpAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(ip))
    return all(c.is_global and not c.is_multicast for c in candidates)


class EgressRefused(ConnectionRefusedError):
    """The guard refused a connection or a process start.

    A ``ConnectionRefusedError``, so that code trying several addresses of one host
    (``socket.create_connection``) moves on to the next one, as it would for a host
    that refused.
    """


class BlockedAddress(MediaError):
    """The download needed an address (or a program) that the guard refused."""

    def __init__(self) -> None:
        super().__init__(
            "the download tried to reach a private, loopback or otherwise non-public "
            "address (or to start a program other than ffmpeg); it was refused",
            code="private_address",
            retryable=False,
        )


_refusals: list[str] = []


def refusals() -> list[str]:
    """What the guard of this process has refused so far (for the error report)."""
    return list(_refusals)


def _refuse(what: str) -> None:
    _refusals.append(what)
    logger.warning("egress guard: refused %s", what)
    raise EgressRefused(f"vidfleet refused {what.split(' ', 1)[0]}")


def _check_address(address: Any) -> None:
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        _refuse(f"connection to {address!r} (not an internet address)")
    host = address[0]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # Resolving here would reopen the rebinding window: every library we run
        # resolves first and connects to the numeric address.
        _refuse(f"connection to {host!r} (a name, not an address)")
    if not is_public_address(host):
        _refuse(f"connection to {host} (not a public address)")


def _is_allowed_program(executable: Any, args: Any) -> bool:
    argv = [os.fsdecode(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
    program = os.path.basename(os.fsdecode(executable) if executable else argv[0])
    if not program.startswith(PROGRAMS):
        return False
    # yt-dlp names every local input "file:<path>"; anything else is a URL or a device.
    inputs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-i"]
    return all(value.startswith("file:") or value in ("-", "pipe:") for value in inputs)


def install_egress_guard(*, allow_private: bool) -> None:
    """Guard this process for good (an audit hook cannot be removed).

    Parameters:
      allow_private: connections may go anywhere (an operator's choice); process
        starts are still limited to ffmpeg/ffprobe on local files.
    """
    for name in UNGUARDED_MODULES:
        if sys.modules.get(name) is not None:
            # yt-dlp imports its request handlers when it is imported: one that talks
            # through C code would pass the guard unseen, so refuse to run at all.
            raise MediaError(
                f"{name} is installed and its connections cannot be guarded: uninstall it",
                code="unguarded_network",
                retryable=False,
            )
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: never used

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "subprocess.Popen":
            executable, argv = args[0], args[1]
            if not _is_allowed_program(executable, argv):
                _refuse(f"program {os.path.basename(str(executable or argv))!r}")
        elif event == "os.posix_spawn":
            if not _is_allowed_program(args[0], args[1]):
                _refuse(f"program {os.path.basename(str(args[0]))!r}")
        elif event in SPAWN_EVENTS:
            _refuse(f"process start ({event})")
        elif allow_private:
            return
        elif event == "socket.connect":
            sock, address = args
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                _refuse(f"connection to {address!r} (not an internet socket)")
            _check_address(address)
        elif event in SEND_EVENTS:
            address = args[-1]
            if address is not None:
                _check_address(address)

    sys.addaudithook(hook)
