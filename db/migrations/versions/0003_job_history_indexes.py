"""indexes for a long job history: the list's filters in its order, retention

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 23:00:00

The single-column indexes on ``status``, ``kind`` and ``parent_id`` become indexes that
end in the job list's order (``created_at``, ``id``): a filtered page was read through
the filter's index and then sorted whole (every succeeded job, for ``?status=
succeeded``). They still serve every lookup by their first column (the one on
``parent_id`` holds the children only: a top-level job is no entry). Retention gets the
finished top-level jobs by ``finished_at`` and the jobs that retry a deleted one by
``retry_of`` (which every delete's foreign-key check also needs).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In this order: see db.models.Job (SQLite prefers the index created last among equals).
LIST_INDEXES = ("kind", "status", "parent_id")


def upgrade() -> None:
    for column in LIST_INDEXES:
        op.drop_index(f"ix_jobs_{column}", table_name="jobs")
    for column in LIST_INDEXES:
        # The children only (see db.models.Job): no entry for each top-level job.
        where = sa.text("parent_id IS NOT NULL") if column == "parent_id" else None
        op.create_index(
            f"ix_jobs_{column}_created_at_id",
            "jobs",
            [column, "created_at", "id"],
            sqlite_where=where,
            postgresql_where=where,
        )
    op.create_index(
        "ix_jobs_root_status_finished_at",
        "jobs",
        ["status", "finished_at"],
        sqlite_where=sa.text("parent_id IS NULL"),
        postgresql_where=sa.text("parent_id IS NULL"),
    )
    op.create_index(
        "ix_jobs_retry_of",
        "jobs",
        ["retry_of"],
        sqlite_where=sa.text("retry_of IS NOT NULL"),
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_retry_of", table_name="jobs")
    op.drop_index("ix_jobs_root_status_finished_at", table_name="jobs")
    for column in LIST_INDEXES:
        op.drop_index(f"ix_jobs_{column}_created_at_id", table_name="jobs")
        op.create_index(f"ix_jobs_{column}", "jobs", [column])
