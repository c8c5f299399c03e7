"""TEST-ONLY steering of a tiny random model: each request of a scripted task is answered with a given text.

The tiny checkpoints have random weights, so what they write is junk. Tests of what the platform does with a
real answer (a grounded `layout` page parsed into blocks with boxes, ...) need real answers coming out of the
real processes, so `ScriptedAnswers` is a logits hook (`model_worker.decoding.LogitsHook`, installed in
`Engine.logits_hooks`) that makes the model emit, for each request whose task has a script, that text's tokens
(tokenised with the checkpoint's own tokenizer) and then its end token. Everything else is the production
worker: validation, the prompt, image preprocessing and encoding, both schedulers, decoding (the grounding
tags of layout kept), streaming and gRPC. Requests of tasks without a script get the model's own junk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from docvl.tasks import TaskKind
from model_worker.engine import Engine
from model_worker.preprocess import PreparedInput

# A DeepSeek-OCR-2-style grounded answer for one page: each block a label, a box (x1, y1, x2, y2 in 0..999 of
# the page's width and height) and its Markdown; a figure has no text; a table is HTML.
LAYOUT_PAGE = (
    "<|ref|>title<|/ref|><|det|>[[118, 62, 880, 104]]<|/det|>\n# Annual report 2024\n\n"
    "<|ref|>text<|/ref|><|det|>[[118, 130, 880, 236]]<|/det|>\n"
    "Revenue grew by 12 percent to 1,200 million, and profit by 20 percent to 300 million.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[118, 262, 520, 292]]<|/det|>\n## Results by year\n\n"
    "<|ref|>table<|/ref|><|det|>[[118, 310, 880, 470]]<|/det|>\n"
    "<table><tr><td>year</td><td>revenue</td><td>profit</td></tr>"
    "<tr><td>2023</td><td>1,071</td><td>250</td></tr>"
    "<tr><td>2024</td><td>1,200</td><td>300</td></tr></table>\n\n"
    "<|ref|>image<|/ref|><|det|>[[118, 500, 600, 820]]<|/det|>\n\n"
    "<|ref|>image_caption<|/ref|><|det|>[[118, 830, 600, 858]]<|/det|>\nFigure 1: revenue by year.\n\n"
    "<|ref|>footer<|/ref|><|det|>[[430, 950, 570, 972]]<|/det|>\n1"
)
DEFAULT_SCRIPT: dict[TaskKind, str] = {TaskKind.LAYOUT: LAYOUT_PAGE}


class ScriptedAnswers:
    """A logits hook: a request of a scripted task is forced, token by token, to its task's text, then to the
    end token (so it finishes with STOP, unless its max_new_tokens runs out first)."""

    def __init__(self, tokenizer: Any, answers: Mapping[TaskKind, str], end_token: int) -> None:
        self.answers = dict(answers)
        self.scripts = {
            task: [*tokenizer.encode(text, add_special_tokens=False), end_token]
            for task, text in answers.items()
        }

    @classmethod
    def install(cls, engine: Engine, answers: Mapping[TaskKind, str] = DEFAULT_SCRIPT) -> ScriptedAnswers:
        """Add the hook to the engine (both schedulers use its hooks); returns it."""
        end = engine.tokenizer.eos_token_id
        hook = cls(engine.tokenizer, answers, int(end if end is not None else min(engine.eos_ids)))
        engine.logits_hooks.append(hook)
        return hook

    def __call__(self, prepared: PreparedInput, generated: list[int], scores: torch.Tensor) -> torch.Tensor:
        script = self.scripts.get(prepared.task)
        if script is None:
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[script[min(len(generated), len(script) - 1)]] = 0.0
        return forced


def load_script(path: Path) -> dict[TaskKind, str]:
    """A script file: one JSON object from task names to answer texts, e.g. {"layout": "<|ref|>title..."}."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError(f"{path}: a script is a JSON object from task names to answer texts")
    return {TaskKind.parse(task): text for task, text in raw.items()}
