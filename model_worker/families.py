"""What differs between the model families a worker can serve, behind one small interface.

A worker serves one checkpoint, and its family follows from the checkpoint's config (`model_type`). Everything
else (validation, batching, both schedulers, cancellation, streaming, decoding) is one code path for every
family; what a family decides is only:

- which tasks it serves, and how their prompts are written and rendered (`render`);
- which of the processor's outputs the model needs, and how requests' pixels join one batch (`pixels`,
  `collate`);
- how images become the features the language model takes (`encode`, the value of `mm_encoder_outputs`);
- how many image tokens an image costs (`image_tokens_per_image`, for GetModelInfo);
- which special tokens an answer keeps when decoded (`kept_tokens`: the grounding tags of `layout`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    DeepseekOcr2ForConditionalGeneration,
    DeepseekVLForConditionalGeneration,
    DeepseekVLHybridForConditionalGeneration,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from docvl.errors import InvalidInput
from docvl.tasks import TaskKind
from model_worker import prompts

TEXT_KEYS = ("input_ids", "attention_mask")
# DeepSeek's grounding tags: <|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>.
GROUNDING_TOKENS = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>")


@dataclass(frozen=True)
class RenderedPrompt:
    """The text the processor takes (image placeholders included), and the prompt version it records."""

    text: str
    version: str


class Family(ABC):
    """One model family: its transformers class, tasks and prompts, and how its images are handled."""

    name: str  # as ModelInfo reports it and `docvl model build-tiny --family` takes it
    model_type: str  # as the checkpoint's config.json says it
    model_class: type[Any]
    tasks: tuple[TaskKind, ...]
    prompt_version: str

    def check_task(self, task: TaskKind) -> None:
        """InvalidInput naming the task and the tasks served, when this family does not serve it."""
        if task not in self.tasks:
            served = ", ".join(t.value for t in self.tasks)
            raise InvalidInput(
                f"task {task.value} is not served by this model worker ({self.name}): it serves {served}"
            )

    @abstractmethod
    def render(
        self, processor: Any, task: TaskKind, n_images: int, question: str | None, override: str | None
    ) -> RenderedPrompt:
        """The prompt text of a request, with one image placeholder per image. Raises InvalidInput."""

    def pixels(self, encoded: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """What the model needs of the processor's output for one request, besides the text."""
        return {k: v for k, v in encoded.items() if k not in TEXT_KEYS}

    def collate(self, pixels: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Several requests' pixels as one batch, in request order."""
        return {key: torch.cat([p[key] for p in pixels]) for key in pixels[0]}

    @abstractmethod
    def encode(
        self,
        model: Any,
        pixels: dict[str, torch.Tensor],
        *,
        chunk: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> BaseModelOutputWithPooling:
        """The image features of a batch, `chunk` images at a time (the vision encoders' memory grows fast),
        as the model takes them in `mm_encoder_outputs["image"]`."""

    @abstractmethod
    def image_tokens_per_image(self, processor: Any) -> int:
        """Image tokens of one image (for a family whose count varies, the least an image costs)."""

    def kept_tokens(self, task: TaskKind) -> tuple[str, ...]:
        """Special tokens the task's answer keeps when decoded (every other special token is dropped)."""
        return ()


class DeepseekVL(Family):
    """DeepSeek-VL (SigLIP) and DeepSeek-VL hybrid (SigLIP + SAM): a fixed number of image tokens per image,
    chat prompts rendered by the checkpoint's chat template."""

    tasks = (TaskKind.OCR, TaskKind.CHART2CODE, TaskKind.WEB2HTML, TaskKind.QA)
    prompt_version = prompts.VL_PROMPT_VERSION

    def __init__(self, name: str, model_type: str, model_class: type[Any]) -> None:
        self.name, self.model_type, self.model_class = name, model_type, model_class

    def render(
        self, processor: Any, task: TaskKind, n_images: int, question: str | None, override: str | None
    ) -> RenderedPrompt:
        given = prompts.instruction(prompts.VL_INSTRUCTIONS, self.prompt_version, task, question, override)
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": given.text})
        messages = [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        return RenderedPrompt(str(text), given.version)

    def encode(
        self,
        model: Any,
        pixels: dict[str, torch.Tensor],
        *,
        chunk: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> BaseModelOutputWithPooling:
        count = next(iter(pixels.values())).shape[0]
        chunks = []
        for start in range(0, count, chunk):
            part = {k: v[start : start + chunk].to(device, dtype) for k, v in pixels.items()}
            chunks.append(model.model.get_image_features(**part, return_dict=True).pooler_output)
        return BaseModelOutputWithPooling(pooler_output=torch.cat(chunks))

    def image_tokens_per_image(self, processor: Any) -> int:
        return int(processor.num_image_tokens)


class DeepseekOcr2(Family):
    """DeepSeek-OCR-2: a global view of the page (1024 px: 256 tokens) plus, for a page larger than a tile,
    2 to 6 local tiles (768 px: 144 tokens each) and one separator token, so an image's token count depends
    on its size. Plain prompts (no chat template); `layout` keeps the grounding tags in its answer."""

    name = "deepseek-ocr2"
    model_type = "deepseek_ocr2"
    model_class = DeepseekOcr2ForConditionalGeneration
    tasks = (TaskKind.OCR, TaskKind.LAYOUT)
    prompt_version = prompts.OCR2_PROMPT_VERSION

    def render(
        self, processor: Any, task: TaskKind, n_images: int, question: str | None, override: str | None
    ) -> RenderedPrompt:
        given = prompts.instruction(prompts.OCR2_INSTRUCTIONS, self.prompt_version, task, question, override)
        return RenderedPrompt(processor.image_token * n_images + "\n" + given.text, given.version)

    def pixels(self, encoded: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        # pixel_values: one global view per image; pixel_values_local: every local tile, only when there are
        # any; num_local_patches: tiles per image, which says whose tiles are whose.
        pixels = {
            "pixel_values": encoded["pixel_values"],
            "num_local_patches": torch.as_tensor(encoded["num_local_patches"], dtype=torch.long),
        }
        if encoded.get("pixel_values_local") is not None:
            pixels["pixel_values_local"] = encoded["pixel_values_local"]
        return pixels

    def collate(self, pixels: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {key: torch.cat([p[key] for p in pixels]) for key in ("pixel_values", "num_local_patches")}
        tiles = [p["pixel_values_local"] for p in pixels if "pixel_values_local" in p]
        if tiles:
            batch["pixel_values_local"] = torch.cat(tiles)
        return batch

    def encode(
        self,
        model: Any,
        pixels: dict[str, torch.Tensor],
        *,
        chunk: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> BaseModelOutputWithPooling:
        counts = [int(n) for n in pixels["num_local_patches"].tolist()]
        tiles = pixels.get("pixel_values_local")
        features: list[torch.Tensor] = []
        first_tile = 0
        for start in range(0, len(counts), chunk):
            part = counts[start : start + chunk]
            n_tiles = sum(part)
            local = None if n_tiles == 0 or tiles is None else tiles[first_tile : first_tile + n_tiles]
            output = model.model.get_image_features(
                pixel_values=pixels["pixel_values"][start : start + chunk].to(device, dtype),
                pixel_values_local=None if local is None else local.to(device, dtype),
                num_local_patches=part,
                return_dict=True,
            )
            features.extend(output.pooler_output)  # one (tokens, hidden) tensor per image
            first_tile += n_tiles
        # The model concatenates the list itself: images of different token counts cannot be stacked.
        return BaseModelOutputWithPooling(pooler_output=features)

    def image_tokens_per_image(self, processor: Any) -> int:
        return int(processor._get_num_image_tokens(0))

    def kept_tokens(self, task: TaskKind) -> tuple[str, ...]:
        return GROUNDING_TOKENS if task is TaskKind.LAYOUT else ()


FAMILIES: tuple[Family, ...] = (
    DeepseekVL("deepseek-vl-hybrid", "deepseek_vl_hybrid", DeepseekVLHybridForConditionalGeneration),
    DeepseekVL("deepseek-vl", "deepseek_vl", DeepseekVLForConditionalGeneration),
    DeepseekOcr2(),
)
BY_MODEL_TYPE: dict[str, Family] = {family.model_type: family for family in FAMILIES}
BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}


def family_of(model_type: str, where: str = "the checkpoint") -> Family:
    """The family of a checkpoint's `model_type`; InvalidInput listing the ones this worker runs."""
    family = BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise InvalidInput(
            f"{where} holds a {model_type!r} model; this worker runs {', '.join(BY_MODEL_TYPE)}"
        )
    return family


def family_named(name: str) -> Family:
    """The family called `name` (deepseek-vl-hybrid, deepseek-vl, deepseek-ocr2)."""
    family = BY_NAME.get(name)
    if family is None:
        raise InvalidInput(f"unknown model family {name!r}: use one of {', '.join(BY_NAME)}")
    return family
