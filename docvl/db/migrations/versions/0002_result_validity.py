"""Task results record whether their artifact passed its check; jobs record their document outputs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_results", sa.Column("output_valid", sa.Boolean(), nullable=True))
    op.add_column("task_results", sa.Column("output_problem", sa.Text(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("jobs", "outputs")
    op.drop_column("task_results", "output_problem")
    op.drop_column("task_results", "output_valid")
