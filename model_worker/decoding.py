"""Per-row control of one batched `generate` call: each request keeps its own sampler, limit, stream,
decoding and logits hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from docvl.inference.types import GenerationParams, RepeatGuard
from model_worker.preprocess import PreparedInput

LogitsHook = Callable[[PreparedInput, list[int], torch.Tensor], torch.Tensor]
"""Extra per-row logits processing, `Engine.logits_hooks`: called with a row's request, the tokens it has
generated so far and its scores over the vocabulary (one row, float32), it returns the scores to choose
from. Both schedulers call every hook for every row at every step, after the repetition guard and the
sampler, so a hook has the last word (tests steer the tiny random model with one; no hook is installed in
production)."""


@dataclass
class RowControl:
    """What the batch runner knows of one request while it generates."""

    params: GenerationParams
    cancelled: Callable[[], bool] = lambda: False
    on_delta: Callable[[str], None] | None = None
    sampler: torch.Generator | None = field(default=None, init=False)
    cancelled_after: int | None = field(default=None, init=False)  # tokens generated when it was stopped

    def __post_init__(self) -> None:
        if not self.params.greedy:
            self.sampler = torch.Generator().manual_seed(int(self.params.seed or 0))


class RowSampler(LogitsProcessor):  # type: ignore[misc]
    """Samples the rows that asked for sampling with their own seeded generator; leaves greedy rows alone.

    generate() runs greedy; a sampled row's logits become -inf but for its drawn token, so the draw of one
    request never depends on which other requests share its batch.
    """

    def __init__(self, rows: Sequence[RowControl]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i, row in enumerate(self.rows):
            if row.sampler is None:
                continue
            probs = torch.softmax(scores[i].float().cpu() / row.params.temperature, dim=-1)
            top_p = row.params.top_p
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
            token = int(torch.multinomial(probs, 1, generator=row.sampler).item())
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores


class NoRepeatWindow(LogitsProcessor):  # type: ignore[misc]
    """Bans, for each row, every token that would complete an n-gram already generated in its window."""

    def __init__(self, guard: RepeatGuard, prompt_length: int) -> None:
        self.guard = guard
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, window = self.guard.ngram, self.guard.window
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, tokens in enumerate(generated):
            recent = tokens[-window:]
            if len(recent) < n:
                continue
            prefix = tuple(recent[len(recent) - (n - 1) :])
            banned = {
                recent[i + n - 1]
                for i in range(len(recent) - n + 1)
                if tuple(recent[i : i + n - 1]) == prefix
            }
            if banned:
                scores[row, list(banned)] = float("-inf")
        return scores


class RowHooks(LogitsProcessor):  # type: ignore[misc]
    """The engine's logits hooks, row by row, inside one batched `generate` call."""

    def __init__(
        self, hooks: Sequence[LogitsHook], batch: Sequence[PreparedInput], prompt_length: int
    ) -> None:
        self.hooks = hooks
        self.batch = batch
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, prepared in enumerate(self.batch):
            generated = input_ids[row, self.prompt_length :].tolist()
            for hook in self.hooks:
                scores[row] = hook(prepared, generated, scores[row])
        return scores


class RowStop(StoppingCriteria):  # type: ignore[misc]
    """A row is done at its own max_new_tokens, or as soon as its caller has gone."""

    def __init__(self, rows: Sequence[RowControl], prompt_length: int) -> None:
        self.rows = rows
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_length
        done = []
        for row in self.rows:
            if row.cancelled_after is None and generated < row.params.max_new_tokens and row.cancelled():
                row.cancelled_after = generated
            done.append(generated >= row.params.max_new_tokens or row.cancelled_after is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class RowStreamer(BaseStreamer):  # type: ignore[misc]
    """Turns the batch's new tokens into text deltas per streaming row.

    Decodes a window of recent tokens (each row with its own decoder: a task may keep special tokens) and
    holds back text that ends in an incomplete character, so the deltas concatenate to the decoded answer.
    """

    def __init__(
        self,
        rows: Sequence[RowControl],
        decoders: Sequence[Callable[[list[int]], str]],
        eos: set[int],
    ) -> None:
        self.rows = rows
        self.decoders = decoders
        self.eos = eos
        self.tokens: list[list[int]] = [[] for _ in rows]
        self.offsets = [(0, 0) for _ in rows]  # (prefix, read) as token indexes
        self.finished = [False for _ in rows]
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        batch = value.reshape(len(self.rows), -1).tolist()
        for i, row in enumerate(self.rows):
            for token in batch[i]:
                self._push(i, row, int(token))

    def _push(self, i: int, row: RowControl, token: int) -> None:
        if self.finished[i] or row.on_delta is None:
            return
        if token in self.eos:
            self.finished[i] = True
            return
        tokens = self.tokens[i]
        tokens.append(token)
        if len(tokens) >= row.params.max_new_tokens:
            self.finished[i] = True
        prefix, read = self.offsets[i]
        decode = self.decoders[i]
        before = decode(tokens[prefix:read])
        after = decode(tokens[prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            row.on_delta(after[len(before) :])
            self.offsets[i] = (read, len(tokens))

    def end(self) -> None:
        return None
