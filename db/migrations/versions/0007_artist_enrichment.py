"""what MusicBrainz knows of an artist, and the outcome of its last enrichment

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-20 12:00:00

Set by an ``enrich_chunk`` job (``POST /api/artists/bulk/enrich``): the MBID,
disambiguation, country, begin year, genres and picture URL of a match; ``enrichment``
says how the last lookup went (matched, ambiguous, not found or failed, with the
candidates MusicBrainz offered).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("mbid", "disambiguation", "country", "begin_year", "genres", "image_url", "enrichment")


def upgrade() -> None:
    with op.batch_alter_table("artists") as batch:
        batch.add_column(sa.Column("mbid", sa.String(36), nullable=True))
        batch.add_column(sa.Column("disambiguation", sa.Text(), nullable=True))
        batch.add_column(sa.Column("country", sa.String(8), nullable=True))
        batch.add_column(sa.Column("begin_year", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("genres", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("image_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("enrichment", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artists") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
