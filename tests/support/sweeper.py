"""One sweep of an S3 bucket in a process of its own, as the sweep flow makes it (docvl.jobs.sweep.sweep),
for the tests that kill it: python -m tests.support.sweeper DATABASE_URL ENDPOINT SOURCE_BUCKET STORE_BUCKET
PREFIX. The request is `sweep_request()`'s (owner `sweep`, OCR)."""

from __future__ import annotations

import sys

from docvl.db.database import Database
from docvl.jobs import sweep
from docvl.jobs.context import Context
from docvl.jobs.intake import Limits, parse_request
from docvl.jobs.options import SubmitOptions
from docvl.storage.s3 import S3ObjectStore


def sweep_request(tasks: tuple[str, ...] = ("ocr",), max_upload_bytes: int = 1_000_000) -> sweep.SweepRequest:
    checked = Limits(max_upload_bytes=max_upload_bytes, max_pages=10)
    return sweep.SweepRequest(
        owner="sweep",
        request=parse_request(checked, SubmitOptions(tasks=list(tasks), priority=0)),
        limits=checked,
        model_revision="rev-1",
        prompt_version="v1",
    )


def main(database_url: str, endpoint: str, source_bucket: str, store_bucket: str, prefix: str) -> None:
    source = S3ObjectStore(endpoint, "testing", "testing", source_bucket)
    ctx = Context(Database(database_url), S3ObjectStore(endpoint, "testing", "testing", store_bucket))
    swept = sweep.sweep(ctx, source, source_bucket, prefix, sweep_request())
    print(f"made {swept.made}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
