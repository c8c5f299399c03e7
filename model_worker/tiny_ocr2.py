"""A tiny, randomly initialised DeepSeek-OCR-2 checkpoint of the real transformers classes.

Every part of the production model is there, only small: the SAM encoder, the DeepEncoder V2 (a Qwen2-style
encoder whose learnt queries read SAM's features), the projector, the view separator and a DeepSeek MoE
decoder (one dense layer, one layer of 4 routed experts, 2 per token, plus a shared one). Its processor is
the real one and agrees with the model on the image tokens: a page's global view is 256 tokens, each local
tile 144, plus one separator, as in the published model. With `small`, images are 128 px (global view) and
96 px (tiles) with 2 px SAM patches instead of 1024 px and 768 px with 16 px patches: SAM sees the same
64 x 64 grid either way (its learnt queries need it), so `small` only saves pixels. Its weights are random, so
its text is junk; its tokenizer has DeepSeek's grounding tokens, each one token, so a test can steer it into
a grounded answer (tests/support/scripted.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import (
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

from model_worker.checkpoint import METADATA_FILE
from model_worker.families import GROUNDING_TOKENS
from model_worker.tiny import build_tokenizer

TINY_OCR2_MODEL_ID = "docvl/tiny-random-deepseek-ocr2"
IMAGE = "<image>"
GROUNDING = "<|grounding|>"
_CORPUS = [
    "<image>\nFree OCR.",
    "<image>\n<|grounding|>Convert the document to markdown.",
    "<|ref|>title<|/ref|><|det|>[[110, 52, 880, 96]]<|/det|>\n# Annual report 2024\n\n"
    "<|ref|>text<|/ref|><|det|>[[110, 120, 880, 310]]<|/det|>\nRevenue grew by 12 percent in 2024.\n\n"
    "<|ref|>table<|/ref|><|det|>[[110, 330, 880, 560]]<|/det|>\n"
    "<table><tr><td>year</td><td>revenue</td></tr><tr><td>2024</td><td>1,200</td></tr></table>\n\n"
    "<|ref|>image<|/ref|><|det|>[[120, 600, 500, 900]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[120, 910, 500, 940]]<|/det|>\nFigure 1: revenue by year.",
]

# (global view, tile, SAM patch) in pixels. Either way SAM sees a 64 x 64 grid on the global view (16 x 16
# after its two stride-2 convolutions: the 256 queries of the 1024 px resolution) and 48 x 48 on a tile
# (12 x 12: the 144 queries of the 768 px one); the processor counts tokens the same way.
FULL = (1024, 768, 16)
SMALL = (128, 96, 2)
DOWNSAMPLE = 4  # SAM's two stride-2 convolutions


def build_ocr2_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny byte-level BPE with DeepSeek-OCR-2's image token and grounding tokens."""
    return build_tokenizer(
        image_token=IMAGE, extra_special=(GROUNDING, *GROUNDING_TOKENS), extra_corpus=_CORPUS
    )


def tiny_ocr2_config(tokenizer: PreTrainedTokenizerFast, *, small: bool) -> DeepseekOcr2Config:
    image, _, patch = SMALL if small else FULL
    return DeepseekOcr2Config(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "mlp_layer_types": ["dense", "sparse"],
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "n_shared_experts": 1,
            "moe_intermediate_size": 32,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 8192,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "sam_config": {
                "hidden_size": 16,
                "output_channels": 16,
                "mlp_dim": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 1,
                "global_attn_indexes": [1],
                "window_size": 8,
                "image_size": image,
                "patch_size": patch,
                "downsample_channels": [16, 32],  # the last is the encoder's width
            },
            "encoder_config": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "max_position_embeddings": 1024,
            },
        },
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
    )


def _randomise(model: DeepseekOcr2ForConditionalGeneration, seed: int) -> None:
    """Weights large enough that the text depends on the image and varies token to token."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 1.5 / math.sqrt(param.shape[-1]), generator=generator)


def build_tiny_ocr2(out_dir: Path, *, small: bool = False, seed: int = 0) -> Path:
    """Write the tiny DeepSeek-OCR-2 to `out_dir` (save_pretrained); checkpoint.load_checkpoint loads it."""
    tokenizer = build_ocr2_tokenizer()
    config = tiny_ocr2_config(tokenizer, small=small)
    torch.manual_seed(seed)
    model = DeepseekOcr2ForConditionalGeneration(config).eval()
    _randomise(model, seed)
    image, tile, patch = SMALL if small else FULL
    processor = DeepseekOcr2Processor(
        image_processor=DeepseekOcr2ImageProcessorPil(
            size={"height": image, "width": image}, tile_size=tile, min_patches=2, max_patches=6
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        downsample_ratio=DOWNSAMPLE,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    model_id = TINY_OCR2_MODEL_ID + ("-small" if small else "")
    metadata = {"model_id": model_id, "random_weights": True, "seed": seed}
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir
