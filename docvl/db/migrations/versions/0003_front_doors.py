"""Jobs remember the API key that submitted them (limits per key); owners have a webhook signing secret.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("api_key_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_foreign_key(
        "fk_jobs_api_key_id_api_keys", "jobs", "api_keys", ["api_key_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index("ix_jobs_api_key_id_status", "jobs", ["api_key_id", "status"])
    op.create_index("ix_jobs_owner_created_at_id", "jobs", ["owner", "created_at", "id"])
    op.drop_index("ix_jobs_owner_created_at", table_name="jobs")  # the new index covers it
    op.create_table(
        "webhook_secrets",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_webhook_secrets"),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.create_index("ix_jobs_owner_created_at", "jobs", ["owner", "created_at"])
    op.drop_index("ix_jobs_owner_created_at_id", table_name="jobs")
    op.drop_index("ix_jobs_api_key_id_status", table_name="jobs")
    op.drop_constraint("fk_jobs_api_key_id_api_keys", "jobs", type_="foreignkey")
    op.drop_column("jobs", "api_key_id")
