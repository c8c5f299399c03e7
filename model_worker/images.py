"""Decoding caller images safely: byte and pixel limits, corrupt data, decompression bombs."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from docvl.errors import InvalidInput


def decode_image(data: bytes, *, index: int, max_bytes: int, max_pixels: int) -> Image.Image:
    """The image in `data` as RGB, or an InvalidInput naming image `index` and what is wrong with it."""
    where = f"image {index}"
    if not data:
        raise InvalidInput(f"{where} is empty (0 bytes): send the encoded image file (PNG, JPEG, TIFF, WebP)")
    if len(data) > max_bytes:
        raise InvalidInput(
            f"{where} is {len(data)} bytes, over the limit of {max_bytes} bytes: send a smaller image"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(
                    f"{where} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}: "
                    "downscale it"
                )
            image.load()
            return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{where} has too many pixels ({exc}): downscale it") from None
    except UnidentifiedImageError:
        raise InvalidInput(
            f"{where} is not an image format this worker can decode (PNG, JPEG, TIFF, WebP, ...)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"{where} could not be decoded, it is corrupt or truncated: {exc}") from None
