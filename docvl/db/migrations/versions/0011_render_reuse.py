"""A document rendered before is not rendered again: each page image's content hash, and each job's render
key (the document's content and the render settings), by which a later job finds an earlier render.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pages", sa.Column("image_sha256", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("render_key", sa.String(64), nullable=True))
    op.create_index(
        "ix_jobs_render_key",
        "jobs",
        ["render_key"],
        postgresql_where=sa.text("render_key IS NOT NULL AND rendered_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_render_key", table_name="jobs")
    op.drop_column("jobs", "render_key")
    op.drop_column("pages", "image_sha256")
