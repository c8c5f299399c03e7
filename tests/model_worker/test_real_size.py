"""The real-size builder's configurations have the published dimensions (meta device: no weights)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from model_worker.sized import VOCAB_SIZE, meta_model, parameter_count

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_1_3b_has_the_published_dimensions() -> None:
    model = meta_model("1.3b")
    config = model.config
    assert config.model_type == "deepseek_vl"
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (2048, 24, 16)
    assert (text.intermediate_size, text.vocab_size) == (5632, VOCAB_SIZE)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (
        1024,
        24,
        384,
        16,
    )
    assert not hasattr(config, "high_res_vision_config")
    assert next(model.parameters()).device.type == "meta"
    assert model.get_output_embeddings().weight.shape == (VOCAB_SIZE, 2048)
    assert 1.9e9 < parameter_count(model) < 2.0e9  # the Hub lists deepseek-vl-1.3b-chat at 1.98 B


def test_7b_has_the_published_dimensions() -> None:
    model = meta_model("7b")
    config = model.config
    assert config.model_type == "deepseek_vl_hybrid"
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (4096, 30, 32)
    assert (text.intermediate_size, text.vocab_size) == (11008, VOCAB_SIZE)
    assert config.vision_config.image_size == 384
    sam = config.high_res_vision_config
    assert (sam.hidden_size, sam.num_hidden_layers, sam.image_size, sam.global_attn_indexes) == (
        768,
        12,
        1024,
        [2, 5, 8, 11],
    )
    assert next(model.parameters()).device.type == "meta"
    assert 7.2e9 < parameter_count(model) < 7.4e9  # the Hub lists deepseek-vl-7b-chat at 7.3 B


def test_gpu_bench_lengths_and_arguments() -> None:
    sys.path.insert(0, str(ROOT))
    gpu = runpy.run_path(str(ROOT / "bench" / "gpu.py"), run_name="bench_gpu")
    lengths = gpu["draw_lengths"](2000, seed=1, median=500, cap=2048)
    assert lengths == gpu["draw_lengths"](2000, seed=1, median=500, cap=2048)
    assert min(lengths) >= 1
    assert max(lengths) <= 2048
    assert 450 < sorted(lengths)[1000] < 550
    args = gpu["parse_args"](["--concurrency", "1,64", "--schedulers", "continuous"])
    assert args.concurrency == [1, 64]
    assert args.schedulers == ["continuous"]
    with pytest.raises(SystemExit):
        gpu["parse_args"](["--schedulers", "fifo"])
