"""Benchmark of continuous batching against the window batcher, side by side in one run.

Starts `docvl model-worker` with the tiny model (64/128 px) once per scheduler and drives it over gRPC:
  - mixed lengths: 16 closed-loop clients, max_new_tokens drawn from 8..256 (seeded, the same requests for
    both schedulers): tokens/s, and p50 latency of the short requests (max_new_tokens <= 64);
  - head of line: a 4-token request sent while a 256-token one runs: its latency, and whether it ended first;
  - concurrency 1: p50 latency of lone 64-token requests.
Checks that both schedulers gave every request the same answer (greedy). Prints a Markdown section.

    .venv/bin/python bench/continuous.py [--requests 96] [--seed 19]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.model_worker import SAMPLES, closed_loop, machine  # noqa: E402
from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest, InferenceResult  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from model_worker.tiny import build_tiny  # noqa: E402
from tests.support.helpers import model_worker_process  # noqa: E402

SCHEDULERS = ("window", "continuous")
CLIENTS = 16
SHORT = 64


@dataclass
class Mixed:
    seconds: float
    tokens: int
    short_latencies: list[float]
    all_latencies: list[float]
    texts: dict[int, str]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass
class Result:
    scheduler: str
    mixed: Mixed
    hol_short: list[float]  # the 4-token request's latency, per try
    hol_long: list[float]  # the 256-token request's latency, per try
    hol_first: int  # tries where the short one ended first
    alone: list[float]


def ask(client: InferenceClient, image: bytes, max_new: int) -> tuple[float, InferenceResult]:
    request = InferenceRequest(TaskKind.OCR, [image], params=GenerationParams(max_new))
    started = time.perf_counter()
    result = client.generate(request, timeout=600)
    return time.perf_counter() - started, result


def mixed(target: str, plan: list[tuple[int, int]], images: list[bytes]) -> Mixed:
    """`plan` (image, max_new_tokens) requests from CLIENTS closed-loop clients."""
    lock = threading.Lock()
    counter = iter(range(len(plan)))
    latencies: dict[int, float] = {}
    texts: dict[int, str] = {}
    tokens = 0
    errors: list[BaseException] = []

    def client_loop() -> None:
        nonlocal tokens
        with InferenceClient(target) as client:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                image, max_new = plan[index]
                try:
                    seconds, result = ask(client, images[image], max_new)
                except BaseException as exc:  # reported after the run
                    errors.append(exc)
                    return
                with lock:
                    latencies[index] = seconds
                    texts[index] = result.text
                    tokens += result.generated_tokens

    seconds = closed_loop(CLIENTS, client_loop, errors)
    short = [latencies[i] for i, (_, n) in enumerate(plan) if n <= SHORT]
    return Mixed(seconds, tokens, short, list(latencies.values()), texts)


def head_of_line(target: str, image: bytes, tries: int) -> tuple[list[float], list[float], int]:
    shorts, longs, first = [], [], 0
    with InferenceClient(target) as long_client, InferenceClient(target) as short_client:
        for _ in range(tries):
            ended: dict[str, float] = {}
            long_latency: list[float] = []

            def run_long(
                c: InferenceClient = long_client,
                out: list[float] = long_latency,
                at: dict[str, float] = ended,
            ) -> None:
                out.append(ask(c, image, 256)[0])
                at["long"] = time.perf_counter()

            thread = threading.Thread(target=run_long)
            thread.start()
            time.sleep(0.15)  # the long one is generating by now
            shorts.append(ask(short_client, image, 4)[0])
            ended["short"] = time.perf_counter()
            thread.join()
            longs.append(long_latency[0])
            first += ended["short"] < ended["long"]
    return shorts, longs, first


def bench(scheduler: str, model_dir: Path, plan: list[tuple[int, int]], logs: Path) -> Result:
    images = [path.read_bytes() for path in SAMPLES]
    args = ["--max-batch-size", str(CLIENTS), "--max-wait-ms", "20"]
    env = {"DOCVL_MODEL_WORKER_SCHEDULER": scheduler}
    with model_worker_process(model_dir, logs / f"{scheduler}.log", *args, env=env) as (_, target):
        with InferenceClient(target) as client:
            client.wait_ready(600)
            for _ in range(3):  # warm-up
                ask(client, images[0], 16)
            alone = [ask(client, images[i % 3], 64)[0] for i in range(8)]
        run = mixed(target, plan, images)
        shorts, longs, first = head_of_line(target, images[0], 5)
    result = Result(scheduler, run, shorts, longs, first, alone)
    print(
        f"{scheduler:10}: {run.tokens_per_s:7.0f} tokens/s, "
        f"short p50 {p50(run.short_latencies) * 1000:6.0f} ms, "
        f"4-token behind 256: {p50(shorts) * 1000:6.0f} ms (first {first}/{len(shorts)}), "
        f"alone p50 {p50(alone) * 1000:5.0f} ms",
        flush=True,
    )
    return result


def p50(values: list[float]) -> float:
    return statistics.median(values)


def report(results: list[Result], plan: list[tuple[int, int]], seed: int) -> str:
    window, continuous = results
    short = sum(1 for _, n in plan if n <= SHORT)
    lines = [
        "### Model worker: continuous batching against the window batcher (tiny model, CPU)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/continuous.py` in one run on: {machine()}.",
        "",
        "`docvl model-worker`, tiny model at 64/128 px, driven over gRPC. Mixed lengths: "
        f"{CLIENTS} closed-loop clients send {len(plan)} OCR requests ({short} of them short, "
        f"max_new_tokens ≤ {SHORT}) with "
        f"max_new_tokens drawn from 8..256 (seed {seed}), the same requests for both schedulers; tokens/s "
        "counts the tokens generated (the random model sometimes ends early). Head of line: a 4-token "
        "request sent 0.15 s after a 256-token one, 5 tries. Alone: 8 lone 64-token requests. Both runs use "
        f"max_batch_size={CLIENTS}; window: max_wait_ms=20; continuous: the default token budget. The script "
        "checks that both schedulers gave every request the same answer.",
        "",
        "| scheduler | tokens/s | p50 short ms | p95 short ms | p50 all ms | 4-token behind 256: p50 ms | "
        "ended first | the 256-token one: p50 ms | alone p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.mixed
        ordered = sorted(m.short_latencies)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        lines.append(
            f"| {r.scheduler} | {m.tokens_per_s:.0f} | {p50(m.short_latencies) * 1000:.0f} | "
            f"{p95 * 1000:.0f} | {p50(m.all_latencies) * 1000:.0f} | {p50(r.hol_short) * 1000:.0f} | "
            f"{r.hol_first}/{len(r.hol_short)} | "
            f"{p50(r.hol_long) * 1000:.0f} | {p50(r.alone) * 1000:.0f} |"
        )
    w, c = window.mixed, continuous.mixed
    lines += [
        "",
        f"Continuous ÷ window: tokens/s {c.tokens_per_s / w.tokens_per_s:.2f}×, p50 of the short requests "
        f"{p50(c.short_latencies) / p50(w.short_latencies):.2f}×, the 4-token request behind a 256-token one "
        f"{p50(continuous.hol_short) / p50(window.hol_short):.2f}×, "
        f"alone {p50(continuous.alone) / p50(window.alone):.2f}×.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    plan = [(rng.randrange(len(SAMPLES)), rng.randint(8, 256)) for _ in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny(work / "tiny-small", small=True)
        results = [bench(scheduler, model_dir, plan, work) for scheduler in SCHEDULERS]
    differ = [i for i in range(len(plan)) if results[0].mixed.texts[i] != results[1].mixed.texts[i]]
    if differ:
        raise AssertionError(f"{len(differ)} requests got different answers, the first: {differ[0]}")
    print()
    print(report(results, plan, args.seed))


if __name__ == "__main__":
    main()
