"""The durable lifecycle: what the database needs to drive every job from its own record.

claimed_at: a job runner has taken the job's start/render (kept fresh while it renders); rendered_at: every
page is registered and dispatched; finalizing_at: the one process assembling and finishing it; recovered_at:
the reconciler's last re-drive; notified_at: its end webhook is queued; flow_run_id: the Prefect flow run
that started it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMPS = ("claimed_at", "rendered_at", "finalizing_at", "recovered_at", "notified_at")


def upgrade() -> None:
    for name in STAMPS:
        op.add_column("jobs", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("flow_run_id", sa.String(length=64), nullable=True))
    # Jobs that ended before this revision were notified by the flow that ended them.
    op.execute("UPDATE jobs SET notified_at = finished_at WHERE finished_at IS NOT NULL")
    op.execute("UPDATE jobs SET rendered_at = started_at WHERE finished_at IS NOT NULL")
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["status", "updated_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_jobs_unnotified", "jobs", ["finished_at"], postgresql_where=sa.text("notified_at IS NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_unnotified", table_name="jobs")
    op.drop_index("ix_jobs_unfinished", table_name="jobs")
    op.drop_column("jobs", "flow_run_id")
    for name in reversed(STAMPS):
        op.drop_column("jobs", name)
