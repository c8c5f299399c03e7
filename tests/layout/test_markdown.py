"""The document's Markdown from its blocks: headings, formulas, figures, furniture, page separators."""

from __future__ import annotations

from docvl.layout.document import Document, page_from_grounded
from docvl.layout.markdown import block_markdown, document_markdown, page_markdown
from tests.layout.samples import PAPER, REPORT, sample_page


def one(label: str, text: str) -> str:
    page = page_from_grounded(f"<|ref|>{label}<|/ref|><|det|>[[1, 1, 500, 500]]<|/det|>\n{text}", 1, 100, 100)
    return block_markdown(page.blocks[0])


def test_headings_get_their_level_whatever_marks_the_model_wrote() -> None:
    assert one("title", "# Annual Report") == "# Annual Report"
    assert one("title", "Annual Report") == "# Annual Report"
    assert one("sub_title", "### 2.1 Methods") == "## 2.1 Methods"
    assert one("sub_title", "Results\nand discussion") == "## Results and discussion"
    assert one("title", "#") == ""


def test_formulas_are_display_math_once() -> None:
    assert one("equation", "\\[ E = mc^2 \\]") == "$$\nE = mc^2\n$$"
    assert one("equation", "$$a^2 + b^2$$") == "$$\na^2 + b^2\n$$"
    assert one("equation", "x_1") == "$$\nx_1\n$$"
    assert one("formula", "$a$ and $b$") == "$$\n$a$ and $b$\n$$"  # not one formula: left as it is


def test_figures_link_their_stored_crop_or_leave_a_placeholder() -> None:
    page = page_from_grounded("<|ref|>image<|/ref|><|det|>[[1, 1, 500, 500]]<|/det|>\nQ1 Q2", 1, 100, 100)
    assert block_markdown(page.blocks[0]) == "<!-- figure p1-b1 -->\n\nQ1 Q2"
    stored = Document(None, (page,)).with_figure_keys({"p1-b1": "jobs/j/figures/p1-b1.png"})
    block = next(stored.blocks())
    assert block_markdown(block).startswith("![Figure](jobs/j/figures/p1-b1.png)\n\nQ1 Q2")
    linked = block_markdown(block, figure_link=lambda key: f"https://s3/{key}?sig=a b")
    assert linked.startswith("![Figure](<https://s3/jobs/j/figures/p1-b1.png?sig=a b>)")


def test_a_page_in_reading_order_without_its_furniture() -> None:
    page = sample_page(REPORT, 1)
    body = page_markdown(page)
    assert body.startswith("## 3. Results by region\n\nSales rose in every region but one.\n\nTable 2:")
    assert "Confidential" not in body
    assert "ACME Corp." not in body
    assert not body.endswith("7")
    with_furniture = page_markdown(page, include_furniture=True)
    assert with_furniture.startswith("ACME Corp. - Annual Report 2024\n\n## 3.")
    assert with_furniture.endswith("Confidential\n\n7")


def test_pages_are_separated_as_the_ocr_document_is() -> None:
    document = Document("j", (sample_page(PAPER, 1), sample_page(REPORT, 3)))
    markdown = document_markdown(document, failed={2: "model_unavailable"})
    assert markdown.startswith("<!-- page 1 -->\n\n# Sparse Mixtures of Experts for Document Parsing\n\n")
    assert "\n\n<!-- page 2: failed (model_unavailable) -->\n\n<!-- page 3 -->\n\n## 3. Results" in markdown
    assert markdown.endswith("- East: online sales\n")
    assert "$$\n\\mathcal{L} = -\\sum_{t} \\log p(y_t \\mid y_{<t}, x)\n$$" in markdown
    assert "<!-- figure p1-b9 -->\n\nFigure 1: Tokens per page" in markdown


def test_an_empty_page_is_only_its_marker() -> None:
    document = Document(None, (page_from_grounded("", 1, 10, 10),))
    assert document_markdown(document) == "<!-- page 1 -->\n"
