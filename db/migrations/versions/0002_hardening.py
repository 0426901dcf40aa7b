"""one file per library entry; the container a video was probed as; who asked for a job

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:00:00

Two rows could share one path before (a video id is only unique within a site): the
file holds the later download, so the older rows' path is marked missing (their
``/stream`` answers 404) rather than left pointing at another video's file.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    videos = sa.table("videos", sa.column("id", sa.Integer), sa.column("path", sa.Text))
    connection = op.get_bind()
    shared = connection.execute(
        sa.select(videos.c.path).group_by(videos.c.path).having(sa.func.count() > 1)
    ).scalars()
    for path in list(shared):
        ids = connection.execute(
            sa.select(videos.c.id).where(videos.c.path == path).order_by(videos.c.id.desc())
        ).scalars()
        for video_id in list(ids)[1:]:
            connection.execute(
                videos.update()
                .where(videos.c.id == video_id)
                .values(path=f"{path}.missing-{video_id}")
            )
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("container", sa.String(length=64), nullable=True))
        batch.create_index("uq_videos_path", ["path"], unique=True)
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_jobs_active_owner",
        "jobs",
        ["owner"],
        sqlite_where=sa.text("status IN ('queued', 'running')"),
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_active_owner", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("videos") as batch:
        batch.drop_index("uq_videos_path")
        batch.drop_column("container")
