"""yt-dlp's set-up, paid once per process instead of once per download.

``yt_dlp.YoutubeDL(params)`` lists its extractors again for every instance (about
1,800 of them, filtered by ``allowed_extractors``: 38-41 ms of CPU), and its HTTP
handler builds a TLS context on its first request, loading the whole CA bundle (about
16 ms), even for an ``http://`` URL. A download child is a fork that runs one download
and exits, so every download paid both. Here the extractor list is worked out once per
process for each ``allowed_extractors`` and handed to each new instance
(:func:`youtube_dl`), and :func:`share_tls_context` has yt-dlp's request handlers use
one context built beforehand whenever they ask for the default one.
:func:`media.download.prepare_downloads` does both in the fork server, which never
downloads, and its children inherit them.

What depends on the job (its options, hooks, logger, cookie jar, archive, format
selector, and the extractor instances that do the work) is still built by each job's
own ``YoutubeDL``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import yt_dlp
from yt_dlp.networking import _helper as networking_helper
from yt_dlp.networking import common as networking_common

#: The arguments yt-dlp's handlers pass to ``make_ssl_context`` unless told otherwise
#: (``nocheckcertificate``, ``legacyserverconnect``, a client certificate, the
#: ``no-certifi`` compat option).
DEFAULT_TLS = {"verify": True, "legacy_support": False, "use_certifi": True}


@functools.cache
def extractors(allowed: tuple[str, ...]) -> tuple[tuple[Any, bool], ...]:
    """What ``YoutubeDL.add_default_info_extractors`` adds for ``allowed_extractors``
    ``allowed``, in its order: ``(extractor class, whether it adds an instance)``.

    yt-dlp offers no reader for the list: this takes it from ``YoutubeDL._ies``, the
    ordered ``{ie_key: class or instance}`` that ``add_info_extractor`` fills and
    ``extract_info`` tries in turn (tests/media/test_ytdl_setup.py fails if that
    changes).
    """
    ydl = yt_dlp.YoutubeDL({"allowed_extractors": list(allowed), "quiet": True}, auto_init=False)
    ydl.add_default_info_extractors()
    ydl.close()
    return tuple(
        (ie, False) if isinstance(ie, type) else (type(ie), True) for ie in ydl._ies.values()
    )


def youtube_dl(params: dict[str, Any]) -> yt_dlp.YoutubeDL:
    """``yt_dlp.YoutubeDL(params)``, with the extractors of its ``allowed_extractors``
    from :func:`extractors` instead of listed again. yt-dlp adds an instance (not a
    class) only for its catch-all ``UnsupportedURL``: this one gets one of its own."""
    ydl = yt_dlp.YoutubeDL(params, auto_init=False)
    ydl.print_debug_header()  # what auto_init does besides (only with ``verbose``)
    for extractor, instance in extractors(tuple(params.get("allowed_extractors", ["default"]))):
        ydl.add_info_extractor(extractor() if instance else extractor)
    return ydl


def share_tls_context() -> None:
    """From now on, yt-dlp's request handlers in this process share one TLS context,
    built now, when they ask for the default one (:data:`DEFAULT_TLS`, and the same
    ``SSLKEYLOGFILE``); any other is built as before, for its caller alone.

    A context holds no state of a request (the handlers keep their connections and
    cookies themselves; a client keeps no TLS sessions in it), so sharing it is what
    one ``YoutubeDL`` does for all its requests. yt-dlp offers no hook for it: this
    replaces ``yt_dlp.networking.common.make_ssl_context``, which
    ``RequestHandler._make_sslcontext`` calls (tests/media/test_ytdl_setup.py fails if
    it no longer does).
    """
    build = networking_helper.make_ssl_context  # yt-dlp's own, never our replacement
    context = build(**DEFAULT_TLS)
    keylog = os.environ.get("SSLKEYLOGFILE")

    def make_ssl_context(*args: Any, **kwargs: Any) -> Any:
        if not args and kwargs == DEFAULT_TLS and os.environ.get("SSLKEYLOGFILE") == keylog:
            return context
        return build(*args, **kwargs)

    networking_common.make_ssl_context = make_ssl_context
