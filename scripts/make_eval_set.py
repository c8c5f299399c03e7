"""Make the small labelled set shipped in `sets/generated/` (about 50 items, a few MB):

- charts drawn by matplotlib from known code with known values (bar, line, pie, scatter): chart2code
  items (the code is the reference) and qa items on their values;
- webpages from known HTML rendered to screenshots by Chromium (JavaScript off, nothing fetched):
  web2html items (the HTML is the reference);
- PDF pages with known text, typeset by Chromium (so they carry a text layer): generated prose with
  headings, tables and figures, and text taken from the text layers of the corpus PDFs in tests/corpus
  (CC-BY-SA-4.0): ocr items, and layout items whose reference (layout/NAME.json) is where Chromium put
  each block (label, box in PDF points, text), checked against the PDF's text layer.

    .venv/bin/python scripts/make_eval_set.py [--out sets/generated]

Seeded: the manifest, the code and the HTML come out the same every time; the images the same for a given
matplotlib and Chromium; the PDFs differ only in their creation dates.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pypdfium2 as pdfium

from docvl.eval.manifest import Item, write_manifest
from docvl.eval.metrics import page_cer
from docvl.layout.checks import pdf_words
from docvl.tasks import TaskKind
from docvl.verify.web import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
SEED = 20261201
WORDS = [
    "report",
    "revenue",
    "region",
    "market",
    "growth",
    "quarter",
    "customer",
    "service",
    "product",
    "policy",
    "budget",
    "forecast",
    "supply",
    "demand",
    "network",
    "storage",
    "document",
    "archive",
    "invoice",
    "contract",
    "partner",
    "schedule",
    "delivery",
    "review",
    "analysis",
    "result",
    "method",
    "sample",
    "measure",
    "system",
    "process",
    "quality",
    "standard",
    "project",
    "team",
    "office",
]
REGIONS = ["North", "South", "East", "West", "Central", "Coast"]
FRUITS = ["Apples", "Pears", "Plums", "Cherries", "Grapes"]


# -- charts -------------------------------------------------------------------------------------------


def _unique_max(rng: random.Random, draw_values: Callable[[], list[int]]) -> list[int]:
    """Values whose largest occurs once (so "which is highest?" has one answer)."""
    while True:
        values = draw_values()
        if values.count(max(values)) == 1:
            return values


def bar_code(rng: random.Random) -> tuple[str, dict[str, Any]]:
    labels = rng.sample(REGIONS, 4)
    values = _unique_max(rng, lambda: [rng.randint(5, 60) for _ in labels])
    code = f"""import matplotlib.pyplot as plt

labels = {json.dumps(labels)}
values = {json.dumps(values)}
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(labels, values, color="#4C72B0")
ax.set_title("Units sold by region")
ax.set_ylabel("Units")
plt.tight_layout()
plt.show()
"""
    return code, {"labels": labels, "values": values}


def line_code(rng: random.Random) -> tuple[str, dict[str, Any]]:
    years = list(range(2018, 2024))
    values = _unique_max(rng, lambda: [rng.randint(10, 90) for _ in years])
    code = f"""import matplotlib.pyplot as plt

years = {json.dumps(years)}
values = {json.dumps(values)}
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.plot(years, values, marker="o", color="#DD8452")
ax.set_title("Visitors per year (thousands)")
ax.set_xlabel("Year")
plt.tight_layout()
plt.show()
"""
    return code, {"labels": [str(y) for y in years], "values": values}


def pie_code(rng: random.Random) -> tuple[str, dict[str, Any]]:
    labels = rng.sample(FRUITS, 4)

    def shares() -> list[int]:
        cuts = sorted(rng.sample(range(5, 95, 5), 3))
        return [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]

    values = _unique_max(rng, shares)
    code = f"""import matplotlib.pyplot as plt

labels = {json.dumps(labels)}
shares = {json.dumps(values)}
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.pie(shares, labels=labels, autopct="%d%%", startangle=90)
ax.set_title("Fruit sold (%)")
plt.tight_layout()
plt.show()
"""
    return code, {"labels": labels, "values": values, "percent": True}


def scatter_code(rng: random.Random) -> tuple[str, dict[str, Any]]:
    count = rng.randint(6, 10)
    xs = [rng.randint(1, 50) for _ in range(count)]
    ys = [rng.randint(1, 50) for _ in range(count)]
    code = f"""import matplotlib.pyplot as plt

