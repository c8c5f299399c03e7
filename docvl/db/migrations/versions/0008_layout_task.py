"""The layout task (grounded document parsing with DeepSeek-OCR-2): jobs and results may name it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 07:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("ocr", "chart2code", "web2html", "qa")
AFTER = (*BEFORE, "layout")


def _replace(tasks: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{t}'" for t in tasks)
    op.drop_constraint(op.f("ck_jobs_tasks"), "jobs", type_="check")
    op.create_check_constraint(
        op.f("ck_jobs_tasks"), "jobs", f"tasks <@ ARRAY[{listed}]::varchar[] AND cardinality(tasks) > 0"
    )
    op.drop_constraint(op.f("ck_task_results_task"), "task_results", type_="check")
    op.create_check_constraint(op.f("ck_task_results_task"), "task_results", f"task IN ({listed})")


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM task_results WHERE task = 'layout'")
    op.execute("DELETE FROM jobs WHERE 'layout' = ANY(tasks)")
    _replace(BEFORE)
