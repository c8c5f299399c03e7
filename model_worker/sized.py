"""Real-size DeepSeek-VL checkpoints with random weights, built from the published config values offline.

`build_random(directory, size="1.3b" | "7b")` writes a checkpoint with the dimensions of
deepseek-community/deepseek-vl-1.3b-chat (`deepseek_vl`: SigLIP-L 384 px + a 1.3B LLaMA-style decoder) or
deepseek-vl-7b-chat (`deepseek_vl_hybrid`: SigLIP-L 384 px + SAM-B 1024 px + a 7B decoder), loadable by
checkpoint.load_checkpoint (`docvl model-worker --model DIR`). Random weights cost the same compute as
real ones, so these measure the real model's speed and memory; their text is junk.

The tokenizer is the tiny model's offline byte-level BPE (about 550 tokens); the embedding and the output
layer have the published 102,400 rows anyway, so every id the model can emit is valid (ids the tokenizer
lacks decode to nothing).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    DeepseekVLConfig,
    DeepseekVLForConditionalGeneration,
    DeepseekVLHybridConfig,
    DeepseekVLHybridForConditionalGeneration,
    DeepseekVLHybridProcessor,
    DeepseekVLProcessor,
    PreTrainedTokenizerFast,
)
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.models.deepseek_vl import DeepseekVLImageProcessorPil
from transformers.models.deepseek_vl_hybrid import DeepseekVLHybridImageProcessorPil

from model_worker.checkpoint import METADATA_FILE
from model_worker.tiny import CHAT_TEMPLATE, IMAGE, build_tokenizer

Size = Literal["1.3b", "7b"]
SIZES: tuple[Size, ...] = ("1.3b", "7b")
VOCAB_SIZE = 102_400
MODEL_IDS: dict[str, str] = {
    "1.3b": "docvl/random-deepseek-vl-1.3b-chat",
    "7b": "docvl/random-deepseek-vl-7b-chat",
}

# The LLaMA-style decoders of deepseek-vl-1.3b-chat and deepseek-vl-7b-chat (DeepSeek-LLM 1.3B / 7B).
TEXT: dict[str, dict[str, Any]] = {
    "1.3b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
    },
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 30,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
}
TEXT_COMMON: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
# SigLIP-L/16 at 384 px (siglip-large-patch16-384), without its pooling head: 24 x 24 = 576 image tokens.
SIGLIP_L_384: dict[str, Any] = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 16,
    "vision_use_head": False,
}
# SAM ViT-B at 1024 px (transformers' SamVisionConfig defaults, written out).
SAM_B_1024: dict[str, Any] = {
    "model_type": "sam_vision_model",
    "hidden_size": 768,
    "mlp_dim": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "global_attn_indexes": [2, 5, 8, 11],
    "output_channels": 256,
    "image_size": 1024,
    "patch_size": 16,
    "window_size": 14,
}


def sized_config(size: Size, tokenizer: PreTrainedTokenizerFast) -> DeepseekVLConfig | DeepseekVLHybridConfig:
    """The published dimensions; special-token ids are the offline tokenizer's."""
    if size not in TEXT:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    text = {
        **TEXT_COMMON,
        **TEXT[size],
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)
    if size == "1.3b":
        return DeepseekVLConfig(
            text_config=text,
            vision_config=dict(SIGLIP_L_384),
            image_token_id=image_token_id,
            tie_word_embeddings=False,
        )
    return DeepseekVLHybridConfig(
        text_config=text,
        vision_config=dict(SIGLIP_L_384),
        high_res_vision_config=dict(SAM_B_1024),
        image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


def meta_model(size: Size) -> Any:
    """The model on the meta device: its shapes and parameter count, no memory for weights."""
    config = sized_config(size, build_tokenizer())
    model_cls = (
        DeepseekVLForConditionalGeneration if size == "1.3b" else DeepseekVLHybridForConditionalGeneration
    )
    with torch.device("meta"):
        model = model_cls(config)
    return model


def _processor(
    size: Size, config: DeepseekVLConfig | DeepseekVLHybridConfig, tokenizer: PreTrainedTokenizerFast
) -> DeepseekVLProcessor | DeepseekVLHybridProcessor:
    low = config.vision_config.image_size
    common: dict[str, Any] = {
        "size": {"height": low, "width": low},
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
        "resample": PILImageResampling.BILINEAR,
    }
    tokens = (low // config.vision_config.patch_size) ** 2
    if size == "1.3b":
        return DeepseekVLProcessor(
            image_processor=DeepseekVLImageProcessorPil(**common),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
            num_image_tokens=tokens,
        )
    assert isinstance(config, DeepseekVLHybridConfig)
    high = config.high_res_vision_config.image_size
    return DeepseekVLHybridProcessor(
        image_processor=DeepseekVLHybridImageProcessorPil(
            **common, high_res_size={"height": high, "width": high}
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=tokens,
    )


def build_random(
    directory: Path,
    size: Size = "1.3b",
    *,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    ignore_eos: bool = False,
    device: str = "cpu",
) -> Path:
    """Write a real-size random checkpoint to `directory` (weights stored in `dtype`) and free it again.

    ignore_eos: the checkpoint's generation config names an end token the model can never emit (id
    102400, one past the vocabulary), so every answer runs to its max_new_tokens, through either scheduler:
    for benchmarks that need answers of a given length. device: where the weights are drawn ("cuda" is
    much faster for the 7B).
    """
    tokenizer = build_tokenizer()
    config = sized_config(size, tokenizer)
    model_cls = (
        DeepseekVLForConditionalGeneration if size == "1.3b" else DeepseekVLHybridForConditionalGeneration
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in the stored dtype: half the memory for bf16
    try:
        with torch.device(device):
            model = model_cls(config).eval()
    finally:
        torch.set_default_dtype(previous)
    if size == "7b":
        with torch.no_grad():
            model.model.high_res_vision_alpha.fill_(0.5)
    if ignore_eos:
        model.generation_config.eos_token_id = VOCAB_SIZE
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    del model
    gc.collect()
    _processor(size, config, tokenizer).save_pretrained(directory)
    metadata = {"model_id": MODEL_IDS[size], "random_weights": True, "seed": seed, "ignore_eos": ignore_eos}
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return directory


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
