"""The reference answer: transformers' own processor and `model.generate`, called directly."""

from __future__ import annotations

import io

import torch
from PIL import Image

from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel


def direct_generate(
    loaded: LoadedModel,
    task: TaskKind,
    images: list[bytes],
    max_new_tokens: int,
    question: str | None = None,
) -> tuple[list[int], str]:
    """Greedy tokens (up to end-of-sequence) and text of model.generate for one request, with the prompt
    of the checkpoint's family. Special tokens are dropped from the text, but the ones the family keeps for
    the task (the grounding tags of layout)."""
    prompt = loaded.family.render(loaded.processor, task, len(images), question, None)
    processor = loaded.processor
    pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    inputs = processor(text=[prompt.text], images=pil, return_tensors="pt")
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token_id
    if eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    kept = loaded.family.kept_tokens(task)
    if not kept:
        return tokens, tokenizer.decode(tokens, skip_special_tokens=True)
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    dropped = special - set(tokenizer.convert_tokens_to_ids(list(kept)))
    return tokens, tokenizer.decode([t for t in tokens if t not in dropped], skip_special_tokens=False)
