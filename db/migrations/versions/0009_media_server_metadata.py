"""what media servers read about a video: its artists, album, year, premiere date,
genres, director, chapters and subtitles

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 19:00:00

Filled from yt-dlp's metadata at download time (``None`` where the source says nothing):
they go into the video's NFO file in the ``kodi``/``jellyfin`` layouts and the player.
``chapters``: ``[{start, end, title, source}]`` (``source`` is ``chapters`` for the
source's own, ``sponsorblock`` for SponsorBlock's segments). ``subtitles``:
``[{lang, path, automatic}]``, each a WebVTT file beside the video (``path`` relative
to the media root).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("artists", sa.JSON()),
    ("album", sa.String(500)),
    ("release_year", sa.Integer()),
    ("premiered", sa.String(10)),
    ("genres", sa.JSON()),
    ("director", sa.String(500)),
    ("chapters", sa.JSON()),
    ("subtitles", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
