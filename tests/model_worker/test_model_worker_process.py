"""The model worker as a real process on loopback, driven over gRPC."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from docvl.errors import InvalidInput
from docvl.inference.client import InferenceClient
from docvl.inference.types import FinishReason, GenerationParams, InferenceRequest, InferenceResult
from docvl.tasks import TaskKind
from docvl.v1 import inference_pb2 as pb
from docvl.v1 import inference_pb2_grpc as pb_grpc
from model_worker.checkpoint import LoadedModel
from tests.model_worker.test_engine import VL_TASKS
from tests.support.helpers import model_worker_process, png, wait_for
from tests.support.reference import direct_generate

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


@dataclass
class Worker:
    target: str
    client: InferenceClient
    stub: pb_grpc.InferenceServiceStub


@pytest.fixture(scope="module")
def worker(tiny_small_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    log = tmp_path_factory.mktemp("logs") / "model-worker.log"
    with model_worker_process(tiny_small_dir, log, "--max-batch-size", "8", "--max-wait-ms", "50") as (
        _,
        target,
    ):
        client = InferenceClient(target)
        client.wait_ready(120)
        yield Worker(target, client, pb_grpc.InferenceServiceStub(client.channel))
        client.close()


def ocr(image: bytes, max_new: int = 12, task: TaskKind = TaskKind.OCR) -> InferenceRequest:
    question = "What does it say?" if task is TaskKind.QA else None
    return InferenceRequest(task=task, images=[image], question=question, params=GenerationParams(max_new))  # type: ignore[arg-type]


def test_health_is_not_serving_until_the_model_is_loaded_then_serving(
    tiny_small_dir: Path, tmp_path: Path
) -> None:
    with model_worker_process(tiny_small_dir, tmp_path / "w.log") as (process, target):
        client = InferenceClient(target)
        first = wait_for(lambda: (s := client.health_status()) != "UNREACHABLE" and s, 30, "a health answer")
        assert first == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as early:
            client.stub.Generate(pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[png(1)]), timeout=5)
        assert early.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in (early.value.details() or "")
        client.wait_ready(120)
        assert client.generate(ocr(png(1), 4)).generated_tokens <= 4
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0
        client.close()


def test_answer_over_grpc_equals_direct_generate(worker: Worker, small_model: LoadedModel) -> None:
    for i, task in enumerate(VL_TASKS):
        request = ocr(png(10 + i), 16, task)
        got = worker.client.generate(request)
        tokens, text = direct_generate(small_model, task, list(request.images), 16, request.question)
        assert got.text == text
        assert got.generated_tokens == len(tokens)
        assert got.image_tokens == 16
        assert got.prompt_tokens > got.image_tokens
        assert got.model_id.startswith("docvl/tiny-random")
        assert got.model_revision.startswith("sha256:")
        assert got.prompt_template_version
        assert got.timings.inference_ms > 0


def test_concurrent_requests_share_batches_and_answer_as_if_alone(
    worker: Worker, small_model: LoadedModel
) -> None:
    requests = [ocr(png(20 + i), 6 + i) for i in range(12)]
    barrier = threading.Barrier(len(requests))

    def call(request: InferenceRequest) -> InferenceResult:
        barrier.wait()
        return worker.client.generate(request, timeout=60)

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(call, requests))
    assert max(r.timings.batch_size for r in results) > 1
    for request, result in zip(requests, results, strict=True):
        tokens, text = direct_generate(
            small_model, TaskKind.OCR, list(request.images), request.params.max_new_tokens
        )
        assert (result.text, result.generated_tokens) == (text, len(tokens))


def test_stream_deltas_concatenate_to_the_unary_answer(worker: Worker) -> None:
    request = ocr(png(30), 40)
    items = list(worker.client.generate_stream(request))
    final = items[-1]
    assert isinstance(final, InferenceResult)
    deltas = [item for item in items[:-1] if isinstance(item, str)]
    assert len(deltas) > 1
    assert "".join(deltas) == final.text == worker.client.generate(request).text


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (10_000, 6_000)).save(buffer, format="PNG")  # 60 Mpx in a few kB
    return buffer.getvalue()


BAD = [
    ("zero bytes", pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[b""]), "empty"),
    ("no image", pb.GenerateRequest(task=pb.TASK_KIND_OCR), "at least one image"),
    (
        "undecodable",
        pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[b"%PDF-1.7 not an image"]),
        "not an image",
    ),
    ("truncated", pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[png(1)[:300]]), "truncated"),
    (
        "over byte limit",
        pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[b"\0" * (33 * MiB)]),
        "over the limit",
    ),
    ("unknown task", pb.GenerateRequest(task=99, images=[png(1)]), "unknown task"),  # type: ignore[arg-type]
    ("unspecified task", pb.GenerateRequest(images=[png(1)]), "unknown task"),
    ("qa without question", pb.GenerateRequest(task=pb.TASK_KIND_QA, images=[png(1)]), "needs a question"),
    ("too many images", pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[png(1)] * 5), "at most 4"),
    (
        "max_new_tokens too large",
        pb.GenerateRequest(
            task=pb.TASK_KIND_OCR, images=[png(1)], parameters=pb.GenerationParameters(max_new_tokens=100_000)
        ),
        "max_new_tokens",
    ),
]


@pytest.mark.parametrize(("name", "message", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_invalid_argument_and_the_worker_keeps_serving(
    worker: Worker, name: str, message: pb.GenerateRequest, reason: str
) -> None:
    for call in (
        worker.stub.Generate,
        lambda m, timeout: list(worker.stub.GenerateStream(m, timeout=timeout)),
    ):
        with pytest.raises(grpc.RpcError) as error:
            call(message, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert reason in (error.value.details() or "")
    assert worker.client.generate(ocr(png(2), 3)).generated_tokens <= 3


def test_decompression_bomb_is_refused(worker: Worker) -> None:
    with pytest.raises(InvalidInput, match="pixels"):
        worker.client.generate(ocr(_bomb(), 3))
    assert worker.client.health_status() == "SERVING"


def test_accepts_an_image_of_32_mib(worker: Worker) -> None:
    side = 3340  # 3340 x 3340 x 3 bytes uncompressed: just under 32 MiB
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="TIFF")
    data = buffer.getvalue()
    assert 31 * MiB < len(data) <= 32 * MiB
    assert worker.client.generate(ocr(data, 3), timeout=120).image_tokens == 16


LONG = 1200


@pytest.fixture(scope="module")
def long_image(small_model: LoadedModel) -> bytes:
    """An image whose greedy answer runs LONG tokens without ending: generating it takes over a second
    here (300 tokens took 0.3 s on this CPU, too short for what has to happen meanwhile)."""
    for seed in range(40, 80):
        tokens, _ = direct_generate(small_model, TaskKind.OCR, [png(seed)], LONG)
        if len(tokens) == LONG:
            return png(seed)
    raise AssertionError(f"no image among 40 made the tiny model talk for {LONG} tokens")


@pytest.fixture
def one_row_worker(tiny_small_dir: Path, tmp_path: Path) -> Iterator[Worker]:
    """The default (continuous) scheduler with room for one running row: the next request waits."""
    with (
        model_worker_process(tiny_small_dir, tmp_path / "one-row.log", "--max-batch-size", "1") as (
            _,
            target,
        ),
        InferenceClient(target) as client,
    ):
        client.wait_ready(120)
        yield Worker(target, client, pb_grpc.InferenceServiceStub(client.channel))


def test_cancelled_and_expired_requests_are_dropped_without_generation(
    one_row_worker: Worker, long_image: bytes
) -> None:
    worker = one_row_worker
    before = worker.client.model_info()["stats"]
    busy = worker.client.generate_stream(ocr(long_image, LONG))
    first = next(busy)  # the long request is generating now; whatever comes next waits in the queue
    assert isinstance(first, str)

    with pytest.raises(grpc.RpcError) as expired:
        worker.stub.Generate(pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[png(3)]), timeout=0.3)
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    cancelled = worker.stub.Generate.future(pb.GenerateRequest(task=pb.TASK_KIND_OCR, images=[png(4)]))
    wait_for(lambda: int(worker.client.model_info()["stats"]["queue_depth"]) >= 1, 10, "the request to queue")
    assert cancelled.cancel()

    rest = list(busy)
    final = rest[-1]
    assert isinstance(final, InferenceResult)
    assert final.finish_reason is FinishReason.LENGTH
    # The queue is FIFO: once a later request is answered, the two above have been dealt with.
    later = worker.client.generate(ocr(png(5), 4))
    after = worker.client.model_info()["stats"]

    def delta(key: str) -> int:
        return int(after[key]) - int(before[key])

    assert delta("requests_completed") == 2, "only the long request and the later one were generated"
    assert delta("generated_tokens") == LONG + later.generated_tokens
    # Each was dropped from the queue, or cancelled while still being preprocessed (never queued).
    assert 1 <= delta("requests_dropped") <= 2


def test_reflection_lists_the_services(worker: Worker) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = set(ProtoReflectionDescriptorDatabase(worker.client.channel).get_services())
    assert {"docvl.v1.InferenceService", "grpc.health.v1.Health"} <= services


def test_infer_cli_prints_the_response_as_json(
    worker: Worker, tmp_path: Path, small_model: LoadedModel
) -> None:
    image = tmp_path / "page.png"
    image.write_bytes(png(50))
    command = [sys.executable, "-m", "docvl", "infer", "--target", worker.target, "--image", str(image)]
    done = subprocess.run(
        [*command, "--task", "qa", "--question", "Why?", "--max-new-tokens", "9", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    tokens, text = direct_generate(small_model, TaskKind.QA, [png(50)], 9, "Why?")
    assert answer["text"] == text
    assert answer["generated_tokens"] == len(tokens)
    assert answer["finish_reason"] in ("stop", "length")
    refused = subprocess.run([*command, "--task", "qa"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "needs a question" in refused.stderr
    unknown = subprocess.run([*command, "--task", "poetry"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2
    assert "unknown task 'poetry'" in unknown.stderr
