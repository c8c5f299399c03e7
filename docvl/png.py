"""A PNG encoder for rendered pages: every row unfiltered, deflated by ISA-L at level 1.

Pillow's encoder tries the five PNG row filters on every row and keeps the best; on rendered document pages
(large flat areas, sharp text) that search costs more than the compression and wins little. Measured on 50
rendered pages of a real thesis (docs/benchmarks.md, "Page images"): Pillow at `compress_level=1` took
23 ms a page for 102 KB; unfiltered rows with zlib at level 1, 8.4 ms for 95 KB; with ISA-L's deflate
(python-isal) at level 1, 1.5 ms for 111 KB. Where ISA-L is not installed, zlib is used. The output is a
standard 8-bit greyscale or RGB PNG (ISO/IEC 15948), read back pixel for pixel by any decoder.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

try:
    from isal.isal_zlib import compress as _fastest
except ImportError:  # no wheel for this platform: the standard library's, slower
    from zlib import compress as _fastest

Deflate = Callable[[memoryview, int], bytes]  # (data, level) -> a zlib stream
DEFLATE: Deflate = _fastest

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour
_FILTER_NONE = 0
_LEVEL = 1  # fast: the pages are stored briefly, not archived


def encode(pixels: np.ndarray | Image.Image, *, deflate: Deflate = DEFLATE) -> bytes:
    """`pixels`: an RGB or greyscale ("L") image, or an 8-bit array of shape (height, width[, 3])."""
    if isinstance(pixels, Image.Image) and pixels.mode not in ("RGB", "L"):
        pixels = pixels.convert("RGB")
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected 8-bit greyscale or RGB pixels, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else 3
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = _FILTER_NONE
    rows[:, 1:] = array.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", deflate(rows.data, _LEVEL)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
