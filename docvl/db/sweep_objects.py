"""The sweep's memory of a bucket's objects (what each version's content hash is) and its totals."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from docvl.db.models import Job, SweepObject, SweepTotals

BATCH = 1000  # keys per statement, so that a bucket of millions makes no giant parameter


def remembered(session: Session, bucket: str, prefix: str) -> dict[str, SweepObject]:
    """What was learnt about the bucket's objects under `prefix`, by key."""
    rows = session.execute(
        select(SweepObject).where(SweepObject.bucket == bucket, func.starts_with(SweepObject.key, prefix))
    ).scalars()
    return {row.key: row for row in rows}


def remember(
    session: Session,
    bucket: str,
    key: str,
    *,
    etag: str,
    size: int,
    sha256: str,
    job_id: uuid.UUID | None,
) -> None:
    """The version read (its ETag and size) and its content hash, replacing what was known of the key."""
    values = {"etag": etag, "size_bytes": size, "sha256": sha256, "job_id": job_id, "read_at": func.now()}
    session.execute(
        insert(SweepObject)
        .values(bucket=bucket, key=key, **values)
        .on_conflict_do_update(index_elements=[SweepObject.bucket, SweepObject.key], set_=values)
    )


def forget(session: Session, bucket: str, keys: Iterable[str]) -> int:
    """Drop what was known of objects that are gone; how many were dropped."""
    listed, dropped = sorted(keys), 0
    for start in range(0, len(listed), BATCH):
        batch = listed[start : start + BATCH]
        result = session.execute(
            delete(SweepObject).where(SweepObject.bucket == bucket, SweepObject.key.in_(batch))
        )
        dropped += int(result.rowcount)  # type: ignore[attr-defined]
    return dropped


def jobs_found(session: Session, owner: str, idempotency_keys: Collection[str]) -> set[str]:
    """Those of the idempotency keys that the owner has a job for."""
    wanted, found = sorted(idempotency_keys), set[str]()
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start : start + BATCH]
        found.update(
            key
            for key in session.execute(
                select(Job.idempotency_key).where(Job.owner == owner, Job.idempotency_key.in_(batch))
            ).scalars()
            if key is not None
        )
    return found


def add_totals(session: Session, bucket: str, *, listed: int, read: int, bytes_read: int, made: int) -> None:
    """One more sweep of the bucket, and what it did."""
    table = SweepTotals.__table__
    session.execute(
        insert(SweepTotals)
        .values(
            bucket=bucket,
            sweeps=1,
            objects_listed=listed,
            objects_read=read,
            bytes_read=bytes_read,
            jobs_made=made,
        )
        .on_conflict_do_update(
            index_elements=[SweepTotals.bucket],
            set_={
                "sweeps": table.c.sweeps + 1,
                "objects_listed": table.c.objects_listed + listed,
                "objects_read": table.c.objects_read + read,
                "bytes_read": table.c.bytes_read + bytes_read,
                "jobs_made": table.c.jobs_made + made,
                "updated_at": func.now(),
            },
        )
    )


def totals(session: Session, bucket: str) -> SweepTotals | None:
    return session.get(SweepTotals, bucket, populate_existing=True)
