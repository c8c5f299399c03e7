"""Benchmark of the model worker's window batcher: requests/s and latency, batching on and off, on this
machine (bench/continuous.py compares it with the continuous scheduler, the default).

Starts `docvl model-worker` processes with the tiny model (small and full-resolution variants), drives them
over gRPC at concurrency 1, 4 and 16 with the bundled sample images, and writes docs/benchmarks.md.
A benchmark, not a test: numbers depend on the machine, which the report names.

    .venv/bin/python bench/model_worker.py [--requests 48] [--configs small:64,full:64,full:256]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from model_worker.tiny import build_tiny  # noqa: E402
from tests.support.helpers import model_worker_process  # noqa: E402

SAMPLES = [ROOT / "docvl" / "samples" / name for name in ("page.png", "chart.png", "webpage.png")]
CONCURRENCY = (1, 4, 16)


@dataclass
class Run:
    model: str
    max_new_tokens: int
    batching: bool
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    mean_batch: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Driven:
    seconds: float
    latencies: list[float]
    mean_batch: float
    texts: dict[int, set[str]]  # sample image -> the answers it got (greedy: one)


def closed_loop(clients: int, client_loop: Callable[[], None], errors: list[BaseException]) -> float:
    """Run `clients` threads of `client_loop` (each sends a request when its last one is answered, and
    appends what it raises to `errors`); the seconds they took. Raises when any request failed."""
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]!r}")
    return seconds


def drive(target: str, concurrency: int, total: int, max_new_tokens: int) -> Driven:
    """`total` requests from `concurrency` closed-loop clients."""
    images = [path.read_bytes() for path in SAMPLES]
    latencies: list[float] = []
    batches: list[int] = []
    texts: dict[int, set[str]] = {i: set() for i in range(len(images))}
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[BaseException] = []

    def client_loop() -> None:
        with InferenceClient(target) as client:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                request = InferenceRequest(
                    TaskKind.OCR, [images[index % len(images)]], params=GenerationParams(max_new_tokens)
                )
                started = time.perf_counter()
                try:
                    result = client.generate(request, timeout=600)
                except BaseException as exc:  # reported after the run
                    errors.append(exc)
                    return
                with lock:
                    latencies.append(time.perf_counter() - started)
                    batches.append(result.timings.batch_size)
                    texts[index % len(images)].add(result.text)

    seconds = closed_loop(concurrency, client_loop, errors)
    return Driven(seconds, latencies, statistics.mean(batches), texts)


def bench_model(name: str, model_dir: Path, total: int, max_new_tokens: int, logs: Path) -> list[Run]:
    runs: list[Run] = []
    answers: dict[bool, dict[int, set[str]]] = {}
    for batching in (False, True):
        args = ["--max-batch-size", "16" if batching else "1", "--max-wait-ms", "20" if batching else "0"]
        log = logs / f"{name}-{max_new_tokens}-{'on' if batching else 'off'}.log"
        window = {"DOCVL_MODEL_WORKER_SCHEDULER": "window"}  # this benchmark measures the window batcher
        with model_worker_process(model_dir, log, *args, env=window) as (_, target):
            with InferenceClient(target) as client:
                client.wait_ready(600)
            drive(target, 4, 8, max_new_tokens)  # warm-up
            for concurrency in CONCURRENCY:
                requests = max(total // 3, 8) if concurrency == 1 else total
                driven = drive(target, concurrency, requests, max_new_tokens)
                for image, seen in driven.texts.items():
                    answers.setdefault(batching, {}).setdefault(image, set()).update(seen)
                run = Run(
                    name,
                    max_new_tokens,
                    batching,
                    concurrency,
                    requests,
                    driven.seconds,
                    driven.latencies,
                    driven.mean_batch,
                )
                runs.append(run)
                print(
                    f"{name:6} {max_new_tokens:4} tokens batching={'on ' if batching else 'off'} "
                    f"c={concurrency:2}: {run.rps:6.2f} req/s "
                    f"p50 {run.percentile(0.5) * 1000:7.0f} ms p95 {run.percentile(0.95) * 1000:7.0f} ms "
                    f"mean batch {run.mean_batch:4.1f}",
                    flush=True,
                )
    for image, seen in answers[True].items():
        if len(seen) != 1 or seen != answers[False][image]:
            raise AssertionError(
                f"sample {image}: batched and unbatched answers differ: {seen} {answers[False][image]}"
            )
    return runs


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"(CPU, {torch.get_num_threads()} threads)"
    )


def report(runs: list[Run], total: int) -> str:
    lines = [
        "### Model worker: dynamic batching (tiny model, CPU)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/model_worker.py` in one run on: {machine()}.",
        "",
        "Closed-loop gRPC clients send OCR requests (the three bundled sample images in turn) with greedy "
        f"decoding; {total} requests per point ({max(total // 3, 8)} at concurrency 1). Batching on: "
        "max_batch_size=16, max_wait_ms=20. Off: max_batch_size=1. `small` is the tiny model at 64/128 px "
        "(16 image tokens); `full` is the tiny model at the real 384/1024 px (576 image tokens). The script "
        "checks that both modes gave every sample exactly the same answer.",
        "",
        "| model | max_new_tokens | batching | concurrency | requests/s | p50 ms | p95 ms | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.model} | {r.max_new_tokens} | {'on' if r.batching else 'off'} | {r.concurrency} | "
            f"{r.rps:.2f} | "
            f"{r.percentile(0.5) * 1000:.0f} | {r.percentile(0.95) * 1000:.0f} | {r.mean_batch:.1f} |"
        )
    lines += ["", "Batching speed-up (requests/s on ÷ off, same run):", ""]
    for model, tokens in dict.fromkeys((r.model, r.max_new_tokens) for r in runs):
        same = [r for r in runs if (r.model, r.max_new_tokens) == (model, tokens)]
        ratios = []
        for concurrency in CONCURRENCY:
            on = next(r for r in same if r.batching and r.concurrency == concurrency)
            off = next(r for r in same if not r.batching and r.concurrency == concurrency)
            ratios.append(f"concurrency {concurrency}: {on.rps / off.rps:.2f}×")
        lines.append(f"- {model}, max_new_tokens {tokens}: " + ", ".join(ratios))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument(
        "--configs",
        default="small:64,full:64,full:256",
        help="MODEL:MAX_NEW_TOKENS,... (model: small or full)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docvl-bench-") as tmp:
        base = Path(tmp)
        runs: list[Run] = []
        for config in args.configs.split(","):
            name, tokens = config.split(":")
            model_dir = base / name
            if not model_dir.exists():
                build_tiny(model_dir, small=(name == "small"))
            runs += bench_model(name, model_dir, args.requests, int(tokens), base)
    section = report(runs, args.requests)
    write_section(args.out, "### Model worker: dynamic batching", section)
    print(section)


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with `heading` in the report, or append it."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEach section is written by its script in bench/.\n"
    )
    start = text.find(heading)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n### ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    main()
