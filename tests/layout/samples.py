"""Grounded page outputs written by hand in DeepSeek-OCR-2's style (`<|grounding|>Convert the document to
markdown.`): what the parser, the Markdown, the chunks and the checks are tested on.

The tiny random models write junk, so these stand in for real answers: a two-column paper page, a report
page with an HTML table and page furniture, one cut off by the token limit and one with the slips models
make (a forgotten closing tag, boxes out of range or in the wrong order, a stray tag, a loop).
"""

from __future__ import annotations

from docvl.layout.document import Page, page_from_grounded

EOS = "<｜end▁of▁sentence｜>"

PAPER = (
    "<|ref|>title<|/ref|><|det|>[[118, 62, 881, 98]]<|/det|>\n"
    "# Sparse Mixtures of Experts for Document Parsing\n\n"
    "<|ref|>text<|/ref|><|det|>[[300, 108, 699, 140]]<|/det|>\n"
    "Ada Lovelace, Alan Turing\nAnalytical Engines Ltd.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[60, 160, 200, 176]]<|/det|>\n"
    "## Abstract\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 182, 484, 330]]<|/det|>\n"
    "We study how a mixture of experts reads documents. Each expert sees a region of the page; "
    "a router chooses two experts per token.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[60, 346, 260, 362]]<|/det|>\n"
    "## 1 Introduction\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 368, 484, 560]]<|/det|>\n"
    "Document parsing turns a page image into text with structure. Earlier pipelines chained a layout "
    "detector, an OCR engine and a table recogniser.\n\n"
    "<|ref|>equation<|/ref|><|det|>[[120, 570, 430, 600]]<|/det|>\n"
    "\\[\n\\mathcal{L} = -\\sum_{t} \\log p(y_t \\mid y_{<t}, x)\n\\]\n\n"
    "<|ref|>text<|/ref|><|det|>[[515, 160, 939, 400]]<|/det|>\n"
    "The encoder compresses the page into visual tokens, and the decoder writes the Markdown.\n\n"
    "<|ref|>image<|/ref|><|det|>[[515, 410, 939, 640]]<|/det|>\n\n"
    "<|ref|>image_caption<|/ref|><|det|>[[515, 646, 939, 676]]<|/det|>\n"
    "Figure 1: Tokens per page against edit distance.\n\n"
    "<|ref|>footnote<|/ref|><|det|>[[60, 900, 484, 930]]<|/det|>\n"
    "<sup>1</sup> Code at https://example.org/moe-docs.\n\n"
    "<|ref|>page_number<|/ref|><|det|>[[490, 960, 510, 975]]<|/det|>\n"
    "1" + EOS
)

REPORT = (
    "<|ref|>header<|/ref|><|det|>[[60, 20, 940, 40]]<|/det|>\n"
    "ACME Corp. - Annual Report 2024\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[60, 70, 400, 92]]<|/det|>\n"
    "## 3. Results by region\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 100, 940, 160]]<|/det|>\n"
    "Sales rose in every region but one.\n\n"
    "<|ref|>table_caption<|/ref|><|det|>[[60, 170, 600, 188]]<|/det|>\n"
    "Table 2: Revenue by region (EUR m)\n\n"
    "<|ref|>table<|/ref|><|det|>[[60, 192, 940, 420]]<|/det|>\n"
    "<table><tr><td>Region</td><td>2023</td><td>2024</td></tr>"
    "<tr><td>North</td><td>12.1</td><td>13.4</td></tr>"
    "<tr><td>South</td><td>9.8</td><td>9.1</td></tr>"
    "<tr><td>East</td><td>4.0</td><td>5.2</td></tr></table>\n\n"
    "<|ref|>list<|/ref|><|det|>[[60, 440, 940, 520]]<|/det|>\n"
    "- North: new stores\n- South: one plant closed\n- East: online sales\n\n"
    "<|ref|>footer<|/ref|><|det|>[[60, 960, 700, 980]]<|/det|>\n"
    "Confidential\n\n"
    "<|ref|>page_number<|/ref|><|det|>[[900, 960, 940, 980]]<|/det|>\n"
    "7"
)

# Cut off by max_new_tokens in the middle of a box.
TRUNCATED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 90]]<|/det|>\n"
    "# Minutes of the Board\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 200]]<|/det|>\n"
    "The board met on 3 March.\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 210, 900, 3"
)

# The slips models make: text before the first block, a label without <|/ref|>, a box over 999, corners
# in the wrong order, a box with three numbers, a stray <|/det|>, a block without a box, hostile HTML.
SLOPPY = (
    "Scanned by OfficeScan\n"
    "<|ref|>title<|det|>[[100, 40, 900, 80]]<|/det|>\n# Notice\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 100, 1012, 180]]<|/det|>\nAll staff must attend.\n\n"
    "<|ref|>text<|/ref|><|det|>[[900, 300, 100, 200], [10, 20, 30]]<|/det|>\nCorners swapped.<|/det|>\n\n"
    "<|ref|>text<|/ref|>\nNo box here.\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 400, 900, 450]]<|/det|>\n"
    '<img src=x onerror="alert(1)"><script>x()</script>'
)


def sample_page(output: str, number: int = 1) -> Page:
    """The page of `output` on a US Letter PDF page (612 x 792 pt) rendered 791 x 1024 px."""
    return page_from_grounded(output, number, 791, 1024, 612.0, 792.0)
