"""Post-processing of model text into each task's artifact."""

from __future__ import annotations

from docvl.postprocess import artifact
from docvl.tasks import TaskKind


def test_python_code_block_is_extracted_and_parsed() -> None:
    text = "Here is the code:\n```python\nimport matplotlib.pyplot as plt\nplt.bar([1], [2])\n```\nDone."
    result = artifact(TaskKind.CHART2CODE, text)
    assert result.text == "import matplotlib.pyplot as plt\nplt.bar([1], [2])"
    assert result.valid


def test_python_that_does_not_parse_is_kept_and_marked() -> None:
    result = artifact(TaskKind.CHART2CODE, "```python\nplt.bar([1,\n```")
    assert result.text == "plt.bar([1,"
    assert not result.valid
    assert result.problem is not None
    assert "does not parse" in result.problem
    assert not artifact(TaskKind.CHART2CODE, "junk \x00 bytes").valid


def test_unfenced_python_is_taken_whole() -> None:
    assert artifact(TaskKind.CHART2CODE, "x = 1\n").text == "x = 1"


def test_html_document_is_extracted_and_must_be_a_document() -> None:
    page = "<!DOCTYPE html><html><body><h1>Hi</h1></body></html>"
    assert artifact(TaskKind.WEB2HTML, f"Sure!\n```html\n{page}\n```").text == page
    loose = artifact(TaskKind.WEB2HTML, f"Sure! {page} Hope it helps.")
    assert loose.text == page
    assert loose.valid
    fragment = artifact(TaskKind.WEB2HTML, "<div>only a fragment</div>")
    assert not fragment.valid
    assert fragment.problem is not None
    assert "not a document" in fragment.problem


def test_ocr_and_qa_keep_the_text() -> None:
    assert artifact(TaskKind.OCR, "```markdown\n# Title\n```").text == "# Title"
    assert artifact(TaskKind.OCR, "# Title\n\nText with ```code```").text == "# Title\n\nText with ```code```"
    assert artifact(TaskKind.QA, "  42  ").text == "42"
