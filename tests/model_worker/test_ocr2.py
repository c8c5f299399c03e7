"""DeepSeek-OCR-2 in the worker: the tiny model of the real classes through the production path, its
variable image tokens, its tasks, and greedy answers token for token those of `model.generate`, alone and in
mixed batches, with both schedulers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2Processor

from docvl.errors import InvalidInput
from docvl.inference.types import FinishReason, Generated, GenerationParams, InferenceRequest, Timings
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel, fingerprint
from model_worker.decoding import RowControl
from model_worker.engine import Engine
from model_worker.preprocess import PreprocessPool
from model_worker.scheduler import ContinuousBatcher
from tests.conftest import make_engine
from tests.model_worker.test_engine import run_one
from tests.model_worker.test_preprocess import assert_same
from tests.model_worker.test_scheduler import later, serve
from tests.support.helpers import ROOT, png
from tests.support.reference import direct_generate

# Page sizes against the tiny model's 96 px tiles: none (fits one tile: the global view alone), 2 x 1, 1 x 2
# and 3 x 2 tiles.
SIZES = [(80, 60), (200, 100), (90, 190), (300, 200)]
TOKENS = {(80, 60): 257, (200, 100): 257 + 2 * 144, (90, 190): 257 + 2 * 144, (300, 200): 257 + 6 * 144}


def request(seed: int, task: TaskKind = TaskKind.OCR, max_new: int = 12, **kw: object) -> InferenceRequest:
    return InferenceRequest(
        task=task,
        images=[png(seed, SIZES[seed % len(SIZES)])],
        params=GenerationParams(max_new_tokens=max_new, **kw),  # type: ignore[arg-type]
        request_id=f"o{seed}",
    )


def assert_as_generate(loaded: LoadedModel, req: InferenceRequest, got: Generated) -> None:
    tokens, text = direct_generate(loaded, req.task, list(req.images), req.params.max_new_tokens)
    assert got.token_ids == tokens, req.request_id
    assert got.text == text
    assert got.finish_reason is (
        FinishReason.LENGTH if len(tokens) == req.params.max_new_tokens else FinishReason.STOP
    )


def test_the_tiny_model_is_deepseek_ocr2_loaded_through_the_production_path(ocr2_model: LoadedModel) -> None:
    assert isinstance(ocr2_model.model, DeepseekOcr2ForConditionalGeneration)
    assert isinstance(ocr2_model.processor, DeepseekOcr2Processor)
    d = ocr2_model.description
    assert (d.model_type, d.family) == ("deepseek_ocr2", "deepseek-ocr2")
    assert d.tasks == (TaskKind.OCR, TaskKind.LAYOUT)
    assert d.image_tokens_per_image == 257
    assert d.random_weights
    assert d.prompt_template_version.startswith("ocr2-")
    text = ocr2_model.model.config.text_config
    assert text.mlp_layer_types == ["dense", "sparse"]
    assert (text.n_routed_experts, text.num_experts_per_tok) == (4, 2)
    tokenizer = ocr2_model.processor.tokenizer
    for token in ("<image>", "<|grounding|>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token


def test_image_tokens_follow_the_page_size_and_the_prompts_are_the_model_cards(ocr2_engine: Engine) -> None:
    image_token = ocr2_engine.processor.image_token_id
    for seed, size in enumerate(SIZES):
        prepared = ocr2_engine.prepare(request(seed, TaskKind.LAYOUT))
        assert prepared.image_tokens == TOKENS[size] == int((prepared.input_ids == image_token).sum())
        tiles = int(prepared.pixels["num_local_patches"][0])
        assert prepared.pixels["pixel_values"].shape == (1, 3, 128, 128)
        if tiles:
            assert prepared.pixels["pixel_values_local"].shape == (tiles, 3, 96, 96)
        else:
            assert "pixel_values_local" not in prepared.pixels
    tokenizer = ocr2_engine.tokenizer
    layout = ocr2_engine.prepare(request(0, TaskKind.LAYOUT))
    text = tokenizer.decode(layout.input_ids[layout.input_ids != image_token])
    assert text == tokenizer.bos_token + "\n<|grounding|>Convert the document to markdown."
    ocr = ocr2_engine.prepare(request(0, TaskKind.OCR))
    assert tokenizer.decode(ocr.input_ids[ocr.input_ids != image_token]).endswith("\nFree OCR.")


@pytest.mark.parametrize("task", [TaskKind.QA, TaskKind.CHART2CODE, TaskKind.WEB2HTML])
def test_a_task_the_family_does_not_serve_is_refused_naming_what_it_serves(
    ocr2_engine: Engine, task: TaskKind
) -> None:
    with pytest.raises(InvalidInput) as refused:
        ocr2_engine.prepare(InferenceRequest(task, [png(1)], question="Why?"))
    assert refused.value.message == (
        f"task {task.value} is not served by this model worker (deepseek-ocr2): it serves ocr, layout"
    )


def test_a_worker_can_serve_fewer_tasks_than_its_family(ocr2_model: LoadedModel) -> None:
    """DOCVL_MODEL_WORKER_TASKS=layout: the worker says it serves layout only (so the platform routes ocr
    elsewhere) and refuses ocr naming the setting; a task outside the family is refused at start."""
    engine = make_engine(ocr2_model, tasks=["layout"])
    assert engine.description.tasks == (TaskKind.LAYOUT,)
    assert ocr2_model.description.tasks == (TaskKind.OCR, TaskKind.LAYOUT), "the checkpoint's stays whole"
    engine.warm_up()  # with a task it serves
    with pytest.raises(InvalidInput) as refused:
        engine.prepare(InferenceRequest(TaskKind.OCR, [png(1)]))
    assert refused.value.message == (
        "task ocr is not served by this model worker: it serves layout (DOCVL_MODEL_WORKER_TASKS)"
    )
    with pytest.raises(
        ValueError, match="names qa, which deepseek-ocr2 does not serve: choose among ocr, layout"
    ):
        make_engine(ocr2_model, tasks=["qa"])


def test_layout_answers_keep_the_grounding_tags_and_drop_other_special_tokens(ocr2_engine: Engine) -> None:
    tokenizer = ocr2_engine.tokenizer
    grounded = "<|ref|>title<|/ref|><|det|>[[110, 52, 880, 96]]<|/det|>\n# Annual report"
    ids = tokenizer.encode(grounded, add_special_tokens=False)
    noise = [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<image>")]
    assert ocr2_engine.decoder(TaskKind.LAYOUT)(noise + ids + [tokenizer.eos_token_id]) == grounded
    assert ocr2_engine.decoder(TaskKind.OCR)(ids) == "title[[110, 52, 880, 96]]\n# Annual report"


def test_alone_each_answer_equals_direct_generate(ocr2_engine: Engine, ocr2_model: LoadedModel) -> None:
    for seed in range(len(SIZES)):
        for task in (TaskKind.OCR, TaskKind.LAYOUT):
            req = request(seed, task, max_new=12)
            got = run_one(ocr2_engine, ocr2_engine.prepare(req))
            assert_as_generate(ocr2_model, req, got)
            assert got.image_tokens == TOKENS[SIZES[seed]]


def test_answers_depend_on_the_image(ocr2_engine: Engine) -> None:
    answers = {tuple(run_one(ocr2_engine, ocr2_engine.prepare(request(s))).token_ids) for s in range(4)}
    assert len(answers) > 1


def test_a_mixed_window_batch_answers_as_if_alone(ocr2_engine: Engine, ocr2_model: LoadedModel) -> None:
    tasks = [TaskKind.OCR, TaskKind.LAYOUT]
    reqs = [request(s, tasks[s % 2], max_new=4 + 3 * s) for s in range(6)]  # every tile count, mixed
    prepared = [ocr2_engine.prepare(r) for r in reqs]
    batched = ocr2_engine.generate(prepared, [RowControl(p.params) for p in prepared])
    for req, got in zip(reqs, batched, strict=True):
        assert_as_generate(ocr2_model, req, got)


def test_a_request_of_several_pages_equals_direct_generate(
    ocr2_engine: Engine, ocr2_model: LoadedModel
) -> None:
    images = [png(1, (80, 60)), png(2, (200, 100)), png(3, (90, 190))]
    req = InferenceRequest(TaskKind.OCR, images, params=GenerationParams(10))
    got = run_one(ocr2_engine, ocr2_engine.prepare(req))
    assert got.image_tokens == 257 + 545 + 545
    assert_as_generate(ocr2_model, req, got)


def test_continuous_staggered_mixed_requests_equal_direct_generate(
    ocr2_engine: Engine, ocr2_model: LoadedModel
) -> None:
    tasks = [TaskKind.LAYOUT, TaskKind.OCR, TaskKind.OCR]
    lengths = [1, 24, 5, 17, 2, 30, 9]
    reqs = [request(i, tasks[i % 3], max_new=n) for i, n in enumerate(lengths)]
    prepared = [ocr2_engine.prepare(r) for r in reqs]

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        return await asyncio.gather(*(later(batcher, p, 0.02 * (i % 4)) for i, p in enumerate(prepared)))

    results = serve(ocr2_engine, body)
    assert max(t.batch_size for _, t in results) > 1, "requests shared the running batch"
    for req, (got, _) in zip(reqs, results, strict=True):
        assert_as_generate(ocr2_model, req, got)


def test_vision_batches_of_several_images_give_the_same_features(ocr2_model: LoadedModel) -> None:
    from tests.conftest import make_engine

    one, four = make_engine(ocr2_model), make_engine(ocr2_model, vision_batch_size=4)
    prepared = [one.prepare(request(s)) for s in range(4)]
    pixels = one.collate(prepared)
    pixels = {k: v for k, v in pixels.items() if k not in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        a = one.encode_images(pixels)["image"].pooler_output
        b = four.encode_images(pixels)["image"].pooler_output
    assert [x.shape for x in a] == [y.shape for y in b] == [(TOKENS[s], 64) for s in SIZES]
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_worker_processes_prepare_what_threads_prepare(ocr2_engine: Engine, tiny_ocr2_dir: Path) -> None:
    pool = PreprocessPool(ocr2_engine.preparer, threads=1, processes=1, model_dir=tiny_ocr2_dir)
    try:
        for seed, task in ((0, TaskKind.OCR), (3, TaskKind.LAYOUT)):  # no tile, and 6 tiles
            req = request(seed, task)
            assert_same(ocr2_engine.prepare(req), pool.executor.submit(pool.function, req).result())
        with pytest.raises(InvalidInput, match="task qa is not served"):
            pool.executor.submit(pool.function, InferenceRequest(TaskKind.QA, [png(1)], "Why?")).result()
    finally:
        pool.shutdown()


def test_build_tiny_cli_builds_the_same_ocr2_checkpoint(tmp_path: Path, tiny_ocr2_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "docvl",
            "model",
            "build-tiny",
            "--family=deepseek-ocr2",
            "--small",
            tmp_path / "o",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert fingerprint(tmp_path / "o") == fingerprint(tiny_ocr2_dir)
