"""What a document is and how it becomes page images: content sniffing, page counting, rendering.

PDFs are rendered with pypdfium2; PNG, JPEG, TIFF and WebP images are one page per frame. Every way a
document can be unusable is a DocumentError with a code that names the cause.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from PIL import Image, UnidentifiedImageError

from docvl import png
from docvl.errors import InvalidInput
from docvl.layout.checks import Word, text_layer_words
from docvl.page_ranges import PageRanges

PDF = "application/pdf"
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff", "WEBP": "image/webp"}
SUPPORTED = "a PDF or a PNG, JPEG, TIFF or WebP image"
_PDFIUM_PASSWORD_ERROR = 4


class DocumentError(InvalidInput):
    """A document that cannot be processed; `code` names why."""

    code = "invalid_document"


class UnsupportedDocument(DocumentError):
    code = "unsupported_document"


class EncryptedDocument(DocumentError):
    code = "encrypted_document"


class WrongPassword(EncryptedDocument):
    code = "wrong_password"


class CorruptDocument(DocumentError):
    code = "corrupt_document"


class EmptyDocument(DocumentError):
    code = "empty_document"


class TooManyPages(DocumentError):
    code = "too_many_pages"


class DocumentTooLarge(DocumentError):
    code = "document_too_large"


@dataclass(frozen=True)
class RenderedPage:
    index: int
    png: bytes  # the page image: PNG, or an input image kept as it came (see media_type)
    width: int
    height: int
    media_type: str = "image/png"
    text: str | None = None  # a PDF page's text layer (None: it has none, or the page is an image)
    width_pt: float | None = None  # a PDF page's size in points, as displayed (None: an image)
    height_pt: float | None = None
    words: list[Word] | None = None  # its text layer's words with their boxes, when asked for


def sniff_media_type(head: bytes) -> str:
    """The media type from the first bytes of the content (never from a file name)."""
    if not head:
        raise EmptyDocument("the document is empty (0 bytes)")
    if b"%PDF-" in head[:1024]:
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE_TYPES["PNG"]
    if head.startswith(b"\xff\xd8\xff"):
        return IMAGE_TYPES["JPEG"]
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return IMAGE_TYPES["TIFF"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return IMAGE_TYPES["WEBP"]
    raise UnsupportedDocument(f"the document is not {SUPPORTED} (checked by its content)")


class OpenedDocument:
    """A document's chosen pages, rendered one at a time (a long PDF is never all in memory)."""

    def __init__(
        self,
        page_count: int,
        render: Callable[[frozenset[int]], Iterator[RenderedPage]],
        chosen: list[int] | None = None,
    ) -> None:
        self.page_count = page_count  # the document's
        self.chosen = chosen if chosen is not None else list(range(page_count))  # indices, in order
        self._render = render

    def pages(self, skip: frozenset[int] = frozenset()) -> Iterator[RenderedPage]:
        """The chosen pages in order, but those in `skip` (already rendered by an earlier run)."""
        return self._render(skip | (frozenset(range(self.page_count)) - frozenset(self.chosen)))


@contextmanager
def open_document(
    path: Path,
    *,
    max_pages: int,
    dpi: int = 110,
    max_pixels: int = 40_000_000,
    max_side: int | None = None,
    password: str | None = None,
    pages: PageRanges | None = None,
    words: bool = False,
    checked: bool = False,
) -> Iterator[OpenedDocument]:
    """Open the document at `path`, its pages limited to `pages` when given; raise a DocumentError naming
    the cause when it cannot be processed (PagesOutOfRange when `pages` goes past its end). `words`: also
    read each PDF page's text-layer words with their boxes (the layout task's checks compare with them).
    An image usable as it is (`_usable_as_is`) is not decoded: a PNG is checked whole by docvl.png.check
    (~1 ms for a letter-size page where decoding takes ~6), a JPEG or WebP, which has no checksums, is
    decoded. `checked`: the document passed intake: only a PNG's checksums are read again."""
    with path.open("rb") as fh:
        media_type = sniff_media_type(fh.read(1024))
    if media_type == PDF:
        with _open_pdf(path, password) as pdf:
            chosen = _chosen(len(pdf), max_pages, pages)
            yield OpenedDocument(
                len(pdf), lambda skip: _render_pdf(pdf, dpi, max_pixels, max_side, skip, words), chosen
            )
    else:
        with _open_image(path) as image:
            frames = getattr(image, "n_frames", 1)
            chosen = _chosen(frames, max_pages, pages)
            if _usable_as_is(image, frames, max_pixels):
                data = path.read_bytes()
                if checked:
                    _verify_image(path)
                else:
                    _check_whole(image, data)
                page = RenderedPage(0, data, image.width, image.height, media_type)
                yield OpenedDocument(1, lambda skip: iter([] if 0 in skip else [page]), chosen)
            else:
                if not checked:
                    _decode(image)
                yield OpenedDocument(
                    frames, lambda skip: _render_frames(image, frames, max_pixels, skip), chosen
                )


def _chosen(count: int, max_pages: int, pages: PageRanges | None) -> list[int]:
    """The indices of the pages to process; the page limit applies to those (a long document of which a
    few pages are chosen is fine)."""
    if count == 0:
        raise EmptyDocument("the document has no pages")
    chosen = list(range(count)) if pages is None else pages.indices(count)
    if len(chosen) > max_pages:
        which = "has" if pages is None else f"has {count} pages; the ones chosen are"
        raise TooManyPages(
            f"the document {which} {len(chosen)} pages, over the limit of {max_pages}: split it"
            + ("" if pages is not None else " or choose a page range")
        )
    return chosen


