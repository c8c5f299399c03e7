"""Comparing a rendered picture with the input it should reproduce: SSIM, greyscale, at the input's size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def size_of(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.width, image.height


def _grey(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L")
        if size is not None and grey.size != size:
            grey = grey.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(grey, dtype=np.uint8)


def similarity(reference: bytes, rendered: bytes) -> float:
    """SSIM of `rendered` against `reference` (both encoded images), the rendering resized to the
    reference's size; clipped to 0-1 (SSIM can be negative for anti-correlated pictures)."""
    from skimage.metrics import structural_similarity  # imported once a page is verified

    ref = _grey(reference)
    out = _grey(rendered, (ref.shape[1], ref.shape[0]))
    if min(ref.shape) < 7:  # SSIM's window needs 7 pixels a side
        return float(np.mean(ref == out))
    score = structural_similarity(ref, out, data_range=255)  # type: ignore[no-untyped-call]
    return round(min(max(float(score), 0.0), 1.0), 4)
