"""playlists and channels, and their entries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14 02:00:00

A playlist is unique by its URL (through a sha256 of it: a unique index on 2,048
characters of UTF-8 could pass PostgreSQL's limit on an index row); an entry is unique
per playlist and URL, the same way. An entry's download job and video are plain
references without foreign keys: job history is pruned and videos are deleted while the
entry stays. Deleting a playlist deletes its entries (``ON DELETE CASCADE``; SQLite
enforces it too, db/engine.py turns foreign keys on).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_STATES = ("new", "queued", "downloaded", "failed", "rejected", "removed")


def upgrade() -> None:
    op.create_table(
        "playlists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("auto_download", sa.Boolean(), nullable=False),
        sa.Column("quality", sa.String(length=16), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sync_job_id", sa.String(length=36), nullable=True),
        sa.Column("last_sync_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_playlists_url_hash", "playlists", ["url_hash"], unique=True)
    op.create_table(
        "playlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("playlist_id", sa.Integer(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("source_id", sa.String(length=256), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*ENTRY_STATES, name="entrystate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("download_job_id", sa.String(length=36), nullable=True),
        sa.Column("video_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["playlist_id"], ["playlists.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("playlist_id", "url_hash", name="uq_playlist_entries_url"),
    )
    op.create_index(
        "ix_playlist_entries_playlist_position",
        "playlist_entries",
        ["playlist_id", "position", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_playlist_entries_playlist_position", table_name="playlist_entries")
    op.drop_table("playlist_entries")
    op.drop_index("uq_playlists_url_hash", table_name="playlists")
    op.drop_table("playlists")
