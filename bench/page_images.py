"""What a stored page image costs: encoding it at render, its size, and decoding it in the model worker.

Renders the first 50 pages of a real 117-page thesis from tests/corpus as the job runner does (110 dpi, at
most 1024 px on the longer side), then encodes every page with each candidate and decodes it back as the
model worker does (PIL, to RGB). CPU time of this process, per page.

    .venv/bin/python bench/page_images.py [--pages 50]

Writes the "Page images" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from docvl import png  # noqa: E402

HEADING = "### Page images"
SOURCE = ROOT / "tests" / "corpus" / "pdf-samples" / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"
Encoder = Callable[[np.ndarray], bytes]
T = TypeVar("T")
R = TypeVar("R")


def rendered(count: int) -> list[np.ndarray]:
    pdf = pdfium.PdfDocument(str(SOURCE))
    try:
        pages = []
        for index in range(count):
            page = pdf[index]
            width, height = page.get_size()
            scale = min(110 / 72, 1024 / max(width, height))
            pages.append(np.array(page.render(scale=scale, rev_byteorder=True).to_numpy()))
            page.close()
        return pages
    finally:
        pdf.close()


def pillow(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def unfiltered_zlib(pixels: np.ndarray) -> bytes:
    return png.encode(pixels, deflate=zlib.compress)


CANDIDATES: dict[str, Encoder] = {
    "Pillow, compress_level=1 (adaptive row filters, zlib)": pillow,
    "unfiltered rows, zlib level 1": unfiltered_zlib,
    "unfiltered rows, ISA-L level 1 (docvl.png, used)": png.encode,
}


def timed(work: Callable[[T], R], items: list[T]) -> tuple[float, list[R]]:
    """CPU milliseconds per item of `work` over `items`, and its results."""
    started = time.process_time()
    results = [work(item) for item in items]
    return (time.process_time() - started) * 1000 / len(items), results


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    pages = rendered(args.pages)
    rows = []
    for name, encode in CANDIDATES.items():
        encode(pages[0])  # warm
        encode_ms, encoded = timed(encode, pages)
        decode_ms, decoded = timed(decode, encoded)
        if not all(np.array_equal(d, p) for d, p in zip(decoded, pages, strict=True)):
            raise SystemExit(f"{name}: a page did not decode to its pixels")
        size_kb = sum(len(d) for d in encoded) / len(encoded) / 1024
        rows.append(f"| {name} | {encode_ms:.1f} | {size_kb:.0f} | {decode_ms:.1f} |")
    section = "\n".join(
        [
            f"{HEADING}: encoding rendered pages",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} by `bench/page_images.py` in one run on: {machine()}.",
            "",
            f"The first {len(pages)} pages of `009-pdflatex-geotopo` (shared corpus), rendered as the job "
            f"runner does ({pages[0].shape[1]}x{pages[0].shape[0]} px for a page), encoded by each "
            "candidate, then decoded to RGB as the model worker does; CPU milliseconds per page in one "
            "process. Every candidate decodes back to the same pixels (checked).",
            "",
            "| encoder | encode ms/page | KB/page | decode ms/page |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_section(args.out, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
