"""media.egress: which addresses count as public, and what the guard lets a download's
process do (each guarded check runs in a child process: a guard cannot be removed)."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from media.download import download_video
from media.egress import BlockedAddress, install_egress_guard, is_public_address
from media.isolation import run_isolated
from tests.media import isolated_targets


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "100.100.100.200",  # CGNAT, where some clouds keep their metadata
        "0.0.0.0", "0.1.2.3", "198.18.0.1", "192.0.2.1", "198.51.100.7", "203.0.113.9",
        "240.0.0.1", "255.255.255.255", "224.0.0.251", "239.1.1.1",
        "::", "::1", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1",  # mapped, compatible
        "2002:7f00:1::1", "2002:a00:1::",  # 6to4 around 127.0.0.1 and 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 around loopback and metadata
        "fe80::1%eth0", "not an address", "",
    ],
)  # fmt: skip
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "2002:808:808::1", "64:ff9b::808:808"],
)  # fmt: skip
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


def test_the_guard_refuses_every_way_to_a_private_address_and_every_other_program(
    tmp_path: Path,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "service.sock"))
    unix.listen()
    try:
        outcome = run_isolated(
            isolated_targets.try_egress,
            kwargs={"port": listener.getsockname()[1], "unix_path": str(tmp_path / "service.sock")},
            setup=partial(install_egress_guard, allow_private=False),
        )
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing got through
    finally:
        listener.close()
        unix.close()
    refused = {name for name, result in outcome.items() if result != "ok"}
    assert refused == {
        "loopback", "mapped", "by_name", "unix", "udp", "shell", "os_system", "ffmpeg_url",
    }, outcome  # fmt: skip


def test_with_private_urls_allowed_only_programs_are_guarded(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        outcome = run_isolated(
            isolated_targets.try_egress,
            kwargs={"port": listener.getsockname()[1], "unix_path": str(tmp_path / "none")},
            setup=partial(install_egress_guard, allow_private=True),
        )
    finally:
        listener.close()
    assert outcome["loopback"] == "ok" and outcome["ffmpeg_version"] == "ok"
    assert outcome["shell"] != "ok" and outcome["ffmpeg_url"] != "ok"


def test_a_guarded_download_from_a_loopback_server_fails_for_good_and_asks_nothing(
    tmp_path: Path, media_server: Any
) -> None:
    path = "/media/guarded.mp4"
    with pytest.raises(BlockedAddress) as refused:
        run_isolated(
            download_video,
            kwargs={"url": media_server.url(path), "workdir": tmp_path, "allow_generic": True},
            setup=partial(install_egress_guard, allow_private=False),
        )
    assert not refused.value.retryable and refused.value.code == "private_address"
    assert path not in media_server.hits
