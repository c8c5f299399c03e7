"""Office conversion cost on this machine: seconds per document and pages/s for a 20-page docx and a
20-slide pptx through the contained converter (docvl.office), then the memory of the converting process
over many conversions (each conversion is a fresh LibreOffice process: the host process must not grow, and
nothing may be left behind).

    .venv/bin/python bench/office.py [--rounds 5] [--conversions 200]

Writes the "Office conversion" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pypdfium2 as pdfium

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from docvl.office import DOCX, PPTX, OfficeConverter  # noqa: E402
from tests.support import office_files  # noqa: E402

HEADING = "### Office conversion"


def page_count(pdf: Path) -> int:
    document = pdfium.PdfDocument(str(pdf))
    try:
        return len(document)
    finally:
        document.close()


def timed(converter: OfficeConverter, source: Path, media_type: str, work: Path) -> tuple[float, int]:
    copy = work / f"copy-{time.monotonic_ns()}{source.suffix}"
    shutil.copyfile(source, copy)
    started = time.perf_counter()
    pdf = converter.convert(copy, media_type).pdf
    seconds = time.perf_counter() - started
    pages = page_count(pdf)
    copy.unlink()
    pdf.unlink()
    return seconds, pages


def leftovers() -> int:
    return sum(
        1 for p in psutil.process_iter(["cmdline"]) if "docvl-office-" in " ".join(p.info["cmdline"] or [])
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conversions", type=int, default=200)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    converter = OfficeConverter()
    reason = converter.unavailable()
    if reason is not None:
        sys.exit(f"cannot measure: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-office-") as tmp:
        work = Path(tmp)
        docx = office_files.word(work / "report.docx", 20)
        pptx = office_files.slides(work / "deck.pptx", 20)
        timed(converter, docx, DOCX, work)  # warm the page cache and fonts once
        rows = []
        for name, source, media_type in (("docx, 20 pages", docx, DOCX), ("pptx, 20 slides", pptx, PPTX)):
            runs = [timed(converter, source, media_type, work) for _ in range(args.rounds)]
            seconds = statistics.median(s for s, _ in runs)
            pages = runs[0][1]
            rows.append(f"| {name} | {pages} | {seconds:.2f} | {pages / seconds:.1f} | "
                        f"{', '.join(f'{s:.2f}' for s, _ in runs)} |")  # fmt: skip
            print(rows[-1], flush=True)
        me = psutil.Process()
        samples: list[tuple[int, float]] = []
        sources = [(docx, DOCX), (pptx, PPTX)]
        for number in range(args.conversions + 1):
            if number % max(1, args.conversions // 8) == 0:
                samples.append((number, me.memory_info().rss / 2**20))
                print(f"{number} conversions: {samples[-1][1]:.1f} MiB", flush=True)
            if number < args.conversions:
                timed(converter, *sources[number % 2], work)
        left = leftovers()
        stray = sorted(p.name for p in Path(tempfile.gettempdir()).glob("docvl-office-*"))
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    after_warm = samples[1][1]
    growth = (samples[-1][1] - after_warm) / after_warm * 100
    section = f"""{HEADING}

Measured {time.strftime("%Y-%m-%d")} by `bench/office.py` in one run on: {machine()}.

Each conversion is one contained LibreOffice process (`docvl.office.OfficeConverter`: its own network
namespace, a fresh profile, resource limits), from start to the PDF written; documents made with
python-docx and python-pptx. Median of {args.rounds}:

| document | PDF pages | seconds per document | pages/s | each run (s) |
|---|---|---|---|---|
{chr(10).join(rows)}

Memory over {args.conversions} conversions (docx and pptx alternating), the converting process's RSS:
{", ".join(f"{n}: {mib:.1f} MiB" for n, mib in samples)}; growth after the first
{samples[1][0]} conversions: {growth:+.1f} %. The largest LibreOffice process peaked at {peak_child:.0f} MiB
RSS (each exits when its document is done). LibreOffice processes left running afterwards: {left};
temporary directories left: {len(stray)}.
"""
    write_section(args.report, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
