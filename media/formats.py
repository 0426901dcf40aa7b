"""The qualities a download may ask for, as yt-dlp format selectors.

Apart from :mod:`media.download`, so that the web checks a request's ``quality``
without loading yt-dlp.
"""

from __future__ import annotations

#: Quality name -> yt-dlp format selector (never above that height; a single file
#: where no separate streams exist).
QUALITY_FORMATS = {
    "best": "bv*+ba/b",
    "2160p": "bv*[height<=2160]+ba/b[height<=2160]/b",
    "1080p": "bv*[height<=1080]+ba/b[height<=1080]/b",
    "720p": "bv*[height<=720]+ba/b[height<=720]/b",
    "480p": "bv*[height<=480]+ba/b[height<=480]/b",
    "worst": "wv*+wa/w",
}
