"""Loading a checkpoint from a local directory: the one production loading path, for every model family
(DeepSeek-VL, DeepSeek-VL hybrid, DeepSeek-OCR-2; model_worker/families.py), told apart by the config's
model_type."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoProcessor

from docvl.errors import InvalidInput
from docvl.inference.types import ModelDescription
from model_worker.families import Family, family_of

log = logging.getLogger(__name__)
# Written by `docvl model build-tiny` beside the checkpoint: its name and that its weights are random.
METADATA_FILE = "docvl-model.json"
_FINGERPRINT_SAMPLE = 1024 * 1024


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    description: ModelDescription
    family: Family

    @property
    def device(self) -> torch.device:
        return torch.device(self.description.device)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device cuda was asked for but torch sees no CUDA device")
    return torch.device(setting)


def fingerprint(model_dir: Path) -> str:
    """A revision for a checkpoint directory: small files whole, weight files by size, head and tail."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode())
        size = path.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with path.open("rb") as fh:
            if size <= 2 * _FINGERPRINT_SAMPLE:
                digest.update(fh.read())
            else:
                digest.update(fh.read(_FINGERPRINT_SAMPLE))
                fh.seek(-_FINGERPRINT_SAMPLE, 2)
                digest.update(fh.read())
    return "sha256:" + digest.hexdigest()[:16]


def load_checkpoint(
    model_dir: Path, *, device: str = "auto", model_id: str | None = None, revision: str | None = None
) -> LoadedModel:
    """Model and processor from `model_dir`, on the device, bf16 on CUDA and fp32 on the CPU, in eval mode."""
    if not (model_dir / "config.json").is_file():
        raise InvalidInput(
            f"{model_dir} is not a transformers checkpoint (no config.json): point it at a DeepSeek-VL or "
            "DeepSeek-OCR-2 checkpoint directory, or build the test model with `docvl model build-tiny DIR`"
        )
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    family = family_of(config.model_type, str(model_dir))
    target = resolve_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    model = (
        family.model_class.from_pretrained(model_dir, dtype=dtype, local_files_only=True).to(target).eval()
    )
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)

    metadata: dict[str, Any] = {}
    if (model_dir / METADATA_FILE).is_file():
        metadata = json.loads((model_dir / METADATA_FILE).read_text())
    description = ModelDescription(
        model_id=model_id or metadata.get("model_id") or model_dir.resolve().name,
        model_revision=revision or fingerprint(model_dir),
        model_type=config.model_type,
        device=str(target),
        dtype=str(dtype).removeprefix("torch."),
        image_tokens_per_image=family.image_tokens_per_image(processor),
        random_weights=bool(metadata.get("random_weights", False)),
        family=family.name,
        tasks=family.tasks,
        prompt_template_version=family.prompt_version,
    )
    log.info(
        "loaded %s (%s, %s) on %s as %s",
        description.model_id,
        family.name,
        description.model_revision,
        target,
        dtype,
    )
    if description.random_weights:
        log.warning("%s has RANDOM weights: its text is junk; for tests and demos only", description.model_id)
    return LoadedModel(model=model, processor=processor, description=description, family=family)