x = {json.dumps(xs)}
y = {json.dumps(ys)}
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.scatter(x, y, color="#55A868")
ax.set_title("Height against weight")
ax.set_xlabel("x")
ax.set_ylabel("y")
plt.tight_layout()
plt.show()
"""
    return code, {"count": count}


def draw(code: str, path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(code, str(path.with_suffix(".py")), "exec"), namespace)  # our own code, not model output
    plt.gcf().savefig(path, dpi=100, metadata={"Software": None})
    plt.close("all")


def chart_questions(kind: str, name: str, facts: dict[str, Any]) -> list[tuple[str, list[str]]]:
    if kind == "scatter":
        return [("How many points are plotted?", [str(facts["count"])])]
    labels, values = facts["labels"], facts["values"]
    highest = labels[values.index(max(values))]
    pick = labels[len(labels) // 2]
    value = values[labels.index(pick)]
    answer = [str(value), f"{value}%"] if facts.get("percent") else [str(value)]
    noun = "the share of" if facts.get("percent") else "the value for"
    return [(f"What is {noun} {pick}?", answer), ("Which label has the highest value?", [highest])]


def charts(out: Path, rng: random.Random) -> Iterator[Item]:
    makers = {"bar": bar_code, "line": line_code, "pie": pie_code, "scatter": scatter_code}
    for kind, make in makers.items():
        for n in range(1, 4):
            name = f"{kind}-{n}"
            code, facts = make(rng)
            file = f"charts/{name}.png"
            draw(code, out / file)
            (out / "charts" / f"{name}.py").write_text(code)
            yield Item(f"chart-{name}", file, TaskKind.CHART2CODE, reference=code)
            for q, (question, answers) in enumerate(chart_questions(kind, name, facts), 1):
                yield Item(f"qa-{name}-{q}", file, TaskKind.QA, question=question, answers=tuple(answers))


# -- webpages and PDFs (Chromium) ---------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def _page(browser: Any, width: int, height: int) -> Any:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": width, "height": height}, offline=True
    )
    context.route("**/*", lambda route: route.abort())
    return context.new_page()


PALETTES = [
    ("#1f2933", "#f5f7fa", "#2f80ed"),
    ("#3d1f4a", "#fff8f0", "#e4572e"),
    ("#0b3d2e", "#f0fff4", "#2e8b57"),
]


def webpage(rng: random.Random, n: int) -> str:
    dark, light, accent = PALETTES[n % len(PALETTES)]
    company = rng.choice(["Acme", "Globex", "Initech", "Umbra", "Vertex", "Nimbus"])
    brand = f"{company} {rng.choice(['Docs', 'Cloud', 'Labs', 'Store'])}"
    links = rng.sample(["Home", "Guides", "API", "Pricing", "Blog", "About", "Support"], 4)
    headline = " ".join(rng.sample(WORDS, 4)).capitalize()
    cards = rng.sample(["Fast", "Accurate", "Open", "Secure", "Simple", "Private", "Cheap"], 3)
    body = " ".join(rng.choice(WORDS) for _ in range(18)).capitalize() + "."
    nav = "".join(f"<a>{html.escape(link)}</a>" for link in links)
    grid = "".join(
        f"<div class='card'><h3>{c}</h3><p>{' '.join(rng.sample(WORDS, 5))}</p></div>" for c in cards
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{brand}</title>
<style>
body {{ margin: 0; font-family: sans-serif; background: {light}; color: {dark}; }}
nav {{ display: flex; justify-content: space-between; align-items: center; background: {dark};
       color: white; padding: 16px 32px; }}
nav a {{ margin-left: 28px; }}
main {{ padding: 32px; }}
h1 {{ font-size: 36px; margin: 0 0 16px; }}
.button {{ display: inline-block; background: {accent}; color: white; padding: 12px 28px; margin: 16px 0; }}
.cards {{ display: flex; gap: 24px; }}
.card {{ flex: 1; background: white; border: 1px solid #ccc; padding: 16px; min-height: 120px; }}
</style></head>
<body><nav><b>{brand}</b><span>{nav}</span></nav>
<main><h1>{headline}</h1><p>{body}</p><span class="button">Get started</span>
<div class="cards">{grid}</div></main></body></html>
"""


def webpages(out: Path, rng: random.Random, browser: Any) -> Iterator[Item]:
    (out / "web").mkdir(parents=True, exist_ok=True)
    for n in range(1, 7):
        source = webpage(rng, n)
        page = _page(browser, 800, 600)
        page.set_content(source, wait_until="load")
        file = f"web/page-{n}.png"
        page.screenshot(path=str(out / file), type="png", animations="disabled")
        page.context.close()
        (out / "web" / f"page-{n}.html").write_text(source)
        yield Item(f"web-page-{n}", file, TaskKind.WEB2HTML, reference=source)


def prose(rng: random.Random, sentences: int) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."
        for _ in range(sentences)
    )


@dataclass(frozen=True)
class Drawn:
    """One block the generator typesets: its layout label, its HTML and its reference text (Markdown)."""

    label: str
    html: str
    text: str