def decrypt_pdf(path: Path, password: str, out: Path) -> bool:
    """Write `path`, a PDF, to `out` without its encryption when it is encrypted and `password` opens it;
    False (nothing written) when it is not encrypted. WrongPassword when the password does not open it."""
    try:
        pdfium.PdfDocument(str(path)).close()
        return False  # opens without a password: not encrypted (or only against editing)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) != _PDFIUM_PASSWORD_ERROR:
            raise CorruptDocument(f"the PDF cannot be read; it is damaged or truncated ({exc})") from None
    with _open_pdf(path, password) as pdf:
        pdf.save(str(out), flags=pdfium_raw.FPDF_REMOVE_SECURITY)
    return True


@contextmanager
def _open_pdf(path: Path, password: str | None) -> Iterator[pdfium.PdfDocument]:
    try:
        pdf = pdfium.PdfDocument(str(path), password=password)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD_ERROR:
            if password:
                raise WrongPassword("the PDF's password is wrong: check it and submit again") from None
            raise EncryptedDocument(
                "the PDF is encrypted: send its password with the job (the `password` field)"
            ) from None
        raise CorruptDocument(f"the PDF cannot be read; it is damaged or truncated ({exc})") from None
    try:
        yield pdf
    finally:
        pdf.close()


def _render_pdf(
    pdf: pdfium.PdfDocument,
    dpi: int,
    max_pixels: int,
    max_side: int | None,
    skip: frozenset[int],
    with_words: bool = False,
) -> Iterator[RenderedPage]:
    for index in range(len(pdf)):
        if index in skip:
            continue
        page = pdf[index]
        try:
            width, height = page.get_size()
            scale = dpi / 72
            if max_side is not None:  # no more pixels than the model will look at
                scale = min(scale, max_side / max(width, height))
            if width * height * scale * scale > max_pixels:  # a poster-sized page: fewer dots per inch
                scale = (max_pixels / (width * height)) ** 0.5
            # RGB, not copied: the view holds the bitmap's buffer, which Python allocated (new_native), so
            # it outlives the bitmap
            pixels = page.render(scale=scale, rev_byteorder=True).to_numpy()
            text = _text_layer(page)
            words = text_layer_words(page) if with_words else None
        except pdfium.PdfiumError as exc:
            raise CorruptDocument(f"page {index + 1} of the PDF cannot be rendered ({exc})") from None
        finally:
            page.close()
        rendered = _page(index, pixels)
        yield dataclasses.replace(rendered, text=text, width_pt=width, height_pt=height, words=words)


def _text_layer(page: pdfium.PdfPage) -> str | None:
    """The page's own text, in reading order as PDFium gives it; None for a page without (a scan)."""
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_bounded().replace("\x00", "").strip()
    finally:
        textpage.close()
    return text or None


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """The image, its header read (its pixels are decoded by `_decode`, or as its frames are rendered)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DocumentError("the image has too many pixels: downscale it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptDocument(f"the image is damaged or truncated ({exc})") from None
    try:
        yield image
    finally:
        image.close()


def _decode(image: Image.Image) -> None:
    """Decode the (first frame's) pixels: a damaged image is refused here."""
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptDocument(f"the image is damaged or truncated ({exc})") from None


def _check_whole(image: Image.Image, data: bytes) -> None:
    """Refuse a damaged image usable as it is: a PNG by its structure (docvl.png.check), anything else by
    decoding it."""
    if image.format != "PNG":
        _decode(image)
        return
    try:
        png.check(data)
    except png.Damaged as exc:
        raise CorruptDocument(f"the image is damaged or truncated ({exc})") from None
    except NotImplementedError:  # interlaced
        _decode(image)


def _verify_image(path: Path) -> None:
    """Refuse a damaged image without decoding it: Pillow reads a PNG's chunks and checks their CRCs."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptDocument(f"the image is damaged or truncated ({exc})") from None


def _usable_as_is(image: Image.Image, frames: int, max_pixels: int) -> bool:
    """A one-frame PNG, JPEG or WebP in RGB or greyscale within the pixel limit is its own page image: no
    decode and re-encode (the model worker reads these formats as they are)."""
    return (
        frames == 1
        and image.format in ("PNG", "JPEG", "WEBP")
        and image.mode in ("RGB", "L")
        and image.width * image.height <= max_pixels
    )


def _render_frames(
    image: Image.Image, frames: int, max_pixels: int, skip: frozenset[int]
) -> Iterator[RenderedPage]:
    for index in range(frames):
        if index in skip:
            continue
        try:
            image.seek(index)
            frame = image.convert("RGB")
        except (OSError, ValueError, EOFError) as exc:
            raise CorruptDocument(f"frame {index + 1} of the image cannot be decoded ({exc})") from None
        if frame.width * frame.height > max_pixels:
            ratio = (max_pixels / (frame.width * frame.height)) ** 0.5
            frame = frame.resize((max(1, int(frame.width * ratio)), max(1, int(frame.height * ratio))))
        yield _page(index, frame)


def _page(index: int, image: Image.Image | np.ndarray) -> RenderedPage:
    height, width = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]
    return RenderedPage(index=index, png=png.encode(image), width=width, height=height)
