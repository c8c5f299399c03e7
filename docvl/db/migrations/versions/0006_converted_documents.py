"""Converted documents: an Office document's PDF, made by LibreOffice on its first render and stored beside
the original (`inputs/<sha256>.pdf`); later renders of the same document use it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("converted_key", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "converted_key")
