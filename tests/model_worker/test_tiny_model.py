"""The tiny checkpoint: real DeepSeek-VL classes, saved and loaded through the production path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from transformers import DeepseekVLHybridForConditionalGeneration, DeepseekVLHybridProcessor

from docvl.errors import InvalidInput
from docvl.inference.types import GenerationParams, InferenceRequest
from docvl.tasks import TaskKind
from model_worker.checkpoint import fingerprint, load_checkpoint
from model_worker.decoding import RowControl
from tests.conftest import make_engine
from tests.support.helpers import ROOT, png
from tests.support.reference import direct_generate


@pytest.mark.slow
def test_full_size_tiny_model_has_576_image_tokens_and_matches_generate(tiny_full_dir: Path) -> None:
    loaded = load_checkpoint(tiny_full_dir, device="cpu")
    assert isinstance(loaded.model, DeepseekVLHybridForConditionalGeneration)
    assert isinstance(loaded.processor, DeepseekVLHybridProcessor)
    assert loaded.description.image_tokens_per_image == 576
    assert loaded.model.config.vision_config.image_size == 384
    assert loaded.model.config.high_res_vision_config.image_size == 1024
    engine = make_engine(loaded)
    request = InferenceRequest(TaskKind.OCR, [png(1, (300, 200))], params=GenerationParams(8))
    prepared = engine.prepare(request)
    assert prepared.pixels["pixel_values"].shape == (1, 3, 384, 384)
    assert prepared.pixels["high_res_pixel_values"].shape == (1, 3, 1024, 1024)
    got = engine.generate([prepared], [RowControl(prepared.params)])[0]
    tokens, text = direct_generate(loaded, TaskKind.OCR, list(request.images), 8)
    assert (got.token_ids, got.text) == (tokens, text)
    assert got.image_tokens == 576
    assert (
        prepared.input_ids == loaded.processor.tokenizer.convert_tokens_to_ids("<image_placeholder>")
    ).sum() == 576


def test_prompt_follows_the_deepseek_vl_chat_format(tiny_small_dir: Path) -> None:
    loaded = load_checkpoint(tiny_small_dir, device="cpu")
    text = loaded.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
    )
    assert text.endswith("\n\nUser: <image_placeholder>Hi\n\nAssistant:")
    ids = loaded.processor(text=[text], images=[Image.new("RGB", (8, 8))])["input_ids"][0]
    tokenizer = loaded.processor.tokenizer
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.padding_side == "left"


def test_build_tiny_cli_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "docvl", "model", "build-tiny", str(tmp_path / name), "--small"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    assert load_checkpoint(tmp_path / "a").description.random_weights


def test_loading_something_else_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="build-tiny"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(InvalidInput, match="deepseek_vl_hybrid"):
        load_checkpoint(tmp_path)
