"""The engine's logits hooks, and the test-only steering built on them: the tiny random DeepSeek-OCR-2 made
to write a scripted grounded page (tests/support/scripted.py), through both schedulers, the gRPC server in
this process, and `python -m tests.support.scripted_worker` as a process of its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from docvl.errors import InvalidInput
from docvl.inference import mapping
from docvl.inference.client import InferenceClient
from docvl.inference.types import (
    FinishReason,
    Generated,
    GenerationParams,
    InferenceRequest,
    InferenceResult,
    Timings,
)
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.decoding import RowControl
from model_worker.engine import Engine
from model_worker.scheduler import ContinuousBatcher
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from tests.conftest import make_engine
from tests.model_worker.test_model_worker_inprocess import running_server
from tests.model_worker.test_ocr2 import assert_as_generate
from tests.model_worker.test_scheduler import later, serve
from tests.support.helpers import png
from tests.support.scripted import LAYOUT_PAGE, ScriptedAnswers
from tests.support.scripted_worker import scripted_worker_process

PLAIN = "# Invoice 42\n\nTotal: 1,234.50 EUR"


def page(seed: int, task: TaskKind = TaskKind.LAYOUT, max_new: int = 512) -> InferenceRequest:
    return InferenceRequest(
        task, [png(seed, (200, 100))], params=GenerationParams(max_new), request_id=f"s{seed}"
    )


@pytest.fixture
def scripted(ocr2_model: LoadedModel) -> Engine:
    """An engine of its own (the session's stays unhooked): it writes LAYOUT_PAGE for every layout request."""
    engine = make_engine(ocr2_model)
    ScriptedAnswers.install(engine)
    return engine


def test_the_script_fits_the_default_limit_and_round_trips(scripted: Engine) -> None:
    hook = scripted.logits_hooks[0]
    assert isinstance(hook, ScriptedAnswers)
    tokens = hook.scripts[TaskKind.LAYOUT]
    assert len(tokens) < 512
    assert scripted.decoder(TaskKind.LAYOUT)(tokens) == LAYOUT_PAGE


def test_the_window_engine_writes_the_script_and_leaves_other_tasks_alone(
    scripted: Engine, ocr2_model: LoadedModel
) -> None:
    layout, ocr, short = page(1), page(2, TaskKind.OCR, 12), page(3, max_new=9)
    prepared = [scripted.prepare(r) for r in (layout, ocr, short)]
    got = scripted.generate(prepared, [RowControl(p.params) for p in prepared])
    assert (got[0].text, got[0].finish_reason) == (LAYOUT_PAGE, FinishReason.STOP)
    assert_as_generate(ocr2_model, ocr, got[1])  # no script for ocr: the model's own answer
    assert got[2].finish_reason is FinishReason.LENGTH
    assert LAYOUT_PAGE.startswith(got[2].text)


def test_the_continuous_scheduler_writes_the_script(scripted: Engine, ocr2_model: LoadedModel) -> None:
    requests = [page(1), page(2, TaskKind.OCR, 20), page(4)]
    prepared = [scripted.prepare(r) for r in requests]
    deltas: list[str] = []

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        started = [
            later(batcher, prepared[0], 0.0, on_delta=deltas.append),
            later(batcher, prepared[1], 0.01),
            later(batcher, prepared[2], 0.05),
        ]
        return await asyncio.gather(*started)

    (first, _), (ocr, _), (joined_later, _) = serve(scripted, body)
    assert first.text == joined_later.text == "".join(deltas) == LAYOUT_PAGE
    assert first.finish_reason is FinishReason.STOP
    assert_as_generate(ocr2_model, requests[1], ocr)


@pytest.mark.parametrize("scheduler", ["window", "continuous"])
def test_a_scripted_layout_request_over_grpc_returns_the_grounded_text(
    scripted: Engine, scheduler: str
) -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0, scheduler=scheduler)  # type: ignore[arg-type]
    with running_server(settings, lambda s: InferenceService(scripted, s)) as (_, client):
        client.wait_ready(30)
        unary = client.generate(page(5))
        streamed = list(client.generate_stream(page(6)))
        info = client.model_info()
        with pytest.raises(InvalidInput, match=r"task qa is not served .* it serves ocr, layout"):
            client.generate(InferenceRequest(TaskKind.QA, [png(1)], question="Why?"))
        with pytest.raises(grpc.RpcError) as raw:
            client.stub.Generate(mapping.request_to_pb(page(7, TaskKind.WEB2HTML)))
    assert (unary.text, unary.finish_reason) == (LAYOUT_PAGE, FinishReason.STOP)
    final = streamed[-1]
    assert isinstance(final, InferenceResult)
    assert "".join(s for s in streamed[:-1] if isinstance(s, str)) == final.text == LAYOUT_PAGE
    assert (info["family"], info["tasks"], info["model_type"]) == (
        "deepseek-ocr2",
        ["ocr", "layout"],
        "deepseek_ocr2",
    )
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.slow
def test_the_scripted_worker_runs_as_a_process(tiny_ocr2_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"layout": LAYOUT_PAGE, "ocr": PLAIN}))
    log = tmp_path / "worker.log"
    with (
        scripted_worker_process(tiny_ocr2_dir, script, log, "--scheduler", "window") as (_, target),
        InferenceClient(target) as client,
    ):
        client.wait_ready(120)
        layout = client.generate(page(8))
        ocr = client.generate(page(9, TaskKind.OCR))
        served = client.served_tasks()
    assert layout.text == LAYOUT_PAGE
    assert ocr.text == PLAIN
    assert served == [TaskKind.OCR, TaskKind.LAYOUT]
