"""The sweep's intake (docvl.jobs.sweep) on a real Postgres and a local object store: each object goes
through the front doors' checks (intake.copied and intake.inspected) before anything is stored, is taken in
once per content and request, and a document intake refuses becomes a failed job its owner sees, once.
tests/jobs/test_pipeline.py sweeps a bucket for real, through its Prefect flow; test_sweep_memory.py sweeps
S3 (moto's server) and checks what the sweep remembers so as not to read an object twice."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from docvl.db import jobs
from docvl.db.database import Database
from docvl.errors import InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs import sweep
from docvl.jobs.context import Context
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.intake import Limits, parse_request
from docvl.jobs.options import SubmitOptions
from docvl.storage import StoredObject
from docvl.storage.local import LocalObjectStore
from tests.support.dispatch import RecordingDispatch
from tests.support.helpers import ROOT

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
ONE_PAGE = (CORPUS / "001-trivial" / "minimal-document.pdf").read_bytes()
FOUR_PAGES = (CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf").read_bytes()
ENCRYPTED = (CORPUS / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf").read_bytes()


def request(tasks: list[str], max_upload_bytes: int = 1_000_000, max_pages: int = 10) -> sweep.SweepRequest:
    checked = Limits(max_upload_bytes=max_upload_bytes, max_pages=max_pages)
    return sweep.SweepRequest(
        owner="sweep",
        request=parse_request(checked, SubmitOptions(tasks=tasks, priority=0)),
        limits=checked,
        model_revision="rev-1",
        prompt_version="v1",
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    local = LocalObjectStore(tmp_path / "objects")
    local.ensure_ready()
    return local


def take_in(
    ctx: Context, store: LocalObjectStore, key: str, req: sweep.SweepRequest, dispatch: Dispatch | None = None
) -> sweep.Taken | None:
    """The job made for the object as the listing shows it (an object not there: as if it was when listed)."""
    item = store.stat(key) or StoredObject(key, 0, "")
    return sweep.take_in(ctx, store, "local", item, req, dispatch).taken


def stored_inputs(store: LocalObjectStore) -> list[str]:
    return [o.key for o in store.list("inputs/")]


def test_a_document_is_taken_in_once_per_content_and_request(db: Database, store: LocalObjectStore) -> None:
    ctx, dispatch = Context(db, store), RecordingDispatch()
    store.put("incoming/a.pdf", ONE_PAGE)
    store.put("incoming/copy-of-a.pdf", ONE_PAGE)
    taken = take_in(ctx, store, "incoming/a.pdf", request(["ocr"]), dispatch)
    assert taken is not None
    assert not taken.failed
    with db.transaction() as s:
        job = jobs.get_job(s, taken.job_id)
        assert (job.status, job.tasks, job.priority, job.options) == (
            "queued",
            ["ocr"],
            0,
            {"source": "incoming/a.pdf"},
        )
        assert jobs.document_of(s, job).media_type == "application/pdf"
    assert take_in(ctx, store, "incoming/a.pdf", request(["ocr"]), dispatch) is None
    assert take_in(ctx, store, "incoming/copy-of-a.pdf", request(["ocr"]), dispatch) is None
    other = take_in(ctx, store, "incoming/a.pdf", request(["ocr", "chart2code"]), dispatch)
    assert other is not None
    assert other.job_id != taken.job_id
    assert len(stored_inputs(store)) == 1
    assert take_in(ctx, store, "incoming/gone.pdf", request(["ocr"]), dispatch) is None


@pytest.mark.parametrize(
    ("content", "limits", "code"),
    [
        (b"not a document", {}, "unsupported_document"),
        (b"", {}, "empty_document"),
        (FOUR_PAGES[:4000], {}, "corrupt_document"),
        (FOUR_PAGES, {"max_pages": 2}, "too_many_pages"),
        (ENCRYPTED, {}, "encrypted_document"),
    ],
    ids=["not-a-document", "empty", "truncated", "too-many-pages", "encrypted"],
)
def test_a_document_intake_refuses_becomes_a_failed_job_once(
    db: Database, store: LocalObjectStore, content: bytes, limits: dict[str, int], code: str
) -> None:
    """The same refusal (code and message) as a front door gives, on a job its owner sees, never started."""
    ctx, dispatch = Context(db, store), RecordingDispatch()
    key = f"incoming/{uuid.uuid4().hex}"
    store.put(key, content)
    taken = take_in(ctx, store, key, request(["ocr"], **limits), dispatch)
    assert taken is not None
    assert taken.failed
    with db.transaction() as s:
        job = jobs.get_job(s, taken.job_id)
        assert (job.status, job.error_code) == (JobStatus.FAILED.value, code)
        assert job.error_message
        assert job.started_at is None
        assert job.notified_at is not None  # its end is recorded: the reconciler has nothing to re-drive
    assert take_in(ctx, store, key, request(["ocr"], **limits), dispatch) is None
    assert dispatch.starts == []
    assert dispatch.sent == []


def test_an_object_over_the_size_limit_is_refused_without_a_job(
    db: Database, store: LocalObjectStore
) -> None:
    ctx = Context(db, store)
    store.put("incoming/big.pdf", FOUR_PAGES)
    assert take_in(ctx, store, "incoming/big.pdf", request(["ocr"], max_upload_bytes=1000)) is None
    assert stored_inputs(store) == []
    with db.transaction() as s:
        assert jobs.list_jobs(s, owner="sweep") == []


def test_the_sweeps_tasks_are_checked_as_a_submissions_are() -> None:
    with pytest.raises(InvalidInput, match="the qa task needs a question"):
        request(["qa"])
    with pytest.raises(InvalidInput, match="unknown task 'summarise'"):
        request(["summarise"])
