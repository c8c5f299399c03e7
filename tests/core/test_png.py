"""The page-image PNG encoder: standard files, read back pixel for pixel."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from docvl import png
from tests.platform.test_corpus_platform import CORPUS  # the corpus copy in tests/


def decoded(data: bytes) -> np.ndarray:
    check = Image.open(io.BytesIO(data))
    check.verify()  # every chunk's CRC and the stream's structure
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 53, 3), (64, 48), (1, 300)])
def test_arrays_come_back_pixel_for_pixel(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(png.encode(pixels)))
    assert image.mode == ("RGB" if len(shape) == 3 else "L")
    assert np.array_equal(decoded(png.encode(pixels)), pixels)


def test_a_strided_view_is_encoded_as_the_pixels_it_shows() -> None:
    wide = np.random.default_rng(1).integers(0, 256, (20, 40, 4), dtype=np.uint8)
    view = wide[::2, 5:25, :3]  # not contiguous: every other row, a window, no alpha
    assert np.array_equal(decoded(png.encode(view)), view)


def test_images_in_other_modes_are_stored_as_rgb() -> None:
    rgba = Image.new("RGBA", (8, 6), (10, 20, 30, 255))
    assert np.array_equal(decoded(png.encode(rgba)), np.asarray(rgba.convert("RGB")))
    grey = Image.new("L", (8, 6), 77)
    assert np.array_equal(decoded(png.encode(grey)), np.asarray(grey))


def test_rows_are_unfiltered_and_the_stream_is_one_zlib_stream() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = png.encode(pixels)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    rows = zlib.decompress(data[start : start + length])
    assert rows == b"\x00" + pixels[0].tobytes() + b"\x00" + pixels[1].tobytes()


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros(5, np.uint8)]
)
def test_other_pixel_layouts_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="8-bit greyscale or RGB"):
        png.encode(bad)


def test_a_rendered_page_matches_pillows_encoding_of_it() -> None:
    pdf = pdfium.PdfDocument(str(CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"))
    try:
        page = pdf[3]
        pixels = page.render(scale=1.0, rev_byteorder=True).to_numpy()
        reference = io.BytesIO()
        page.render(scale=1.0).to_pil().convert("RGB").save(reference, format="PNG", compress_level=1)
        page.close()
    finally:
        pdf.close()
    assert np.array_equal(decoded(png.encode(pixels)), decoded(reference.getvalue()))


def test_without_isal_the_standard_zlib_writes_the_same_pixels() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    assert np.array_equal(decoded(png.encode(pixels, deflate=zlib.compress)), pixels)
