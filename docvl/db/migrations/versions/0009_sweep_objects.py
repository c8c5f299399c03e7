"""The sweep's memory: each swept object's version (ETag and size) and content hash, so that an unchanged
object is not read again; and each bucket's sweep totals, exported as metrics.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweep_objects",
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_sweep_objects_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("bucket", "key", name=op.f("pk_sweep_objects")),
    )
    op.create_index(op.f("ix_sweep_objects_job_id"), "sweep_objects", ["job_id"])
    op.create_table(
        "sweep_totals",
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("sweeps", sa.BigInteger(), nullable=False),
        sa.Column("objects_listed", sa.BigInteger(), nullable=False),
        sa.Column("objects_read", sa.BigInteger(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("jobs_made", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_sweep_totals")),
    )


def downgrade() -> None:
    op.drop_table("sweep_totals")
    op.drop_index(op.f("ix_sweep_objects_job_id"), table_name="sweep_objects")
    op.drop_table("sweep_objects")
