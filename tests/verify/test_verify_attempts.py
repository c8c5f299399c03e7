"""Regeneration after a failed check, against a real model worker with the tiny model (its output is junk,
so its chart code fails and is generated again): what is kept, and the bookkeeping of every attempt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docvl.inference.client import InferenceClient
from docvl.inference.types import GenerationParams, InferenceRequest, InferenceResult
from docvl.tasks import TaskKind
from docvl.verify.attempts import PageInput, generate_checked
from docvl.verify.settings import VerifySettings
from docvl.verify.verifier import Verifier
from tests.support.helpers import ROOT, model_worker_process, wait_for

pytestmark = pytest.mark.slow
CHART = (ROOT / "docvl" / "samples" / "chart.png").read_bytes()
BOOKKEEPING = {"attempt", "temperature", "generated_tokens"}


class Recorded:
    """The model worker's generate, remembering each request it was sent."""

    def __init__(self, client: InferenceClient) -> None:
        self.client = client
        self.requests: list[InferenceRequest] = []

    def __call__(self, request: InferenceRequest) -> InferenceResult:
        self.requests.append(request)
        return self.client.generate(request, timeout=120)


@pytest.fixture(scope="module")
def client(tiny_small_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceClient]:
    log = tmp_path_factory.mktemp("verify-attempts") / "model-worker.log"
    with model_worker_process(tiny_small_dir, log) as (_, target):
        made = InferenceClient(target)
        wait_for(lambda: made.health_status() == "SERVING", 120, "the model worker to serve")
        yield made
        made.close()


def request(task: TaskKind) -> InferenceRequest:
    return InferenceRequest(task=task, images=[CHART], params=GenerationParams(max_new_tokens=24))


def test_a_failed_chart_is_generated_again_and_the_better_kept(client: InferenceClient) -> None:
    verifier = Verifier(VerifySettings(verify_attempts=3, verify_temperature=0.9, verify_chart_timeout_s=15))
    generate = Recorded(client)
    checked = generate_checked(generate, request(TaskKind.CHART2CODE), PageInput(CHART, None), verifier)
    verification = checked.verification
    assert verification is not None
    attempts = verification["attempts"]
    assert attempts[0]["passed"] is False  # junk code: it does not run
    assert all(a["passed"] is False for a in attempts[:-1])  # regenerated while it failed, up to 3 times
    assert (
        len(attempts) == len(generate.requests) == (3 if attempts[-1]["passed"] is False else len(attempts))
    )
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    assert [r.params.temperature for r in generate.requests] == [0.0] + [0.9] * (len(attempts) - 1)
    assert [a["temperature"] for a in attempts] == [0.0] + [0.9] * (len(attempts) - 1)
    assert len({r.params.seed for r in generate.requests[1:]}) == len(attempts) - 1  # a new sample each
    kept = attempts[verification["kept_attempt"] - 1]
    assert {k: v for k, v in kept.items() if k not in BOOKKEEPING} == {
        k: v for k, v in verification.items() if k not in {"task", "kept_attempt", "attempts"}
    }
    scores = [Verifier.score(a) for a in attempts]
    assert scores[verification["kept_attempt"] - 1] == max(scores)
    assert checked.result.generated_tokens == kept["generated_tokens"]
    for attempt in attempts:
        assert attempt["executed"] in (True, False)
        assert 0.0 <= attempt["similarity"] <= 1.0


def test_ocr_is_generated_again_only_when_it_fails(client: InferenceClient) -> None:
    verifier = Verifier(VerifySettings(verify_attempts=2))
    generate = Recorded(client)
    checked = generate_checked(generate, request(TaskKind.OCR), PageInput(CHART, "Sales by region"), verifier)
    assert checked.verification is not None
    first = checked.verification["attempts"][0]
    assert 0.0 <= first["repetition"] <= 1.0
    assert 0.0 <= first["text_layer_f1"] <= 1.0
    assert first["text_layer_cer"] >= 0.0
    assert len(generate.requests) == (1 if first["passed"] else 2)


def test_nothing_is_checked_with_verification_off(client: InferenceClient) -> None:
    generate = Recorded(client)
    off = Verifier(VerifySettings(verify=False))
    checked = generate_checked(generate, request(TaskKind.CHART2CODE), PageInput(CHART, None), off)
    assert checked.verification is None
    assert len(generate.requests) == 1
    qa = InferenceRequest(task=TaskKind.QA, images=[CHART], question="Which bar is tallest?")
    assert generate_checked(generate, qa, PageInput(CHART, None), Verifier()).verification is None
