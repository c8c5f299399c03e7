"""The model's work: validate and preprocess one request, and generate for a batch of them.

No transport and no asyncio here: the batcher calls these from worker threads.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from docvl.errors import InvalidInput, ResourceExhausted
from docvl.inference.types import FinishReason, Generated, GenerationParams, InferenceRequest, RepeatGuard
from docvl.observability.metrics import model as metrics
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.decoding import NoRepeatWindow, RowControl, RowSampler, RowStop, RowStreamer
from model_worker.images import decode_image
from model_worker.prompts import build_prompt
from model_worker.settings import ModelWorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_image_bytes: int
    max_image_pixels: int
    max_prompt_chars: int
    default_max_new_tokens: int
    max_new_tokens: int

    @classmethod
    def from_settings(cls, s: ModelWorkerSettings) -> Limits:
        return cls(
            max_images=s.max_images_per_request,
            max_image_bytes=s.max_image_bytes,
            max_image_pixels=s.max_image_pixels,
            max_prompt_chars=s.max_prompt_chars,
            default_max_new_tokens=s.default_max_new_tokens,
            max_new_tokens=s.max_new_tokens_limit,
        )


@dataclass(frozen=True)
class PreparedInput:
    """One request, ready for a batch: token ids (unpadded), pixel tensors, resolved parameters."""

    request_id: str
    input_ids: torch.Tensor
    pixels: dict[str, torch.Tensor]
    params: GenerationParams
    image_tokens: int
    prompt_version: str
    preprocessing_ms: float
    priority: int = 0  # 0..9, higher first: the continuous scheduler admits by it (then by arrival)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "not enough memory" in str(exc)


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        limits: Limits,
        vision_batch_size: int = 0,
        repeat_guard: RepeatGuard | None = None,
    ) -> None:
        self.loaded = loaded
        self.repeat_guard = repeat_guard
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.limits = limits
        self.description = loaded.description
        self.vision_batch_size = vision_batch_size or (8 if loaded.device.type == "cuda" else 1)
        if loaded.device.type == "cuda":
            device = loaded.device
            metrics.watch_gpu_memory(
                lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device)
            )
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id]
        self.eos_ids = {int(e) for e in eos_ids}
        self.pad_id = int(
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos_ids[0]
        )

    # -- one request ----------------------------------------------------------------------------------

    def resolve_params(self, params: GenerationParams) -> GenerationParams:
        limit = self.limits.max_new_tokens
        max_new = params.max_new_tokens or self.limits.default_max_new_tokens
        if not 1 <= max_new <= limit:
            raise InvalidInput(f"max_new_tokens is {max_new}: use 1..{limit} (or 0 for the default)")
        if not 0.0 <= params.temperature <= 5.0:
            raise InvalidInput(f"temperature is {params.temperature}: use 0 (greedy) up to 5")
        top_p = params.top_p or 1.0
        if not 0.0 < top_p <= 1.0:
            raise InvalidInput(f"top_p is {params.top_p}: use a value in (0, 1], or 0 for 1")
        seed = params.seed
        if not params.greedy and seed is None:
            seed = secrets.randbits(63)
        return GenerationParams(
            max_new_tokens=max_new, temperature=params.temperature, top_p=top_p, seed=seed
        )

    def prepare(self, request: InferenceRequest) -> PreparedInput:
        """Validate, decode the images, render the prompt and run the processor. Raises InvalidInput."""
        started = time.perf_counter()
        limits = self.limits
        if not request.images:
            raise InvalidInput("no image: send at least one image")
        if len(request.images) > limits.max_images:
            raise InvalidInput(f"{len(request.images)} images: this worker takes at most {limits.max_images}")
        for name, text in (("question", request.question), ("prompt_override", request.prompt_override)):
            if text and len(text) > limits.max_prompt_chars:
                raise InvalidInput(
                    f"{name} is {len(text)} characters: the limit is {limits.max_prompt_chars}"
                )
        if not 0 <= request.priority <= 9:
            raise InvalidInput(f"priority is {request.priority}: use 0..9 (higher first)")
        params = self.resolve_params(request.params)
        prompt = build_prompt(request.task, len(request.images), request.question, request.prompt_override)
        images = [
            decode_image(data, index=i, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
            for i, data in enumerate(request.images)
        ]
        text = self.processor.apply_chat_template(prompt.messages, add_generation_prompt=True)
        encoded = self.processor(text=[text], images=images, return_tensors="pt")
        pixels = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        return PreparedInput(
            request_id=request.request_id,
            input_ids=encoded["input_ids"][0],
            pixels=pixels,
            params=params,
            image_tokens=len(images) * self.description.image_tokens_per_image,
            prompt_version=prompt.version
            + ("" if self.repeat_guard is None else "+" + self.repeat_guard.version),
            preprocessing_ms=(time.perf_counter() - started) * 1000,
            priority=request.priority,
        )

    # -- a batch --------------------------------------------------------------------------------------

    def collate(self, batch: Sequence[PreparedInput]) -> dict[str, torch.Tensor]:
        """Left-pad the prompts and stack the pixels, as the processor does for a list of prompts."""
        length = max(len(p.input_ids) for p in batch)
        input_ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        for row, p in enumerate(batch):
            input_ids[row, length - len(p.input_ids) :] = p.input_ids
            attention_mask[row, length - len(p.input_ids) :] = 1
        tensors = {"input_ids": input_ids, "attention_mask": attention_mask}
        for key in batch[0].pixels:
            tensors[key] = torch.cat([p.pixels[key] for p in batch])
        return tensors

    def encode_images(self, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image features, `vision_batch_size` images at a time (the SAM encoder's memory grows fast)."""
        device, dtype = self.loaded.device, self.model.dtype
        count = next(iter(pixels.values())).shape[0]
        chunks = []
        for start in range(0, count, self.vision_batch_size):
            chunk = {
                k: v[start : start + self.vision_batch_size].to(device, dtype) for k, v in pixels.items()
            }
            chunks.append(self.model.model.get_image_features(**chunk, return_dict=True).pooler_output)
        return torch.cat(chunks)

    def generate(self, batch: Sequence[PreparedInput], rows: Sequence[RowControl]) -> list[Generated]:
        """One generate call for the batch; each row ends at its own limit, its end or its cancellation."""
        tensors = self.collate(batch)
        prompt_length = tensors["input_ids"].shape[1]
        pixel_keys = [k for k in tensors if k not in ("input_ids", "attention_mask")]
        kwargs: dict[str, Any] = {}
        processors: list[LogitsProcessor] = []
        if self.repeat_guard is not None:  # before sampling: a banned token is never drawn
            processors.append(NoRepeatWindow(self.repeat_guard, prompt_length))
        if any(row.sampler is not None for row in rows):
            processors.append(RowSampler(rows))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if any(row.on_delta is not None for row in rows):
            kwargs["streamer"] = RowStreamer(rows, self._decode, self.eos_ids)
        with torch.inference_mode():
            started = time.perf_counter()
            features = self.encode_images({k: tensors[k] for k in pixel_keys})
            if self.loaded.device.type == "cuda":  # kernels run asynchronously: time their end
                torch.cuda.synchronize(self.loaded.device)
            encoded = time.perf_counter()
            output = self.model.generate(
                input_ids=tensors["input_ids"].to(self.loaded.device),
                attention_mask=tensors["attention_mask"].to(self.loaded.device),
                mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
                max_new_tokens=max(row.params.max_new_tokens for row in rows),
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([RowStop(rows, prompt_length)]),
                pad_token_id=self.pad_id,
                **kwargs,
            )
        new_tokens = output[:, prompt_length:].tolist()
        finished = [
            self._finish(p, row, tokens) for p, row, tokens in zip(batch, rows, new_tokens, strict=True)
        ]
        metrics.record_generate(
            encoded - started, time.perf_counter() - encoded, sum(len(g.token_ids) for g in finished)
        )
        return finished

    def _finish(self, prepared: PreparedInput, row: RowControl, tokens: list[int]) -> Generated:
        reason = FinishReason.LENGTH
        if row.cancelled_after is not None:  # its caller went away; the rest of the row is padding
            tokens, reason = tokens[: row.cancelled_after], FinishReason.CANCELLED
        tokens = tokens[: row.params.max_new_tokens]
        for index, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens, reason = tokens[:index], FinishReason.STOP
                break
        return Generated(
            text=self._decode(tokens),
            token_ids=tokens,
            finish_reason=reason,
            prompt_tokens=len(prepared.input_ids),
            image_tokens=prepared.image_tokens,
        )

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def release_memory(self) -> None:
        if self.loaded.device.type == "cuda":
            torch.cuda.empty_cache()

    def run_isolated(
        self, batch: Sequence[PreparedInput], rows: Sequence[RowControl]
    ) -> list[Generated | Exception]:
        """generate(), but one request's failure stays its own: out of memory splits the batch in halves,
        another error re-runs the requests one by one; a lone request that fails gets its error."""
        try:
            return list(self.generate(batch, rows))
        except Exception as exc:
            if is_out_of_memory(exc):
                self.release_memory()
                if len(batch) == 1:
                    log.warning("out of memory on request %s alone", batch[0].request_id)
                    return [
                        ResourceExhausted(
                            "out of memory generating this request: retry later, or send fewer images or a "
                            "smaller max_new_tokens"
                        )
                    ]
                half = len(batch) // 2
                log.warning("out of memory on a batch of %d: splitting it", len(batch))
                return self.run_isolated(batch[:half], rows[:half]) + self.run_isolated(
                    batch[half:], rows[half:]
                )
            if len(batch) == 1:
                log.exception("request %s failed", batch[0].request_id)
                return [exc]
            log.exception("a batch of %d failed: running its requests one by one", len(batch))
            results: list[Generated | Exception] = []
            for p, row in zip(batch, rows, strict=True):
                results.extend(self.run_isolated([p], [row]))
            return results

    def warm_up(self) -> None:
        """One short generation, so the first real request does not pay for lazy initialisation."""
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (255, 255, 255)).save(buffer, format="PNG")
        request = InferenceRequest(
            task=TaskKind.OCR, images=[buffer.getvalue()], params=GenerationParams(max_new_tokens=2)
        )
        prepared = self.prepare(request)
        self.generate([prepared], [RowControl(prepared.params)])
