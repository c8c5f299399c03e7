"""Verification of page results: each result's verdict and its generation attempts (task_results.verification),
and the PDF page's own text layer, captured at render time (pages.text_layer), that OCR is checked against.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_results", sa.Column("verification", postgresql.JSONB(), nullable=True))
    op.add_column("pages", sa.Column("text_layer", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("pages", "text_layer")
    op.drop_column("task_results", "verification")
