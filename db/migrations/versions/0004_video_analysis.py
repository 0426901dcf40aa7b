"""what the analysis of a video found (its full probe, its quality, its thumbnails) and
artists' images

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:30:00

The probe is kept with the file's size and mtime it was taken at, so it is reused while
the file is unchanged. The quality's label and score have indexes for the library's
filter (``GET /api/videos?quality=&min_score=``). An artist's image set lives in a folder
named by its version; the row names the current one and when its source was uploaded
(a later upload wins, whichever job finishes first).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("probe", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("probed_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("probed_mtime_ns", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("quality", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("quality_label", sa.String(16), nullable=True))
        batch.add_column(sa.Column("quality_score", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("better_version", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("thumbnail_widths", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_videos_quality_label_id", "videos", ["quality_label", "id"])
    op.create_index("ix_videos_quality_score_id", "videos", ["quality_score", "id"])
    with op.batch_alter_table("artists") as batch:
        batch.add_column(sa.Column("image_version", sa.String(36), nullable=True))
        batch.add_column(sa.Column("image_widths", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("image_formats", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("image_uploaded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artists") as batch:
        for column in ("image_uploaded_at", "image_formats", "image_widths", "image_version"):
            batch.drop_column(column)
    op.drop_index("ix_videos_quality_score_id", table_name="videos")
    op.drop_index("ix_videos_quality_label_id", table_name="videos")
    with op.batch_alter_table("videos") as batch:
        for column in (
            "analyzed_at",
            "thumbnail_widths",
            "better_version",
            "quality_score",
            "quality_label",
            "quality",
            "probed_mtime_ns",
            "probed_size",
            "probe",
        ):
            batch.drop_column(column)
