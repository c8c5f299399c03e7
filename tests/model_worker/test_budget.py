"""The continuous scheduler's token budget, sized from the device's memory when not configured."""

from __future__ import annotations

from pathlib import Path

import torch

from model_worker.budget import (
    CPU_DEFAULT_TOKENS,
    Memory,
    cache_bytes_per_token,
    sized_budget,
    token_budget,
)
from model_worker.checkpoint import LoadedModel
from model_worker.settings import ModelWorkerSettings
from model_worker.sized import sized_config
from model_worker.tiny import build_tokenizer

GiB = 2**30


def test_cache_bytes_per_token_follow_the_published_7b_dimensions() -> None:
    config = sized_config("7b", build_tokenizer())
    # 2 (keys, values) x 30 layers x 32 heads x 128 dims x 2 bytes (bf16)
    assert cache_bytes_per_token(config, torch.bfloat16) == 2 * 30 * 32 * 128 * 2 == 491_520
    assert cache_bytes_per_token(config, torch.float32) == 983_040


def test_grouped_query_attention_counts_only_the_key_value_heads() -> None:
    config = sized_config("7b", build_tokenizer())
    config.text_config.num_key_value_heads = 8  # 4 query heads share each key/value head
    assert cache_bytes_per_token(config, torch.bfloat16) == 491_520 // 4


def test_an_h100_with_the_7b_model_gets_tens_of_thousands_of_tokens() -> None:
    per_token = cache_bytes_per_token(sized_config("7b", build_tokenizer()), torch.bfloat16)
    budget = sized_budget(Memory(total=80 * GiB, allocated=15 * GiB), 0.9, per_token)
    # (80 x 0.9 - 15) GiB, four fifths of it for the cache, at 480 KiB a token
    assert budget == int((72 - 15) * GiB * 0.8 // per_token)
    assert 90_000 < budget < 110_000
    assert sized_budget(Memory(total=80 * GiB, allocated=15 * GiB), 0.5, per_token) < budget


def test_a_card_too_small_still_admits_one_token_and_a_setting_wins(small_model: LoadedModel) -> None:
    assert sized_budget(Memory(total=16 * GiB, allocated=15 * GiB), 0.9, 491_520) == 1
    model = small_model.model
    assert token_budget(1234, 0.9, model.config, model.dtype, torch.device("cpu")) == 1234
    assert token_budget(0, 0.9, model.config, model.dtype, torch.device("cpu")) == CPU_DEFAULT_TOKENS


def test_torch_gets_the_cores_preprocessing_leaves_unless_told() -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), preprocess_threads=2)
    assert settings.torch_threads(2) == 1  # never 0
    assert settings.torch_threads(16) == 14
    assert ModelWorkerSettings(model_dir=Path("unused"), preprocess_processes=6).torch_threads(16) == 10
    assert ModelWorkerSettings(model_dir=Path("unused"), cpu_threads=3).torch_threads(2) == 3
