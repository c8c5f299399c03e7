"""What verifying a page costs, per check, on this machine: the generated set's references (sets/generated)
checked against their own inputs, as a page task checks the model's output — chart code run in the
bubblewrap sandbox and its figure compared with the chart, HTML rendered in Chromium and compared with the
screenshot, OCR Markdown compared with the PDF page's text layer.

    .venv/bin/python bench/verification.py

Writes the "Cost per page" section of docs/quality.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from docvl.documents import open_document  # noqa: E402
from docvl.postprocess import artifact  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from docvl.verify.verifier import PageInput, Verifier  # noqa: E402

SET = ROOT / "sets" / "generated"
HEADING = "### Cost per page"


def items(task: str) -> list[dict[str, Any]]:
    lines = (SET / "manifest.jsonl").read_text().splitlines()
    return [item for item in map(json.loads, lines) if item["task"] == task]


def page_input(item: dict[str, Any]) -> PageInput:
    path = SET / item["file"]
    if path.suffix != ".pdf":
        return PageInput(path.read_bytes(), None)
    with open_document(path, max_pages=50) as document:
        page = next(document.pages())
    return PageInput(page.png, page.text)


def timed(verifier: Verifier, task: TaskKind, item: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Seconds for the check of the item's reference against its input, and the verdict."""
    made, page = artifact(task, item["reference"]), page_input(item)
    started = time.perf_counter()
    verdict = verifier.check(task, made, page) or {}
    return time.perf_counter() - started, verdict


def main() -> None:
    verifier = Verifier()
    rows = []
    for task in (TaskKind.OCR, TaskKind.CHART2CODE, TaskKind.WEB2HTML):
        runs: list[tuple[float, dict[str, Any]]] = []
        for item in items(task.value):
            runs.append(timed(verifier, task, item))
        first, rest = runs[0][0], [seconds for seconds, _ in runs[1:]]
        passed = sum(1 for _, verdict in runs if verdict.get("passed"))
        score = {
            TaskKind.OCR: "text_layer_cer",
            TaskKind.CHART2CODE: "similarity",
            TaskKind.WEB2HTML: "similarity",
        }[task]
        values = [float(v[score]) for _, v in runs if isinstance(v.get(score), int | float)]
        rows.append(
            f"| {task.value} | {len(runs)} | {first * 1000:.0f} | {statistics.median(rest) * 1000:.0f} | "
            f"{max(rest) * 1000:.0f} | {passed}/{len(runs)} | {score} {statistics.mean(values):.3f} |"
        )
        print(rows[-1], flush=True)
    verifier.close()
    section = f"""{HEADING}

Measured {time.strftime("%Y-%m-%d")} by `bench/verification.py` in one run on: {machine()}.

Each check run on the generated set's references against their own inputs (`sets/generated`), one at a
time in one process, as a page task runs it after generation. The first check of each kind pays for what
starts on first use (the sandbox's probe; the Chromium process), which a worker process does once.

| check | pages | first (ms) | median after (ms) | slowest after (ms) | passed | mean score |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

ocr: plain text of the Markdown against the page's text layer (CER, word F1) and the repetition share;
chart2code: a fresh bubblewrap sandbox per page, Python importing matplotlib, running the code, saving the
figure at the chart's size, then SSIM; web2html: one page load with JavaScript and the network off, a
screenshot at the input's size, then SSIM.
"""
    write_section(ROOT / "docs" / "quality.md", HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
