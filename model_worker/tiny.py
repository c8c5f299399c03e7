"""A tiny, randomly initialised DeepSeek-VL hybrid checkpoint of the real transformers classes.

It exercises every code path of the production model (SigLIP + SAM encoders, aligner, LLaMA decoder,
processor, chat template) in seconds on a CPU. Its weights are random, so its text is junk.
`build_tiny(..., family="deepseek-ocr2")` builds a tiny DeepSeek-OCR-2 instead (model_worker/tiny_ocr2.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    DeepseekVLHybridConfig,
    DeepseekVLHybridForConditionalGeneration,
    DeepseekVLHybridProcessor,
    PreTrainedTokenizerFast,
)
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.models.deepseek_vl_hybrid import DeepseekVLHybridImageProcessorPil

from model_worker.checkpoint import METADATA_FILE

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
IMAGE = "<image_placeholder>"
SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that "
    "the user provides, and assist the user with a variety of tasks using natural language."
)
# DeepSeek-VL chat format: system prompt, then "User: <image_placeholder>{text}\n\nAssistant:".
CHAT_TEMPLATE = (
    "{{ system_prompt | default('" + SYSTEM_PROMPT + "') }}{{ '\\n\\n' }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}User: {% else -%}Assistant: {% endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image_placeholder>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{ '\\n\\n' }}{%- else -%}{{ eos_token }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)
TINY_MODEL_ID = "docvl/tiny-random-deepseek-vl-hybrid"
TinyFamily = Literal["deepseek-vl-hybrid", "deepseek-ocr2"]
TINY_FAMILIES: tuple[TinyFamily, ...] = ("deepseek-vl-hybrid", "deepseek-ocr2")

_CORPUS = [
    SYSTEM_PROMPT,
    "User: Convert the document page in the image to Markdown.\n\nAssistant:",
    "# Annual report\n\n| year | revenue | profit |\n|---|---|---|\n| 2024 | 1,200 | 300 |\n",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])\nplt.show()\n",
    "<!DOCTYPE html><html><head><style>body { margin: 0 }</style></head><body><h1>Hello</h1></body></html>",
    "What is the total in the table? The total is 42. Answer the question about the image.",
    "The quick brown fox jumps over the lazy dog. Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
]


def build_tokenizer(
    vocab_size: int = 1024,
    *,
    image_token: str = IMAGE,
    extra_special: Sequence[str] = (),
    extra_corpus: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained here, offline, with DeepSeek's special tokens (begin, end, the image
    placeholder, then `extra_special`: each one token); pads on the left."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, image_token, *extra_special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*_CORPUS, *extra_corpus] * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        extra_special_tokens={"image_token": image_token},
        padding_side="left",
    )


def tiny_config(tokenizer: PreTrainedTokenizerFast, *, small: bool) -> DeepseekVLHybridConfig:
    # Full size: SigLIP at 384 px and SAM at 1024 px, 24x24 = 576 image tokens, as in deepseek-vl-7b-chat.
    # Small: 64 px and 128 px, 16 image tokens, for fast tests.
    low, high = (64, 128) if small else (384, 1024)
    return DeepseekVLHybridConfig(
        text_config={
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 8192,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "image_size": low,
            "patch_size": 16,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "vision_use_head": False,
        },
        high_res_vision_config={
            "model_type": "sam_vision_model",
            "hidden_size": 16,
            "output_channels": 16,
            "mlp_dim": 32,
            "image_size": high,
            "patch_size": 16,
            "num_attention_heads": 1,
            "num_hidden_layers": 2,
            "global_attn_indexes": [1],
            "window_size": 4 if small else 16,
        },
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
    )


def _randomise(model: DeepseekVLHybridForConditionalGeneration, seed: int) -> None:
    """Weights large enough that the text depends on the image and varies token to token."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 1.5 / math.sqrt(param.shape[-1]), generator=generator)
        model.model.high_res_vision_alpha.fill_(0.5)


def build_tiny(
    out_dir: Path, *, small: bool = False, seed: int = 0, family: TinyFamily = "deepseek-vl-hybrid"
) -> Path:
    """Write the tiny checkpoint of `family` to `out_dir` with save_pretrained; checkpoint.load_checkpoint
    loads it."""
    if family == "deepseek-ocr2":
        from model_worker.tiny_ocr2 import build_tiny_ocr2

        return build_tiny_ocr2(out_dir, small=small, seed=seed)
    if family != "deepseek-vl-hybrid":
        raise ValueError(f"no tiny model of family {family!r}: use one of {', '.join(TINY_FAMILIES)}")
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, small=small)
    torch.manual_seed(seed)
    model = DeepseekVLHybridForConditionalGeneration(config).eval()
    _randomise(model, seed)
    low = config.vision_config.image_size
    high = config.high_res_vision_config.image_size
    image_processor = DeepseekVLHybridImageProcessorPil(
        size={"height": low, "width": low},
        high_res_size={"height": high, "width": high},
        image_mean=IMAGENET_STANDARD_MEAN,
        image_std=IMAGENET_STANDARD_STD,
        resample=PILImageResampling.BILINEAR,
    )
    processor = DeepseekVLHybridProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=(low // config.vision_config.patch_size) ** 2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    metadata = {"model_id": TINY_MODEL_ID + ("-small" if small else ""), "random_weights": True, "seed": seed}
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir
