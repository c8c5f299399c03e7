"""Routing by task (docvl.inference.routing): real model workers on loopback, a DeepSeek-VL one and a
DeepSeek-OCR-2 one, each saying in GetModelInfo what it serves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest

from docvl.errors import InvalidInput
from docvl.inference.routing import ModelFleet
from docvl.inference.types import GenerationParams, InferenceRequest
from docvl.tasks import TaskKind
from model_worker.engine import Engine
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from tests.model_worker.test_model_worker_inprocess import running_server
from tests.support.helpers import png, wait_for

UNREACHABLE = "127.0.0.1:9"  # the discard port: nothing answers gRPC there
VL_TASKS = {TaskKind.OCR, TaskKind.CHART2CODE, TaskKind.WEB2HTML, TaskKind.QA}


@pytest.fixture(scope="module")
def workers(small_engine: Engine, ocr2_engine: Engine) -> Iterator[dict[str, str]]:
    """{"vl": target, "ocr2": target}: two model workers, one per family."""
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0)
    with ExitStack() as stack:
        targets = {}
        for name, engine in (("vl", small_engine), ("ocr2", ocr2_engine)):
            _, client = stack.enter_context(running_server(settings, partial(serving, engine)))
            client.wait_ready(60)
            targets[name] = client.target
        yield targets


def serving(engine: Engine, settings: ModelWorkerSettings) -> InferenceService:
    return InferenceService(engine, settings)


def layout_request() -> InferenceRequest:
    return InferenceRequest(TaskKind.LAYOUT, [png(3)], params=GenerationParams(4))


def test_each_task_goes_to_a_worker_that_serves_it(workers: dict[str, str]) -> None:
    fleet = ModelFleet([workers["vl"], workers["ocr2"]])
    try:
        fleet.refresh()
        assert fleet.served() == {
            workers["vl"]: frozenset(VL_TASKS),
            workers["ocr2"]: frozenset({TaskKind.OCR, TaskKind.LAYOUT}),
        }
        assert {fleet.pick(TaskKind.LAYOUT).target for _ in range(4)} == {workers["ocr2"]}
        assert {fleet.pick(TaskKind.QA).target for _ in range(4)} == {workers["vl"]}
        assert {fleet.pick(TaskKind.OCR).target for _ in range(4)} == {workers["vl"], workers["ocr2"]}
        assert fleet.generate(layout_request()).generated_tokens <= 4  # answered, not refused
        fleet.check_served([TaskKind.LAYOUT, TaskKind.QA])
    finally:
        fleet.close()


def test_a_task_no_worker_serves_is_refused_naming_it(workers: dict[str, str]) -> None:
    fleet = ModelFleet([workers["vl"]])
    try:
        fleet.refresh()
        with pytest.raises(
            InvalidInput, match=r"no model worker of this deployment serves layout.*DeepSeek-OCR-2"
        ):
            fleet.check_served([TaskKind.OCR, TaskKind.LAYOUT])
        with pytest.raises(InvalidInput, match="serves layout"):
            fleet.pick(TaskKind.LAYOUT)
        fleet.check_served([TaskKind.QA])
    finally:
        fleet.close()


def test_a_worker_never_heard_from_may_serve_anything_and_one_gone_quiet_keeps_its_tasks(
    workers: dict[str, str], small_engine: Engine
) -> None:
    fleet = ModelFleet([workers["vl"], UNREACHABLE], refresh_s=0)
    try:
        fleet.refresh()
        assert fleet.served()[UNREACHABLE] is None
        fleet.check_served([TaskKind.LAYOUT])  # not refused on a guess
        assert fleet.pick(TaskKind.LAYOUT).target == UNREACHABLE
    finally:
        fleet.close()

    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0)
    with running_server(settings, lambda s: InferenceService(small_engine, s)) as (_, client):
        client.wait_ready(60)
        target = client.target
        fleet = ModelFleet([target], refresh_s=0)
        fleet.refresh()
    try:
        fleet.refresh()  # the worker has stopped: what it said is kept
        assert fleet.served() == {target: frozenset(VL_TASKS)}
    finally:
        fleet.close()


def test_the_front_doors_refresh_in_the_background(workers: dict[str, str]) -> None:
    fleet = ModelFleet([workers["ocr2"]], refresh_s=0.05)
    try:
        fleet.start_refreshing()
        wait_for(lambda: fleet.served()[workers["ocr2"]] is not None, 10, "the first refresh")
        fleet.check_served([TaskKind.LAYOUT])
    finally:
        fleet.close()
