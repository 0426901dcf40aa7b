"""the last run of each schedule

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-09 10:00:00

One row per periodic actor, replaced by each of its runs (``db.schedule_runs``): when
it started and finished, its message, the job it created, its outcome and error.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("schedule_runs")
