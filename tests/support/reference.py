"""The reference answer: transformers' own processor and `model.generate`, called directly."""

from __future__ import annotations

import io

import torch
from PIL import Image

from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.prompts import build_prompt


def direct_generate(
    loaded: LoadedModel,
    task: TaskKind,
    images: list[bytes],
    max_new_tokens: int,
    question: str | None = None,
) -> tuple[list[int], str]:
    """Greedy tokens (up to end-of-sequence) and text of model.generate for one request."""
    prompt = build_prompt(task, len(images), question, None)
    processor = loaded.processor
    text = processor.apply_chat_template(prompt.messages, add_generation_prompt=True)
    pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    inputs = processor(text=[text], images=pil, return_tensors="pt")
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    eos = processor.tokenizer.eos_token_id
    if eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    return tokens, processor.tokenizer.decode(tokens, skip_special_tokens=True)
