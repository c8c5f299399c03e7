"""Grounded layout: DeepSeek-OCR-2's blocks with boxes, as a document, its Markdown, RAG chunks and checks.

The model answers `<|grounding|>Convert the document to markdown.` with every block written as
`<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>` and its content. This package is the pure
core the pipeline, the API and the console call; it does no I/O but reading a PDF's text layer (checks.py).

- grounding.py: one page's raw output into raw blocks, never raising; what it drops is noted.
- labels.py: DeepSeek's labels onto a fixed vocabulary.
- document.py: Block, Page, Document; pixels and PDF points; JSON and its schema (schema/document-v1.json).
- markdown.py: the document's Markdown from the blocks, pages separated as the OCR task's document.md.
- chunks.py: RAG chunks that respect blocks, headings and a size limit, with page anchors and boxes.
- checks.py: boxes inside the page, degenerate, duplicate and overlapping blocks, and each text block
  against the PDF text layer's words inside its box.
"""

from docvl.layout.checks import Thresholds, Word, check_page, pdf_words, text_layer_words
from docvl.layout.chunks import Chunk, ChunkBox, chunk_document, to_jsonl
from docvl.layout.document import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    Block,
    Document,
    DocumentInvalid,
    Page,
    page_from_grounded,
    schema,
    validate,
)
from docvl.layout.grounding import ParsedPage, RawBlock, parse_grounded
from docvl.layout.labels import Label, map_label
from docvl.layout.markdown import block_markdown, document_markdown, page_markdown

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "Block",
    "Chunk",
    "ChunkBox",
    "Document",
    "DocumentInvalid",
    "Label",
    "Page",
    "ParsedPage",
    "RawBlock",
    "Thresholds",
    "Word",
    "block_markdown",
    "check_page",
    "chunk_document",
    "document_markdown",
    "map_label",
    "page_from_grounded",
    "page_markdown",
    "parse_grounded",
    "pdf_words",
    "schema",
    "text_layer_words",
    "to_jsonl",
    "validate",
]