def _bars(rng: random.Random) -> str:
    """A small bar chart as inline SVG, without text (so the figure adds nothing to the text layer)."""
    heights = [rng.randint(20, 110) for _ in range(6)]
    bars = "".join(
        f'<rect x="{20 + 45 * i}" y="{120 - h}" width="30" height="{h}" fill="#4C72B0"/>'
        for i, h in enumerate(heights)
    )
    axis = '<line x1="10" y1="120" x2="290" y2="120" stroke="#000"/>'
    return f'<svg class="figure" width="300" height="130" viewBox="0 0 300 130">{bars}{axis}</svg>'


def generated_pages(rng: random.Random) -> Iterator[list[Drawn]]:
    """The blocks of pages of generated prose: a title, paragraphs, a section heading; some pages with a
    table, the others with a figure and its caption."""
    for n in range(1, 6):
        title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {n}"
        paragraphs = [prose(rng, rng.randint(3, 5)) for _ in range(3)]
        section = f"{rng.choice(WORDS).capitalize()} and {rng.choice(WORDS)}"
        blocks = [Drawn("title", f"<h1>{html.escape(title)}</h1>", f"# {title}")]
        blocks += [Drawn("text", f"<p>{html.escape(p)}</p>", p) for p in paragraphs[:2]]
        blocks.append(Drawn("section_header", f"<h2>{html.escape(section)}</h2>", f"## {section}"))
        blocks.append(Drawn("text", f"<p>{html.escape(paragraphs[2])}</p>", paragraphs[2]))
        if n % 2:
            rows = [(region, rng.randint(100, 999)) for region in rng.sample(REGIONS, 3)]
            markdown = "\n".join(["| Region | Total |", "|---|---|", *(f"| {r} | {v} |" for r, v in rows)])
            cells = "".join(f"<tr><td>{r}</td><td>{v}</td></tr>" for r, v in rows)
            blocks.append(
                Drawn("table", f"<table><tr><th>Region</th><th>Total</th></tr>{cells}</table>", markdown)
            )
        else:
            caption = f"Figure {n}: {' '.join(rng.sample(WORDS, 4))}."
            blocks.append(Drawn("figure", _bars(rng), ""))
            blocks.append(Drawn("caption", f"<p class='caption'>{html.escape(caption)}</p>", caption))
        yield blocks


def corpus_pages() -> Iterator[list[Drawn]]:
    """Text from the corpus PDFs' text layers, typeset again line by line (a text block a line)."""
    sources = [
        ("004-pdflatex-4-pages/pdflatex-4-pages.pdf", 1),
        ("004-pdflatex-4-pages/pdflatex-4-pages.pdf", 3),
        ("011-google-doc-document/google-doc-document.pdf", 1),
        ("021-pdfa/crazyones-pdfa.pdf", 1),
    ]
    for name, page in sources:
        path = CORPUS / name
        if not path.is_file():
            continue
        document = pdfium.PdfDocument(path)
        try:
            text = str(document[page - 1].get_textpage().get_text_range())
        finally:
            document.close()
        lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()][:MAX_LINES]
        yield [Drawn("text", f"<p>{html.escape(line)}</p>", line) for line in lines]


MAX_LINES = 24  # a corpus page's first lines: what fits on one typeset A4 page (11 pt, with room to spare)
CONTENT_WIDTH_PX = 640  # the body's width: A4 less 2 cm margins is 642.5 CSS px, so print wraps as the screen
MARGIN_PT = 72 * 2 / 2.54  # 2 cm
PT_PER_PX = 0.75  # Chromium prints a CSS pixel as 1/96 inch
PAGE_STYLE = (
    f"<style>body{{font-family:'DejaVu Serif',serif;font-size:11pt;margin:0;width:{CONTENT_WIDTH_PX}px}}"
    " p{margin:0 0 6pt} h2{font-size:13pt;margin:10pt 0 6pt} .figure{display:block;margin:8pt 0 4pt}"
    " .caption{font-style:italic} td,th{border:1px solid #000;padding:2pt 8pt}</style>"
)
# Each block's box in CSS pixels: text blocks tight around their text (a range over their contents, as
# layout models draw them), tables and figures their border box.
BOXES_JS = """() => Array.from(document.querySelectorAll("[data-block]")).map((element) => {
  let box = element.getBoundingClientRect();
  if (element.dataset.tight === "1") {
    const range = document.createRange();
    range.selectNodeContents(element);
    box = range.getBoundingClientRect();
  }
  return [box.left, box.top, box.right, box.bottom];
})"""
TIGHT = {"title", "section_header", "text", "caption"}
MAX_BLOCK_CER = 0.02  # the text layer inside a reference text block's box against its text


def _tagged(block: Drawn, index: int) -> str:
    """The block's HTML with its element marked for BOXES_JS."""
    tight = "1" if block.label in TIGHT else "0"
    return re.sub(r"^<(\w+)", rf'<\1 data-block="{index}" data-tight="{tight}"', block.html, count=1)


