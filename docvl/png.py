"""A PNG encoder for rendered pages (every row unfiltered, deflated by ISA-L at level 1), and a check that
an uploaded PNG is whole without decoding it.

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
    from isal.isal_zlib import decompressobj as _inflater
except ImportError:  # no wheel for this platform: the standard library's, slower
    from zlib import compress as _fastest
    from zlib import decompressobj as _inflater  # type: ignore[assignment]  # same call, other stub

Deflate = Callable[[memoryview, int], bytes]  # (data, level) -> a zlib stream
DEFLATE: Deflate = _fastest

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour
_FILTER_NONE = 0
_LEVEL = 1  # fast: the pages are stored briefly, not archived
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_FILTERS = 5  # row filter types 0..4


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


class Damaged(ValueError):
    """The PNG is not whole: what is wrong."""


def check(data: bytes) -> None:
    """Raise Damaged unless `data` is a whole PNG: every chunk's CRC right, IEND present, the image data a
    zlib stream that inflates to all the rows the header promises (Pillow would fill missing rows with
    black), each with a valid filter type. What decoding would refuse, found without unfiltering a row or
    building the image: ~1.7 ms for a letter-size page where Pillow's decode takes ~6 (ISA-L inflates).
    An interlaced PNG is not checked this way (NotImplementedError): decode it."""
    if not data.startswith(SIGNATURE):
        raise Damaged("not a PNG")
    header, image_data = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if interlace:
        raise NotImplementedError("an interlaced PNG is checked by decoding it")
    if colour not in _CHANNELS or width == 0 or height == 0:
        raise Damaged("its header is not valid")
    stride = 1 + (width * _CHANNELS[colour] * depth + 7) // 8
    try:  # data past the last row is ignored, as decoders ignore it
        rows = _inflater().decompress(image_data, stride * height)
    except Exception as exc:  # zlib.error, or isal's own: a broken stream either way
        raise Damaged(f"its image data does not inflate ({exc})") from None
    if len(rows) < stride * height:
        raise Damaged(f"its image data holds {len(rows)} bytes of rows where it needs {stride * height}")
    if int(np.frombuffer(rows, dtype=np.uint8)[::stride].max()) >= _FILTERS:
        raise Damaged("a row has an unknown filter type")


def _chunks(data: bytes) -> tuple[bytes, bytes]:
    """(IHDR's data, the IDAT chunks' data joined), every chunk's CRC checked up to IEND."""
    header, at = b"", len(SIGNATURE)
    parts: list[bytes] = []
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind, end = data[at + 4 : at + 8], at + 8 + length
        if end + 4 > len(data):
            break
        if zlib.crc32(data[at + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            raise Damaged(f"its {kind.decode('latin-1')} chunk's CRC is wrong")
        if kind == b"IEND":
            if len(header) != 13:
                raise Damaged("it has no valid IHDR chunk")
            return header, b"".join(parts)
        if kind == b"IHDR":
            header = data[at + 8 : end]
        elif kind == b"IDAT":
            parts.append(data[at + 8 : end])
        at = end + 4
    raise Damaged("it is truncated (no IEND chunk)")
