"""media.ytdl_setup: an instance built from the prepared extractor list is the one
yt-dlp would build, the prepared TLS context serves every download that asks for the
default one, and the children of a prepared fork server download, fail and refuse
exactly as before. These tests read yt-dlp's private attributes on purpose: they fail
if an upgrade changes what media.ytdl_setup relies on."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yt_dlp
from yt_dlp.networking import _helper as networking_helper
from yt_dlp.networking import common as networking_common

from media.download import download_video, prepare_downloads
from media.egress import install_egress_guard
from media.errors import MediaError
from media.isolation import cool_down, run_isolated, warm_up
from media.ytdl_setup import extractors, share_tls_context, youtube_dl


@pytest.mark.parametrize("allowed", [["default"], ["default", "-generic"], ["all"], ["youtube"]])
def test_an_instance_gets_the_extractors_yt_dlp_would_add_in_its_order(allowed: list[str]) -> None:
    params = {"allowed_extractors": allowed, "quiet": True}
    with yt_dlp.YoutubeDL(dict(params)) as theirs, youtube_dl(dict(params)) as ours:
        assert list(ours._ies) == list(theirs._ies)
        assert [type(ie) for ie in ours._ies.values()] == [type(ie) for ie in theirs._ies.values()]
        assert list(ours._ies_instances) == list(theirs._ies_instances)


def test_the_generic_extractor_comes_last_and_only_when_allowed() -> None:
    with youtube_dl({"allowed_extractors": ["default"], "quiet": True}) as ydl:
        assert list(ydl._ies)[-1] == "Generic" and len(ydl._ies) > 1000
    with youtube_dl({"allowed_extractors": ["default", "-generic"], "quiet": True}) as ydl:
        assert "Generic" not in ydl._ies and len(ydl._ies) > 1000


def test_each_instance_gets_extractor_instances_of_its_own() -> None:
    # "all" includes yt-dlp's catch-all, which it adds as an instance.
    assert any(instance for _, instance in extractors(("all",)))
    first, second = (youtube_dl({"allowed_extractors": ["all"], "quiet": True}) for _ in "12")
    (key,) = first._ies_instances
    assert first._ies_instances[key] is not second._ies_instances[key]
    assert first._ies_instances[key]._downloader is first
    assert second._ies_instances[key]._downloader is second


@pytest.fixture
def tls_shared(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """share_tls_context() for this test only; a record of every CA bundle load."""
    monkeypatch.setattr(networking_common, "make_ssl_context", networking_common.make_ssl_context)
    share_tls_context()
    loads: list[bool] = []
    load_certs = networking_helper.ssl_load_certs

    def counted(context: ssl.SSLContext, use_certifi: bool = True) -> None:
        loads.append(use_certifi)
        load_certs(context, use_certifi)

    monkeypatch.setattr(networking_helper, "ssl_load_certs", counted)
    return loads


def test_downloads_share_the_prepared_tls_context_instead_of_loading_the_ca_bundle(
    tls_shared: list[bool], tmp_path: Path, media_server: Any
) -> None:
    # yt-dlp's HTTP handler builds its TLS context on its first request, even for http.
    for n in range(2):
        result = download_video(media_server.url(f"/media/tls-{n}.mp4"), tmp_path / str(n),
                                allow_generic=True)  # fmt: skip
        assert result.path.is_file()
    assert tls_shared == []


def test_only_a_request_for_the_default_tls_context_gets_the_shared_one(
    tls_shared: list[bool],
) -> None:
    contexts = []
    for params in ({}, {}, {"nocheckcertificate": True}, {"legacyserverconnect": True}):
        with youtube_dl({"quiet": True, **params}) as ydl:
            contexts.append(ydl._request_director.handlers["Urllib"]._make_sslcontext())
    shared, again, unchecked, legacy = contexts
    assert again is shared and unchecked is not shared and legacy is not shared
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    assert shared.get_ca_certs() and unchecked.verify_mode == ssl.CERT_NONE
    assert tls_shared == [True]  # the legacy one's bundle, loaded for it alone


@pytest.fixture
def prepared() -> Iterator[None]:
    """A warm fork server prepared as a worker's is (WarmMediaProcesses)."""
    warm_up(download_video, install_egress_guard, prepare=prepare_downloads)
    yield
    cool_down()


def download_isolated(url: str, workdir: Path, *, allow_generic: bool, allow_private: bool) -> Any:
    return run_isolated(
        download_video,
        kwargs={"url": url, "workdir": workdir, "allow_generic": allow_generic},
        setup=partial(install_egress_guard, allow_private=allow_private),
    )


def test_children_of_a_prepared_server_download_fail_and_refuse_as_before(
    prepared: None, tmp_path: Path, media_server: Any
) -> None:
    result = download_isolated(media_server.url("/media/prepared.mp4"), tmp_path / "a",
                               allow_generic=True, allow_private=True)  # fmt: skip
    assert result.path.is_file() and result.video_id == "prepared"
    assert result.extractor == "generic"
    failures = {
        "not_found": (media_server.url("/missing/prepared.mp4"), True, True),
        "unsupported_url": (media_server.url("/media/no-generic.mp4"), False, True),
        "private_address": (media_server.url("/media/private.mp4"), True, False),
    }
    for code, (url, allow_generic, allow_private) in failures.items():
        with pytest.raises(MediaError) as failed:
            download_isolated(url, tmp_path / code, allow_generic=allow_generic,
                              allow_private=allow_private)  # fmt: skip
        assert failed.value.code == code
