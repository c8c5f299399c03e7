"""Model logic without transport: the engine against transformers' own generate."""

from __future__ import annotations

import pytest
import torch

from docvl.errors import InvalidInput, ResourceExhausted
from docvl.inference.types import FinishReason, Generated, GenerationParams, InferenceRequest, RepeatGuard
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.decoding import NoRepeatWindow, RowControl
from model_worker.engine import Engine, PreparedInput
from tests.conftest import make_engine
from tests.support.helpers import png
from tests.support.reference import direct_generate

VL_TASKS = [TaskKind.OCR, TaskKind.CHART2CODE, TaskKind.WEB2HTML, TaskKind.QA]  # the tiny hybrid's


def request(image: int, task: TaskKind = TaskKind.OCR, max_new: int = 12, **kw: object) -> InferenceRequest:
    question = "What is in the picture?" if task is TaskKind.QA else None
    return InferenceRequest(
        task=task,
        images=[png(image, (120 + 17 * image, 90))],
        question=question,
        params=GenerationParams(max_new_tokens=max_new, **kw),  # type: ignore[arg-type]
        request_id=f"r{image}",
    )


def run_one(engine: Engine, prepared: PreparedInput) -> Generated:
    return engine.generate([prepared], [RowControl(prepared.params)])[0]


def test_unbatched_answer_equals_direct_generate(small_engine: Engine, small_model: LoadedModel) -> None:
    for seed, task in enumerate(VL_TASKS):
        req = request(seed, task, max_new=16)
        got = run_one(small_engine, small_engine.prepare(req))
        tokens, text = direct_generate(small_model, task, list(req.images), 16, req.question)
        assert got.token_ids == tokens
        assert got.text == text
        assert got.image_tokens == 16
        assert got.finish_reason == (FinishReason.LENGTH if len(tokens) == 16 else FinishReason.STOP)


def test_several_images_in_one_request(small_engine: Engine, small_model: LoadedModel) -> None:
    images = [png(1), png(2, (60, 200)), png(3)]
    req = InferenceRequest(
        task=TaskKind.QA, images=images, question="Which differs?", params=GenerationParams(10)
    )
    got = run_one(small_engine, small_engine.prepare(req))
    tokens, _ = direct_generate(small_model, TaskKind.QA, images, 10, "Which differs?")
    assert got.token_ids == tokens
    assert got.image_tokens == 3 * 16


def test_batched_equals_unbatched_with_own_limits(small_engine: Engine) -> None:
    tasks = VL_TASKS
    prepared = [small_engine.prepare(request(s, tasks[s % 4], max_new=5 + 3 * s)) for s in range(8)]
    batched = small_engine.generate(prepared, [RowControl(p.params) for p in prepared])
    assert len({len(p.input_ids) for p in prepared}) > 1, "prompts of different lengths exercise left padding"
    for p, got in zip(prepared, batched, strict=True):
        alone = run_one(small_engine, p)
        assert got == alone
        assert len(got.token_ids) <= p.params.max_new_tokens


def test_answers_depend_on_the_image(small_engine: Engine) -> None:
    a = run_one(small_engine, small_engine.prepare(request(1, max_new=12)))
    b = run_one(small_engine, small_engine.prepare(request(2, max_new=12)))
    assert a.token_ids != b.token_ids


def test_sampling_is_reproducible_per_seed_whatever_the_batch(small_engine: Engine) -> None:
    sampled = small_engine.prepare(request(3, max_new=12, temperature=1.0, top_p=0.9, seed=42))
    others = [small_engine.prepare(request(s, max_new=12)) for s in (4, 5)]
    alone = run_one(small_engine, sampled)
    again = run_one(small_engine, sampled)
    in_batch = small_engine.generate(
        [others[0], sampled, others[1]], [RowControl(p.params) for p in (others[0], sampled, others[1])]
    )
    other_seed = run_one(small_engine, small_engine.prepare(request(3, max_new=12, temperature=1.0, seed=7)))
    assert alone == again == in_batch[1]
    assert other_seed.token_ids != alone.token_ids
    assert in_batch[0] == run_one(small_engine, others[0]), "a sampled neighbour leaves greedy rows alone"


def test_streamed_deltas_concatenate_to_the_text(small_engine: Engine) -> None:
    prepared = [small_engine.prepare(request(s, max_new=20)) for s in range(3)]
    deltas: list[list[str]] = [[], [], []]
    rows = [RowControl(p.params, on_delta=deltas[i].append) for i, p in enumerate(prepared)]
    results = small_engine.generate(prepared, rows)
    for got, pieces in zip(results, deltas, strict=True):
        streamed = "".join(pieces)
        assert got.text.startswith(streamed)
        assert len(pieces) > 1


