"""Preprocessing alone: what one request's Engine.prepare costs, and how it scales with threads and processes.

Renders pages of a real PDF from tests/corpus as the job runner does (110 dpi, at most 1024 px on the longer
side, PNG), then prepares an OCR request per page (image decode, the processor's 384 px + 1024 px
normalisation, the prompt's tokens) with the tiny model's full-resolution processor, as a real DeepSeek-VL
checkpoint's. Pages/s alone on one core (torch 1 thread), then through the model worker's preprocessing
pool with N threads and with N worker processes (DOCVL_MODEL_WORKER_PREPROCESS_PROCESSES).

    .venv/bin/python bench/preprocess.py [--pages 24] [--workers 1,2,4]

Writes the "Preprocessing" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.model_worker import machine, write_section  # noqa: E402
from bench.page_images import pillow, rendered  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from model_worker.checkpoint import load_checkpoint  # noqa: E402
from model_worker.engine import Engine, Limits  # noqa: E402
from model_worker.preprocess import PreprocessPool  # noqa: E402
from model_worker.settings import ModelWorkerSettings  # noqa: E402
from model_worker.tiny import build_tiny  # noqa: E402

HEADING = "### Preprocessing"
GPU_PAGES_PER_S = 25


def pages_per_s(pool: PreprocessPool, requests: list[InferenceRequest]) -> float:
    for future in [pool.executor.submit(pool.function, r) for r in requests[:4]]:  # warm
        future.result()
    started = time.perf_counter()
    for future in [pool.executor.submit(pool.function, r) for r in requests]:
        future.result()
    return len(requests) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    torch.set_num_threads(1)
    images = [pillow(pixels) for pixels in rendered(args.pages)]
    requests = [
        InferenceRequest(
            task=TaskKind.OCR, images=[data], params=GenerationParams(max_new_tokens=8), request_id=str(i)
        )
        for i, data in enumerate(images)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny(Path(tmp) / "tiny")
        engine = Engine(
            load_checkpoint(model_dir, device="cpu"),
            Limits.from_settings(ModelWorkerSettings(model_dir=model_dir)),
        )
        engine.prepare(requests[0])
        serial, cpu_ms = 0.0, float("inf")
        for _ in range(3):  # best of 3: the machine may be shared
            started, cpu = time.perf_counter(), time.process_time()
            for request in requests:
                engine.prepare(request)
            serial = max(serial, len(requests) / (time.perf_counter() - started))
            cpu_ms = min(cpu_ms, (time.process_time() - cpu) * 1000 / len(requests))
        rows = [("serial (this thread)", 1, serial)]
        for kind in ("threads", "processes"):
            for n in counts:
                pool = PreprocessPool(
                    engine.preparer,
                    threads=n,
                    processes=n if kind == "processes" else 0,
                    model_dir=model_dir,
                )
                pool.warm_up()
                rows.append((kind, n, pages_per_s(pool, requests)))
                pool.shutdown()
                print(rows[-1], flush=True)
    size = rendered(1)[0].shape
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/preprocess.py` on: {machine()}.",
        "",
        f"{args.pages} pages of `009-pdflatex-geotopo` rendered as the job runner does "
        f"({size[1]}x{size[0]} px "
        "PNG), each prepared as an OCR request by `Engine.prepare`: image decode, the full-resolution "
        "processor (SigLIP 384 px + SAM 1024 px, as a real DeepSeek-VL checkpoint's), the prompt's tokens. "
        "torch at 1 thread in every worker. Pages/s after a warm-up of 4 pages.",
        "",
        "| pool | workers | pages/s | ms per page per worker |",
        "|---|---|---|---|",
    ]
    for kind, n, rate in rows:
        lines.append(f"| {kind} | {n} | {rate:.1f} | {1000 * n / rate:.0f} |")
    per_core = 1000 / cpu_ms
    lines += [
        "",
        f"CPU time of the serial run: {cpu_ms:.0f} ms a page, so one core prepares {per_core:.1f} pages/s; a "
        f"GPU at {GPU_PAGES_PER_S} pages/s needs about {GPU_PAGES_PER_S / per_core:.1f} cores of "
        f"preprocessing that scales. Load average during the run: {os.getloadavg()[0]:.1f}.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(args.out, HEADING, section)


if __name__ == "__main__":
    main()
