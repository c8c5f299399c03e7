"""Results reused by content: a greedy result's reuse key (the page's content, task, question, generation
cap, model and prompt), and where a reused result came from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_results", sa.Column("reuse_key", sa.String(64), nullable=True))
    op.add_column("task_results", sa.Column("reused_from_job", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column("task_results", sa.Column("reused_from_page", sa.Integer(), nullable=True))
    op.create_index(
        "ix_task_results_reuse_key",
        "task_results",
        ["reuse_key"],
        postgresql_where=sa.text("reuse_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_task_results_reuse_key", table_name="task_results")
    op.drop_column("task_results", "reused_from_page")
    op.drop_column("task_results", "reused_from_job")
    op.drop_column("task_results", "reuse_key")
