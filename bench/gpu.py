"""Throughput of the real 7B model on a GPU: DeepSeek-VL 7B with random weights in bf16, OCR-length answers.

For the day a GPU is lent: builds the deepseek-vl-7b-chat configuration with random weights in bf16
(model_worker/sized.py; random weights cost the same compute as real ones) with its end token ignored, so
every answer runs to exactly its max_new_tokens, drawn per request from a lognormal distribution (median
500 tokens, capped at 2048: OCR-length pages). Serves it with `docvl model-worker` on CUDA once per
scheduler and drives it over gRPC with closed-loop clients at concurrency 1, 4, 16 and 64, each point for
about --seconds of load (clients send no new request after that and the point ends when the last answer
does): pages/s, generated tokens/s, p50 and p95 latency. Writes a section of docs/benchmarks.md.

Refuses to run without CUDA (exit status 2).

    .venv/bin/python bench/gpu.py [--seconds 30] [--concurrency 1,4,16,64] [--schedulers window,continuous]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HEADING = "### GPU: DeepSeek-VL 7B, random weights, OCR-length answers"
SCHEDULERS = ("window", "continuous")


def draw_lengths(
    count: int, *, seed: int = 19, median: int = 500, sigma: float = 0.6, cap: int = 2048
) -> list[int]:
    """`count` answer lengths: lognormal around `median` tokens, at least 1, at most `cap`."""
    rng = random.Random(seed)
    return [max(1, min(cap, round(rng.lognormvariate(math.log(median), sigma)))) for _ in range(count)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="load per concurrency point")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS), help="window, continuous or both")
    parser.add_argument("--median", type=int, default=500, help="median answer length, tokens")
    parser.add_argument("--sigma", type=float, default=0.6, help="lognormal sigma of the answer length")
    parser.add_argument("--cap", type=int, default=2048, help="longest answer, tokens")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument(
        "--max-batch-total-tokens",
        type=int,
        default=120_000,
        help="continuous: the token budget (the 7B cache: 0.5 MiB a token in bf16, 120k: about 59 GiB)",
    )
    parser.add_argument("--model-dir", type=Path, help="reuse a checkpoint built by model_worker/sized.py")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",")]
    args.schedulers = [s for s in str(args.schedulers).split(",") if s]
    if any(c < 1 for c in args.concurrency) or not set(args.schedulers) <= set(SCHEDULERS):
        parser.error("concurrency must be positive; schedulers: window, continuous")
    return args


@dataclass
class Point:
    scheduler: str
    concurrency: int
    seconds: float
    pages: int
    tokens: int
    latencies: list[float]
    mean_batch: float

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def drive(target: str, concurrency: int, seconds: float, lengths: list[int], images: list[bytes]) -> Point:
    from docvl.inference.client import InferenceClient
    from docvl.inference.types import GenerationParams, InferenceRequest
    from docvl.tasks import TaskKind

    lock = threading.Lock()
    counter = iter(range(10**9))
    latencies: list[float] = []
    batches: list[int] = []
    tokens = 0
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def client_loop() -> None:
        nonlocal tokens
        with InferenceClient(target) as client:
            while time.perf_counter() < deadline and not errors:
                with lock:
                    index = next(counter)
                params = GenerationParams(lengths[index % len(lengths)])
                request = InferenceRequest(TaskKind.OCR, [images[index % len(images)]], params=params)
                started = time.perf_counter()
                try:
                    result = client.generate(request, timeout=3600)
                except BaseException as exc:  # reported after the point
                    errors.append(exc)
                    return
                with lock:
                    latencies.append(time.perf_counter() - started)
                    batches.append(result.timings.batch_size)
                    tokens += result.generated_tokens

    from bench.model_worker import closed_loop

    elapsed = closed_loop(concurrency, client_loop, errors)
    mean_batch = sum(batches) / len(batches) if batches else 0.0
    return Point("", concurrency, elapsed, len(latencies), tokens, latencies, mean_batch)


def run_scheduler(model_dir: Path, scheduler: str, args: argparse.Namespace, logs: Path) -> list[Point]:
    from bench.model_worker import SAMPLES
    from docvl.inference.client import InferenceClient
    from tests.support.helpers import model_worker_process

    images = [path.read_bytes() for path in SAMPLES]
    lengths = draw_lengths(4096, seed=args.seed, median=args.median, sigma=args.sigma, cap=args.cap)
    rows = max(args.concurrency)
    env = {
        "DOCVL_MODEL_WORKER_SCHEDULER": scheduler,
        "DOCVL_MODEL_WORKER_DEVICE": "cuda",
        "DOCVL_MODEL_WORKER_MAX_BATCH_TOTAL_TOKENS": str(args.max_batch_total_tokens),
        "DOCVL_MODEL_WORKER_MAX_NEW_TOKENS_LIMIT": str(max(4096, args.cap)),
        "DOCVL_MODEL_WORKER_MAX_QUEUE": str(max(256, 2 * rows)),
        "DOCVL_MODEL_WORKER_PREPROCESS_THREADS": str(max(2, min(8, os.cpu_count() or 2))),
    }
    extra = ("--max-batch-size", str(rows), "--max-wait-ms", "20")
    points: list[Point] = []
    started = time.perf_counter()
    with model_worker_process(model_dir, logs / f"worker-{scheduler}.log", *extra, env=env) as (_, target):
        with InferenceClient(target) as client:
            client.wait_ready(1800)
        print(f"{scheduler}: SERVING after {time.perf_counter() - started:.0f} s", flush=True)
        drive(target, 2, 0.0, [32], images)  # warm-up: one short request per client
        for concurrency in args.concurrency:
            point = drive(target, concurrency, args.seconds, lengths, images)
            point.scheduler = scheduler
            points.append(point)
            print(
                f"{scheduler:10} c={concurrency:3}: {point.pages / point.seconds:6.2f} pages/s "
                f"{point.tokens / point.seconds:8.0f} tokens/s p50 {point.percentile(0.5):6.1f} s "
                f"mean batch {point.mean_batch:5.1f}",
                flush=True,
            )
    return points


def report(points: list[Point], args: argparse.Namespace, device: str) -> str:
    from bench.model_worker import machine

    lengths = draw_lengths(4096, seed=args.seed, median=args.median, sigma=args.sigma, cap=args.cap)
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/gpu.py` on {device}; host: {machine()}.",
        "",
        "The deepseek-vl-7b-chat configuration (SigLIP-L 384 px + SAM-B 1024 px, decoder hidden 4096 x 30 "
        "layers) with random weights in bf16, served by `docvl model-worker` on CUDA, end token ignored. "
        f"Answer lengths lognormal, median {args.median}, sigma {args.sigma}, cap {args.cap} (mean of the "
        f"draws {sum(lengths) / len(lengths):.0f} tokens). Closed-loop gRPC clients, 1 image (576 image "
        f"tokens) per request, about {args.seconds:.0f} s of load per point; continuous: "
        f"max_batch_total_tokens={args.max_batch_total_tokens}.",
        "",
        "| scheduler | concurrency | pages | pages/s | tokens/s | p50 s | p95 s | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.scheduler} | {p.concurrency} | {p.pages} | {p.pages / p.seconds:.2f} | "
            f"{p.tokens / p.seconds:.0f} | {p.percentile(0.5):.1f} | {p.percentile(0.95):.1f} | "
            f"{p.mean_batch:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU and torch sees none; nothing was run", file=sys.stderr)
        return 2
    from bench.model_worker import write_section
    from model_worker.sized import build_random

    device = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="docvl-gpu-") as tmp:
        base = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            started = time.perf_counter()
            model_dir = build_random(
                base / "deepseek-vl-7b", "7b", dtype=torch.bfloat16, ignore_eos=True, device="cuda"
            )
            print(f"built the 7B checkpoint in {time.perf_counter() - started:.0f} s", flush=True)
        points: list[Point] = []
        for scheduler in args.schedulers:
            points += run_scheduler(model_dir, scheduler, args, base)
    section = report(points, args, device)
    write_section(args.out, HEADING, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
