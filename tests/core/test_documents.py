"""Documents to page images, on real PDFs from many producers (tests/corpus, CC-BY-SA-4.0)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from docvl import png
from docvl.documents import (
    CorruptDocument,
    EmptyDocument,
    EncryptedDocument,
    TooManyPages,
    UnsupportedDocument,
    WrongPassword,
    decrypt_pdf,
    open_document,
    sniff_media_type,
)
from docvl.page_ranges import PageRanges, PagesOutOfRange
from tests.support.helpers import ROOT

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"  # a copy of ../shared/corpus, with its LICENSE
FILES = json.loads((CORPUS / "files.json").read_text())["data"]
# Refused with the reason: PDFium (and pypdf) cannot parse this file's page tree ("Data format error").
UNREADABLE = {"017-unreadable-meta-data/unreadablemetadata.pdf"}
ENCRYPTED = CORPUS / "005-libreoffice-writer-password/libreoffice-writer-password.pdf"
PASSWORD = "openpassword"  # the corpus's README gives it


@pytest.mark.parametrize("entry", FILES, ids=[f["path"] for f in FILES])
def test_every_corpus_pdf_renders_its_pages_or_is_refused_clearly(
    entry: dict[str, object], tmp_path: Path
) -> None:
    path = CORPUS / str(entry["path"])
    if entry["path"] in UNREADABLE:
        with (
            pytest.raises(CorruptDocument, match="cannot be read; it is damaged"),
            open_document(path, max_pages=500),
        ):
            pass
        return
    if entry["encrypted"]:  # refused without its password; decrypted with it, as intake does
        with (
            pytest.raises(EncryptedDocument, match="encrypted: send its password"),
            open_document(path, max_pages=5),
        ):
            pass
        assert decrypt_pdf(path, PASSWORD, tmp_path / "decrypted.pdf")
        path = tmp_path / "decrypted.pdf"
    with open_document(path, max_pages=500, dpi=36) as document:
        assert document.page_count == entry["pages"]
        first = next(document.pages())
    image = Image.open(io.BytesIO(first.png))
    assert image.format == "PNG"
    assert (image.width, image.height) == (first.width, first.height)
    assert first.width >= 1
    assert first.height >= 1


def test_the_encrypted_pdf_opens_with_its_password_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    with (
        pytest.raises(WrongPassword, match="password is wrong"),
        open_document(ENCRYPTED, max_pages=5, password="x"),
    ):
        pass
    with pytest.raises(WrongPassword, match="password is wrong"):
        decrypt_pdf(ENCRYPTED, "not it", tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()
    with open_document(ENCRYPTED, max_pages=5, password=PASSWORD) as document:
        assert document.page_count == 1
    plain = CORPUS / "004-pdflatex-4-pages/pdflatex-4-pages.pdf"
    assert not decrypt_pdf(plain, "any", tmp_path / "plain.pdf")  # not encrypted: used as it is
    assert not (tmp_path / "plain.pdf").exists()
    decrypted = tmp_path / "decrypted.pdf"
    assert decrypt_pdf(ENCRYPTED, PASSWORD, decrypted)
    assert PASSWORD.encode() not in decrypted.read_bytes()
    with open_document(decrypted, max_pages=5) as document:  # no password needed any more
        assert next(document.pages()).width > 0


def test_a_page_range_renders_only_its_pages_with_their_own_indices() -> None:
    path = CORPUS / "004-pdflatex-4-pages/pdflatex-4-pages.pdf"
    with open_document(path, max_pages=10, dpi=36, pages=PageRanges.parse("2,4-")) as document:
        assert document.page_count == 4
        assert document.chosen == [1, 3]
        assert [page.index for page in document.pages()] == [1, 3]
        assert [page.index for page in document.pages(skip=frozenset({1}))] == [3]
    with (
        pytest.raises(PagesOutOfRange, match="which has 4 pages"),
        open_document(path, max_pages=10, pages=PageRanges.parse("3-5")),
    ):
        pass
    # The page limit applies to the pages chosen, not to the document.
    with open_document(path, max_pages=2, pages=PageRanges.parse("1-2")) as document:
        assert document.chosen == [0, 1]
    with (
        pytest.raises(TooManyPages, match="the ones chosen are 3 pages"),
        open_document(path, max_pages=2, pages=PageRanges.parse("1-3")),
    ):
        pass


def test_pages_render_one_at_a_time_in_order(tmp_path: Path) -> None:
    path = CORPUS / "004-pdflatex-4-pages/pdflatex-4-pages.pdf"
    with open_document(path, max_pages=10, dpi=72) as document:
        indexes = [page.index for page in document.pages()]
    assert indexes == [0, 1, 2, 3]


def test_refusals_name_the_cause(tmp_path: Path) -> None:
    pdf = (CORPUS / "004-pdflatex-4-pages/pdflatex-4-pages.pdf").read_bytes()
    cases = {
        "empty.pdf": (b"", EmptyDocument, "empty"),
        "notes.pdf": (
            b"these are plain text notes, not a PDF",
            UnsupportedDocument,
            "checked by its content",
        ),
        "truncated.pdf": (pdf[: len(pdf) // 3], CorruptDocument, "damaged or truncated"),
        "broken.png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, CorruptDocument, "damaged or truncated"),
    }
    for name, (content, error, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(error, match=message), open_document(path, max_pages=10):
            pass
    with (
        pytest.raises(TooManyPages, match="4 pages, over the limit of 3"),
        open_document(CORPUS / "004-pdflatex-4-pages/pdflatex-4-pages.pdf", max_pages=3),
    ):
        pass


def test_images_are_one_page_per_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), color) for color in ("red", "green", "blue")]
    tiff = tmp_path / "scan.tiff"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    with open_document(tiff, max_pages=10) as document:
        pages = list(document.pages())
    assert document.page_count == 3
    assert [Image.open(io.BytesIO(p.png)).getpixel((1, 1)) for p in pages] == [
        (255, 0, 0),
        (0, 128, 0),
        (0, 0, 255),
    ]
    for fmt in ("PNG", "JPEG", "WEBP"):
        path = tmp_path / f"page.{fmt.lower()}"
        frames[0].save(path, format=fmt)
        with open_document(path, max_pages=10) as document:
            assert document.page_count == 1
            assert next(document.pages()).width == 40


def test_media_type_comes_from_content() -> None:
    assert sniff_media_type(b"%PDF-1.7\n") == "application/pdf"
    assert sniff_media_type(b"\xef\xbb\xbf junk %PDF-1.4") == "application/pdf"
    assert sniff_media_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_media_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    with pytest.raises(UnsupportedDocument):
        sniff_media_type(b"GIF89a")


def test_a_checked_image_is_not_decoded_again_but_damage_is_still_refused(tmp_path: Path) -> None:
    """`checked` (what the render passes: intake decoded the document whole): a PNG usable as it is comes
    back as its own bytes after a check of its chunk checksums; a truncated one, or one with a byte
    changed in its image data, is refused as damaged without being decoded. A TIFF is still rendered."""
    page = ROOT / "docvl" / "samples" / "page.png"
    content = page.read_bytes()
    with open_document(page, max_pages=1, checked=True) as document:
        [rendered] = list(document.pages())
    assert rendered.png == content
    idat = content.index(b"IDAT") + 100
    flipped = content[:idat] + bytes([content[idat] ^ 0xFF]) + content[idat + 1 :]
    for name, damaged in {"truncated.png": content[: len(content) // 2], "flipped.png": flipped}.items():
        path = tmp_path / name
        path.write_bytes(damaged)
        with (
            pytest.raises(CorruptDocument, match="damaged or truncated"),
            open_document(path, max_pages=1, checked=True) as document,
        ):
            list(document.pages())
    tiff = tmp_path / "scan.tiff"
    Image.new("RGB", (40, 30), "red").save(tiff)
    with open_document(tiff, max_pages=1, checked=True) as document:
        [frame] = list(document.pages())
    assert Image.open(io.BytesIO(frame.png)).getpixel((1, 1)) == (255, 0, 0)


def _png(header: bytes, rows: bytes) -> bytes:
    """A PNG of these IHDR fields and raw rows (filter byte + samples each), every CRC right."""
    return png.SIGNATURE + png._chunk(b"IHDR", header) + png._chunk(b"IDAT", rows) + png._chunk(b"IEND", b"")


def test_a_png_is_checked_whole_at_intake_without_being_decoded(tmp_path: Path) -> None:
    """Intake (not `checked`) takes a PNG usable as it is after docvl.png.check, not a decode. Damage that
    keeps every chunk's CRC right is refused as a decode would refuse it: an image data stream that does
    not inflate or a row with an unknown filter type (Pillow's decode refuses both), and one that holds
    fewer rows than the header says (Pillow would make the missing rows black). Data past the last row is
    ignored, as decoders ignore it. The PNGs Pillow writes (8 and 16 bits, greyscale and RGB, optimised,
    interlaced, stored) are taken."""
    header = struct.pack(">IIBBBBB", 4, 2, 8, 2, 0, 0, 0)  # 4 x 2 RGB, 8 bits
    rows = bytes([0] + [200] * 12) * 2
    for name, rows_data in {"whole.png": rows, "long.png": rows + rows}.items():
        path = tmp_path / name
        path.write_bytes(_png(header, zlib.compress(rows_data)))
        with open_document(path, max_pages=1) as document:
            assert next(document.pages()).png == path.read_bytes()
    damaged = {
        "stream.png": (_png(header, zlib.compress(rows)[:-6] + b"\x00" * 6), "does not inflate"),
        "filter.png": (_png(header, zlib.compress(bytes([7]) + rows[1:])), "unknown filter type"),
        "short.png": (_png(header, zlib.compress(rows[:13])), "13 bytes of rows where it needs 26"),
    }
    for name, (data, why) in damaged.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptDocument, match=why), open_document(path, max_pages=1):
            pass
        if name != "short.png":
            with pytest.raises(OSError, match="data stream"):  # Pillow's decode refuses the same bytes
                Image.open(path).load()
    picture = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    written: list[tuple[str, dict[str, bool | int]]] = [
        ("RGB", {}),
        ("L", {"optimize": True}),
        ("RGB", {"interlace": True}),
        ("I;16", {}),
        ("RGB", {"compress_level": 0}),
    ]
    for number, (mode, options) in enumerate(written):
        path = tmp_path / f"written-{number}.png"
        picture.convert(mode).save(path, "PNG", **options)
        with open_document(path, max_pages=1) as document:
            assert next(document.pages()).width == 300