def _to_points(box: list[float]) -> list[float]:
    return [round(MARGIN_PT + value * PT_PER_PX, 2) for value in box]


def layout_reference(
    blocks: list[Drawn], boxes: list[list[float]], size: tuple[float, float]
) -> dict[str, Any]:
    """The layout reference of a page: its size and each block's label, box (PDF points, top-left origin)
    and text, as docs/eval.md describes."""
    return {
        "page": 1,
        "width_pt": round(size[0], 2),
        "height_pt": round(size[1], 2),
        "blocks": [
            {"label": block.label, "box_pt": _to_points(box), "text": block.text}
            for block, box in zip(blocks, boxes, strict=True)
        ],
    }


def check_against_text_layer(pdf: Path, reference: dict[str, Any]) -> None:
    """Each text-bearing reference block must hold its own text in the PDF's text layer (the words whose
    centre is inside its box): the boxes are where the text was drawn."""
    words = pdf_words(pdf, 0)
    for block in reference["blocks"]:
        if not block["text"]:
            continue
        x0, y0, x1, y1 = block["box_pt"]
        inside = [w.text for w in words if x0 <= w.centre[0] <= x1 and y0 <= w.centre[1] <= y1]
        error = page_cer(" ".join(inside), block["text"])
        if error > MAX_BLOCK_CER:
            raise SystemExit(
                f"{pdf}: the {block['label']} box {block['box_pt']} holds {inside!r}, CER {error:.3f}"
            )


def pdf_pages(out: Path, rng: random.Random, browser: Any) -> Iterator[Item]:
    (out / "pdfs").mkdir(parents=True, exist_ok=True)
    (out / "layout").mkdir(parents=True, exist_ok=True)
    pages = [("generated", p) for p in generated_pages(rng)] + [("corpus", p) for p in corpus_pages()]
    for n, (origin, blocks) in enumerate(pages, 1):
        body = "".join(_tagged(block, index) for index, block in enumerate(blocks))
        page = _page(browser, 800, 1000)
        page.emulate_media(media="print")
        page.set_content(f"<!DOCTYPE html><html><head>{PAGE_STYLE}</head><body>{body}</body></html>")
        boxes = page.evaluate(BOXES_JS)
        name = f"{origin}-{n}"
        file = f"pdfs/{name}.pdf"
        page.pdf(
            path=str(out / file),
            format="A4",
            margin={"top": "2cm", "bottom": "2cm", "left": "2cm", "right": "2cm"},
        )
        page.context.close()
        document = pdfium.PdfDocument(out / file)
        pages_made = len(document)
        size = document[0].get_size()
        document.close()
        if pages_made != 1:
            raise SystemExit(f"{file} took {pages_made} pages: shorten its text (MAX_LINES)")
        reference = layout_reference(blocks, boxes, size)
        check_against_text_layer(out / file, reference)
        layout_file = f"layout/{name}.json"
        (out / layout_file).write_text(json.dumps(reference, indent=1) + "\n")
        text = "\n\n".join(block.text for block in blocks if block.text) + "\n"
        if origin == "corpus":
            text = "\n".join(block.text for block in blocks) + "\n"
        yield Item(f"ocr-{name}", file, TaskKind.OCR, reference=text, meta={"origin": origin})
        yield Item(f"layout-{name}", file, TaskKind.LAYOUT, reference=layout_file, meta={"origin": origin})


NOTICE = """# The generated evaluation set

Made by `scripts/make_eval_set.py`; do not edit by hand. `docvl eval --set sets/generated --out report.md`
runs it (docs/eval.md). Charts are drawn by matplotlib from the `.py` beside each `.png`, webpages are the
`.html` beside each screenshot rendered by Chromium, PDFs are typeset by Chromium from known text. Each
PDF page's layout reference, `layout/NAME.json`, is where Chromium put each block it typeset: its label,
its box in PDF points (origin at the top left) and its text.

The text of the `ocr-corpus-*` pages comes from the text layers of PDFs in `tests/corpus/pdf-samples`,
licensed CC-BY-SA-4.0 (see that folder's LICENSE); those pages are under the same licence.
"""


def make(out: Path) -> list[Item]:
    if out.exists():
        shutil.rmtree(out)
    (out / "charts").mkdir(parents=True)
    rng = random.Random(SEED)
    items = list(charts(out, rng))
    with chromium() as browser:
        items += webpages(out, rng, browser)
        items += pdf_pages(out, rng, browser)
    write_manifest(out, items)
    (out / "README.md").write_text(NOTICE)
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sets" / "generated")
    items = make(parser.parse_args().out)
    print(f"{len(items)} items")


if __name__ == "__main__":
    main()
