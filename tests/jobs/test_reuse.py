"""Results reused by content, through the running platform (tests/support/platform.py): a page whose image,
task, question, generation cap and model match an earlier greedy result of the same owner takes that
result instead of calling the model, says where it came from, and the job gets a `reused` event; another
owner's, or a job with reuse=false, computes its own. A layout page reused is laid out again for its own
job (its blocks, figure crops and checks), so nothing of the other job's objects is needed."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from docvl.db.models import JobEvent, Page
from docvl.inference.types import ModelIdentity
from docvl.job_status import JobStatus
from docvl.jobs.reuse import PageInputs, image_sha256, result_key
from docvl.tasks import TaskKind
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.support.helpers import ROOT, png
from tests.support.platform import FrontDoorPlatform

PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
QUESTION = "What is on this page?"


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), frontdoor.service)) as client:
        yield client


def model_requests(frontdoor: FrontDoorPlatform) -> float:
    """Requests the DeepSeek-VL model worker has answered (docvl_model_requests_total, every outcome)."""
    text = httpx.get(frontdoor.metrics["model-worker"], timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "docvl_model_requests_total"
    )


def run(
    frontdoor: FrontDoorPlatform, api: TestClient, key: str, document: bytes, name: str, **fields: object
) -> Any:
    """Submit, wait for the end, return the result view (JSON)."""
    media = "application/pdf" if name.endswith(".pdf") else "image/png"
    headers = {"Authorization": f"Bearer {key}"}
    sent = api.post(
        "/v1/jobs", headers=headers, files={"file": (name, io.BytesIO(document), media)}, data=fields
    )
    assert sent.status_code == 202, sent.text
    job_id = uuid.UUID(sent.json()["id"])
    assert frontdoor.wait_finished(job_id, 300) is JobStatus.SUCCEEDED
    return api.get(f"/v1/jobs/{job_id}/result", headers=headers).json()


def reused_events(frontdoor: FrontDoorPlatform, job_id: object) -> list[dict[str, Any]]:
    with frontdoor.db.transaction() as s:
        return list(
            s.scalars(
                select(JobEvent.data).where(
                    JobEvent.job_id == uuid.UUID(str(job_id)), JobEvent.kind == "reused"
                )
            )
        )


@pytest.mark.slow
def test_the_same_page_again_is_reused_for_its_owner_only(
    frontdoor: FrontDoorPlatform, api: TestClient
) -> None:
    mine, theirs = (
        frontdoor.key(f"reuse-{uuid.uuid4().hex[:8]}"),
        frontdoor.key(f"reuse-{uuid.uuid4().hex[:8]}"),
    )
    image = png(70_000 + uuid.uuid4().int % 10_000)
    qa = {"tasks": ["qa"], "question": QUESTION}
    first = run(frontdoor, api, mine, image, "page.png", **qa)
    (computed,) = first["pages"]
    assert computed["reused_from"] is None

    before = model_requests(frontdoor)
    second = run(frontdoor, api, mine, image, "page.png", **qa)
    assert model_requests(frontdoor) == before, "a reused page asks no model worker"
    (reused,) = second["pages"]
    first_id = first["job"]["id"]
    assert reused["reused_from"] == {"job_id": first_id, "page": 1}
    for field in ("text", "model_id", "model_revision", "prompt_template_version", "generated_tokens"):
        assert reused[field] == computed[field], field
    second_id = second["job"]["id"]
    (event,) = reused_events(frontdoor, second_id)
    assert event == {"page_index": 0, "task": "qa", "from_job": first_id, "from_page_index": 0}

    third = run(frontdoor, api, mine, image, "page.png", **qa, reuse="false")  # forced
    assert third["job"]["reuse"] is False
    assert model_requests(frontdoor) > before
    assert third["pages"][0]["reused_from"] is None
    theirs_result = run(frontdoor, api, theirs, image, "page.png", **qa)  # another owner's
    assert theirs_result["pages"][0]["reused_from"] is None
    other_question = run(frontdoor, api, mine, image, "page.png", tasks=["qa"], question="And the title?")
    assert other_question["pages"][0]["reused_from"] is None


@pytest.mark.slow
def test_a_reused_layout_page_is_laid_out_for_its_own_job(
    frontdoor: FrontDoorPlatform, api: TestClient
) -> None:
    key = frontdoor.key(f"reuse-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {key}"}
    document = PDF.read_bytes()
    first = run(frontdoor, api, key, document, PDF.name, tasks=["layout"], pages="4")
    first_id = first["job"]["id"]
    gone = list(frontdoor.store.list(f"jobs/{first_id}/outputs/"))
    assert gone
    for stored in gone:  # the first job's objects are gone
        frontdoor.store.delete(stored.key)

    second = run(frontdoor, api, key, document, PDF.name, tasks=["layout"], pages="4")
    (page,) = second["pages"]
    assert page["reused_from"] == {"job_id": first_id, "page": 4}
    assert page["verification"] is not None, "the reused answer's boxes were checked for this job"
    second_id = second["job"]["id"]
    laid_out = api.get(f"/v1/jobs/{second_id}/document", headers=headers).json()
    (figure,) = [b for b in laid_out["pages"][0]["blocks"] if b["label"] == "figure"]
    assert figure["figure_key"].startswith(f"jobs/{second_id}/")
    assert frontdoor.store.get(figure["figure_key"]).startswith(b"\x89PNG")


def test_only_a_greedy_first_generation_gets_a_reuse_key() -> None:
    inputs = PageInputs(image_sha256(b"page"), TaskKind.OCR, None, 512)
    model = ModelIdentity("deepseek-ai/deepseek-vl-1.3b-base", "abc", "v3")
    key = result_key(inputs, model, greedy=True, kept_attempt=1)
    assert key == inputs.key(model)
    assert result_key(inputs, model, greedy=False, kept_attempt=1) is None, "sampled"
    assert result_key(inputs, model, greedy=True, kept_attempt=2) is None, "a kept regeneration samples"
    assert result_key(inputs, None, greedy=True, kept_attempt=1) is None, "a model that did not say"
    changed = [
        PageInputs(image_sha256(b"other page"), TaskKind.OCR, None, 512).key(model),
        PageInputs(image_sha256(b"page"), TaskKind.LAYOUT, None, 512).key(model),
        PageInputs(image_sha256(b"page"), TaskKind.OCR, "q", 512).key(model),
        PageInputs(image_sha256(b"page"), TaskKind.OCR, None, 256).key(model),
        inputs.key(ModelIdentity(model.model_id, "def", "v3")),
        inputs.key(ModelIdentity(model.model_id, "abc", "v4")),
    ]
    assert len({key, *changed}) == 7, "every input changes the key"


def events(frontdoor: FrontDoorPlatform, job_id: object, kind: str) -> list[dict[str, Any]]:
    with frontdoor.db.transaction() as s:
        return list(
            s.scalars(
                select(JobEvent.data).where(JobEvent.job_id == uuid.UUID(str(job_id)), JobEvent.kind == kind)
            )
        )


def page_images(frontdoor: FrontDoorPlatform, job_id: object) -> list[str]:
    with frontdoor.db.transaction() as s:
        return list(
            s.scalars(
                select(Page.image_key).where(Page.job_id == uuid.UUID(str(job_id))).order_by(Page.index)
            )
        )


def stored_pages(frontdoor: FrontDoorPlatform, job_id: object) -> list[str]:
    return [o.key for o in frontdoor.store.list(f"jobs/{job_id}/pages/")]


@pytest.mark.slow
def test_a_document_rendered_before_is_not_rendered_again(
    frontdoor: FrontDoorPlatform, api: TestClient
) -> None:
    """The same PDF again takes the first job's page images (nothing stored under its own prefix) and its
    results, all found by one reuse task; another task on it takes the render and computes its results
    from the shared images; reuse=false, or a first job's image gone, renders again."""
    key = frontdoor.key(f"render-{uuid.uuid4().hex[:8]}")
    document, pages = PDF.read_bytes(), "1-3"
    first = run(frontdoor, api, key, document, PDF.name, tasks=["ocr"], pages=pages)
    first_id = first["job"]["id"]
    first_images = page_images(frontdoor, first_id)
    assert len(first_images) == 3
    assert len(stored_pages(frontdoor, first_id)) == 3

    before = model_requests(frontdoor)
    again = run(frontdoor, api, key, document, PDF.name, tasks=["ocr"], pages=pages)
    again_id = again["job"]["id"]
    assert model_requests(frontdoor) == before
    assert events(frontdoor, again_id, "render_reused") == [{"from_job": first_id, "pages": 3}]
    assert page_images(frontdoor, again_id) == first_images, "its pages are the first job's images"
    assert stored_pages(frontdoor, again_id) == [], "nothing was rendered or stored for it"
    assert [p["reused_from"] for p in again["pages"]] == [{"job_id": first_id, "page": n} for n in (1, 2, 3)]
    assert [p["text"] for p in again["pages"]] == [p["text"] for p in first["pages"]]
    assert (again["job"]["progress"]["pages_done"], len(reused_events(frontdoor, again_id))) == (3, 3)
    image = api.get(f"/v1/jobs/{again_id}/pages/2/image", headers={"Authorization": f"Bearer {key}"})
    assert image.status_code == 200
    assert image.content == frontdoor.store.get(first_images[1])

    qa = run(frontdoor, api, key, document, PDF.name, tasks=["qa"], question=QUESTION, pages=pages)
    assert events(frontdoor, qa["job"]["id"], "render_reused") == [{"from_job": first_id, "pages": 3}]
    assert model_requests(frontdoor) >= before + 3, "its answers were computed, from the shared images"
    assert all(p["reused_from"] is None and p["text"] is not None for p in qa["pages"])

    forced = run(frontdoor, api, key, document, PDF.name, tasks=["ocr"], pages=pages, reuse="false")
    assert events(frontdoor, forced["job"]["id"], "render_reused") == []
    assert len(stored_pages(frontdoor, forced["job"]["id"])) == 3

    frontdoor.store.delete(first_images[0])  # the render to take is damaged: it is not taken
    damaged = run(frontdoor, api, key, document, PDF.name, tasks=["ocr"], pages=pages)
    damaged_id = damaged["job"]["id"]
    taken = events(frontdoor, damaged_id, "render_reused")
    assert all(e["from_job"] != first_id for e in taken), "a render with an image missing is never taken"
    if not taken:
        assert len(stored_pages(frontdoor, damaged_id)) == 3
    assert all(p["reused_from"] is not None for p in damaged["pages"]), "its results still are, by content"
    assert frontdoor.store.get(page_images(frontdoor, damaged_id)[0]).startswith(b"\x89PNG")