def test_a_cancelled_row_stops_early_and_alone(small_engine: Engine) -> None:
    candidates = [small_engine.prepare(request(s, max_new=40)) for s in range(8)]
    long = [p for p in candidates if run_one(small_engine, p).finish_reason is FinishReason.LENGTH]
    assert len(long) >= 2, "the tiny model should run to the limit for some images"
    prepared = long[:2]
    seen: list[str] = []
    rows = [
        RowControl(prepared[0].params, cancelled=lambda: len(seen) >= 3, on_delta=seen.append),
        RowControl(prepared[1].params),
    ]
    results = small_engine.generate(prepared, rows)
    assert results[0].finish_reason is FinishReason.CANCELLED
    assert len(results[0].token_ids) < 40
    assert results[1] == run_one(small_engine, prepared[1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": []}, "at least one image"),
        ({"images": [png(1)] * 5}, "at most 4"),
        ({"images": [b""]}, "empty"),
        ({"images": [b"not an image at all"]}, "not an image format"),
        ({"images": [png(1)[:200]]}, "corrupt or truncated"),
        ({"task": TaskKind.QA}, "needs a question"),
        (
            {"task": TaskKind.LAYOUT},
            "task layout is not served .*deepseek-vl-hybrid.*ocr, chart2code, web2html, qa",
        ),
        ({"params": GenerationParams(max_new_tokens=5000)}, "max_new_tokens is 5000"),
        ({"params": GenerationParams(max_new_tokens=-1)}, "max_new_tokens is -1"),
        ({"params": GenerationParams(temperature=-1)}, "temperature"),
        ({"params": GenerationParams(temperature=1, top_p=1.5)}, "top_p"),
        ({"prompt_override": "x" * 9000}, "prompt_override is 9000 characters"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    small_engine: Engine, change: dict[str, object], message: str
) -> None:
    base = request(1)
    bad = InferenceRequest(**{**base.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        small_engine.prepare(bad)


# --- out of memory ------------------------------------------------------------------------------------
# A GPU cannot run here, so these tests make the model raise torch.OutOfMemoryError the way CUDA does
# when a batch does not fit; everything else (splitting, recovery, the answers) is the real engine.


class OutOfMemoryAbove(Engine):
    """An engine whose device 'runs out of memory' for batches larger than `fits`, or on a marked request."""

    def __init__(self, base: Engine, fits: int, poison: str | None = None) -> None:
        self.__dict__.update(base.__dict__)
        self.fits = fits
        self.poison = poison
        self.calls: list[int] = []

    def generate(self, batch, rows):  # type: ignore[no-untyped-def]
        self.calls.append(len(batch))
        if len(batch) > self.fits or any(p.request_id == self.poison for p in batch):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().generate(batch, rows)


def test_out_of_memory_splits_the_batch_and_every_answer_is_unchanged(small_engine: Engine) -> None:
    engine = OutOfMemoryAbove(small_engine, fits=2)
    prepared = [engine.prepare(request(s, max_new=8)) for s in range(6)]
    results = engine.run_isolated(prepared, [RowControl(p.params) for p in prepared])
    assert engine.calls[0] == 6
    assert max(engine.calls[1:]) <= 3
    for p, got in zip(prepared, results, strict=True):
        assert got == run_one(small_engine, p)


def test_out_of_memory_on_one_request_fails_it_alone_and_the_engine_recovers(small_engine: Engine) -> None:
    engine = OutOfMemoryAbove(small_engine, fits=8, poison="r2")
    prepared = [engine.prepare(request(s, max_new=8)) for s in range(4)]
    results = engine.run_isolated(prepared, [RowControl(p.params) for p in prepared])
    assert isinstance(results[2], ResourceExhausted)
    for i in (0, 1, 3):
        assert results[i] == run_one(small_engine, prepared[i])
    after = engine.run_isolated(prepared[:2], [RowControl(p.params) for p in prepared[:2]])
    assert all(isinstance(r, Generated) for r in after)


def test_an_unexpected_failure_in_a_batch_stays_with_its_request(small_engine: Engine) -> None:
    good = [small_engine.prepare(request(s, max_new=6)) for s in range(3)]
    broken = PreparedInput(**{**good[1].__dict__, "pixels": {k: v[:, :1] for k, v in good[1].pixels.items()}})
    batch = [good[0], broken, good[2]]
    results = small_engine.run_isolated(batch, [RowControl(p.params) for p in batch])
    assert isinstance(results[1], Exception)
    assert not isinstance(results[1], Generated)
    assert results[0] == run_one(small_engine, good[0])
    assert results[2] == run_one(small_engine, good[2])


def repeated_ngrams(tokens: list[int], n: int, window: int) -> int:
    """How many times an n-gram recurs within `window` tokens of its last occurrence."""
    last: dict[tuple[int, ...], int] = {}
    repeats = 0
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in last and i + n - last[gram] <= window:
            repeats += 1
        last[gram] = i
    return repeats


def test_no_repeat_window_bans_only_generated_ngrams_inside_the_window() -> None:
    guard = RepeatGuard(ngram=3, window=6)
    prompt = [5, 6, 7, 5, 6]  # the prompt's own n-grams never ban anything
    processor = NoRepeatWindow(guard, prompt_length=len(prompt))
    scores = processor(torch.tensor([[*prompt, 1, 2, 3, 1, 2]]), torch.zeros(1, 10))
    assert [int(i) for i in torch.nonzero(scores[0] == float("-inf"))] == [3]  # (1, 2) was followed by 3
    scores = processor(torch.tensor([[*prompt, 1, 2, 3, 9, 9, 9, 9, 1, 2]]), torch.zeros(1, 10))
    assert not torch.isinf(scores).any()  # 1 2 3 fell out of the window
    assert guard.version == "norepeat3w6"


def test_the_repetition_guard_stops_loops_and_is_recorded(small_model: LoadedModel) -> None:
    plain = make_engine(small_model)
    guarded = make_engine(small_model, no_repeat_ngram=2, no_repeat_window=64)
    req = request(4, max_new=48)
    loose_input, tight_input = plain.prepare(req), guarded.prepare(req)
    loose, tight = run_one(plain, loose_input), run_one(guarded, tight_input)
    # The tiny random model loops at once; the guard leaves no 2-gram repeated within 64 tokens.
    assert repeated_ngrams(loose.token_ids, 2, 64) > 0
    assert repeated_ngrams(tight.token_ids, 2, 64) == 0
    assert tight_input.prompt_version == loose_input.prompt_version + "+norepeat2w64"
