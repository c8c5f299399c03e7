"""The running batch of the continuous engine: one padded key/value cache, rows joining and leaving it.

TGI's padded-cache design on transformers' `DynamicCache`: every row is left-padded to the cache's length,
its attention mask marks its real positions, and its position ids count only those. Newcomers are prefilled
together (their images encoded once, here), then their cache is concatenated into the running one (the
shorter of the two padded on the left); a finished row is removed with `batch_select_indices`, and columns
that have become padding for every row are cut off. No asyncio here: the scheduler calls this from its
model thread, one step at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from docvl.inference.types import Generated
from docvl.observability.metrics import model as metrics
from model_worker.decoding import NoRepeatWindow, RowControl, RowSampler, RowStreamer
from model_worker.engine import Engine, PreparedInput


@dataclass
class Row:
    """One request in the running batch."""

    prepared: PreparedInput
    control: RowControl
    tokens: list[int] = field(default_factory=list)
    streamer: RowStreamer | None = None
    done: bool = False

    @property
    def reserved_tokens(self) -> int:
        """Cache positions this row may come to hold: its prompt and every token it may generate."""
        return len(self.prepared.input_ids) + self.prepared.params.max_new_tokens


class RunningBatch:
    """The rows that decode together, their cache, masks and next inputs (all on the model's device)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.device = engine.loaded.device
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.positions = torch.zeros((0,), dtype=torch.long, device=self.device)  # of the next input
        self.next_ids = torch.zeros((0,), dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cache_length(self) -> int:
        return int(self.mask.shape[1])

    # -- leaving --------------------------------------------------------------------------------------

    def retire(self) -> list[tuple[Row, Generated]]:
        """Remove the rows that are done (end token, own limit, cancelled or past their deadline) and free
        their cache at once; their answers, as the window batcher's engine would give them."""
        for row in self.rows:
            if row.done:
                continue
            if row.control.cancelled_after is None and row.control.cancelled():
                row.control.cancelled_after = len(row.tokens)
                row.done = True
        finish = self.engine._finish
        finished = [(row, finish(row.prepared, row.control, row.tokens)) for row in self.rows if row.done]
        if finished:
            self.keep([i for i, row in enumerate(self.rows) if not row.done])
        return finished

    def keep(self, indices: list[int]) -> None:
        """Only these rows stay; then drop the leading columns that are padding in every row left."""
        self.rows = [self.rows[i] for i in indices]
        if not self.rows:
            self.cache = None
            self.mask = self.mask[:0, :0]
            self.positions, self.next_ids = self.positions[:0], self.next_ids[:0]
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.device)
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.next_ids = self.next_ids[index]
        assert self.cache is not None
        self.cache.batch_select_indices(index)
        used = torch.nonzero(self.mask.any(dim=0))
        first = int(used[0]) if len(used) else 0
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:, :]
                layer.values = layer.values[:, :, first:, :]

    # -- joining --------------------------------------------------------------------------------------

    def prefill(self, newcomers: Sequence[Row]) -> RunningBatch:
        """A batch of the newcomers alone: their prompts (left-padded together) and images run through the
        model once, and their first token chosen."""
        batch = RunningBatch(self.engine)
        batch.rows = list(newcomers)
        engine = self.engine
        tensors = engine.collate([row.prepared for row in newcomers])
        pixel_keys = [k for k in tensors if k not in ("input_ids", "attention_mask")]
        mask = tensors["attention_mask"].to(self.device)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cache = DynamicCache(config=engine.model.config)
        started = time.perf_counter()
        features = engine.encode_images({k: tensors[k] for k in pixel_keys})
        encoded = time.perf_counter()
        output = engine.model(
            input_ids=tensors["input_ids"].to(self.device),
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            mm_encoder_outputs=features,
        )
        batch.cache = output.cache
        batch.mask = mask
        batch.positions = positions[:, -1] + 1
        batch.next_ids = batch.choose(output.logits[:, -1, :])
        # As the window batcher counts a generate call: requests batched, images encoded, prompt run.
        metrics.batch_size.observe(len(newcomers))
        metrics.vision.observe(encoded - started)
        metrics.generation.observe(time.perf_counter() - encoded)
        return batch

    def join(self, other: RunningBatch) -> None:
        """Concatenate another batch's rows and cache after ours, left-padding the shorter cache."""
        if not self.rows:
            self.rows, self.cache, self.mask = other.rows, other.cache, other.mask
            self.positions, self.next_ids = other.positions, other.next_ids
            return
        assert self.cache is not None
        assert other.cache is not None
        length = max(self.cache_length, other.cache_length)
        ours, theirs = length - self.cache_length, length - other.cache_length
        for mine, new in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, ours), _left_pad(new.keys, theirs)])
            mine.values = torch.cat([_left_pad(mine.values, ours), _left_pad(new.values, theirs)])
        self.mask = torch.cat([_left_pad(self.mask, ours), _left_pad(other.mask, theirs)])
        self.rows += other.rows
        self.positions = torch.cat([self.positions, other.positions])
        self.next_ids = torch.cat([self.next_ids, other.next_ids])

    # -- decoding -------------------------------------------------------------------------------------

    def decode(self) -> None:
        """One token for every running row that is not done yet. When the model raises (out of memory
        midway, say), the step is undone: the cache layers it grew are cut back, so the rows can go on."""
        before, length = self.mask, self.cache_length
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        try:
            output = self.engine.model(
                input_ids=self.next_ids[:, None],
                attention_mask=self.mask,
                position_ids=self.positions[:, None],
                cache=self.cache,
                use_cache=True,
            )
        except BaseException:
            self.mask = before
            assert self.cache is not None
            for layer in self.cache.layers:
                if layer.keys is not None and layer.keys.shape[2] > length:
                    layer.keys = layer.keys[:, :, :length, :]
                    layer.values = layer.values[:, :, :length, :]
            raise
        self.cache = output.cache
        self.positions = self.positions + 1
        self.next_ids = self.choose(output.logits[:, -1, :])

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Each row's next token by its own rules (guard, then its sampler or greedy, then the engine's
        logits hooks), recorded and streamed; a row is done at an end token or its own max_new_tokens."""
        scores = logits.float()
        guard = self.engine.repeat_guard
        hooks = self.engine.logits_hooks
        for i, row in enumerate(self.rows):
            if guard is not None and row.tokens:
                NoRepeatWindow(guard, 0)(torch.tensor([row.tokens]), scores[i : i + 1])
            if row.control.sampler is not None:
                RowSampler([row.control])(torch.zeros((1, 0), dtype=torch.long), scores[i : i + 1])  # type: ignore[arg-type]
            for hook in hooks:
                scores[i] = hook(row.prepared, list(row.tokens), scores[i])
        chosen = scores.argmax(dim=-1)
        for row, token in zip(self.rows, chosen.tolist(), strict=True):
            row.tokens.append(int(token))
            if row.streamer is not None:
                row.streamer.put(torch.tensor([int(token)]))
            if token in self.engine.eos_ids or len(row.tokens) >= row.prepared.params.max_new_tokens:
                row.done = True
        return chosen


def _left_pad(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """`columns` zeros before the sequence dimension of a mask (dim 1) or of keys/values (dim 2)."""
    if columns == 0:
        return tensor
    dim = 1 if tensor.dim() == 2 else 2
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def new_row(engine: Engine, prepared: PreparedInput, control: RowControl) -> Row:
    row = Row(prepared, control)
    if control.on_delta is not None:
        row.streamer = RowStreamer([control], [engine.decoder(prepared.task)], engine.eos_ids)
        row.streamer.prompt_seen = True
    return row
