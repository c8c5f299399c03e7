"""The real-size path on this CPU: DeepSeek-VL 1.3B with random weights served by `docvl model-worker`.

Builds the deepseek-vl-1.3b-chat configuration with random weights (model_worker/sized.py; stored in bf16,
run in fp32 since load_checkpoint runs fp32 on the CPU) into a temporary directory, with its end token
ignored so every answer runs to its max_new_tokens, starts `docvl model-worker` on it once per scheduler
and measures over gRPC:
  - load: process start to SERVING (loading, the worker's warm-up included), and the worker's RSS (psutil);
  - prefill: a 1-image request with max_new_tokens=1 (the worker's inference time);
  - decode at batch 1: (time of a request with 1 + N new tokens - its prefill) / N;
  - decode at batch 8: 8 concurrent requests with 1 + N new tokens; a decoding step's time is estimated as
    (the batch's inference time - 8 x the batch-1 prefill) / N (prefill is compute-bound, so 8 prompts cost
    about 8 times one).
Prints a Markdown section and writes it into docs/benchmarks.md.

    .venv/bin/python bench/real_size.py [--new-tokens 16] [--schedulers window,continuous]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.model_worker import SAMPLES, machine, write_section  # noqa: E402
from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest, InferenceResult  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from model_worker.sized import build_random, meta_model, parameter_count  # noqa: E402
from tests.support.helpers import model_worker_process  # noqa: E402

HEADING = "### Real size: DeepSeek-VL 1.3B, random weights (CPU)"
BATCH = 8


@dataclass
class Figures:
    scheduler: str
    load_s: float
    rss_ready_gib: float
    rss_peak_gib: float
    prefill_s: float
    decode_b1_s: float
    batch8_s: float
    decode_b8_step_s: float
    new_tokens: int

    @property
    def decode_b8_token_s(self) -> float:
        return self.decode_b8_step_s / BATCH


class RssPeak:
    """Samples a process's resident memory every 0.2 s and keeps the largest."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        rss = int(self.process.memory_info().rss)
        self.peak = max(self.peak, rss)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.now()
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def ask(target: str, image: bytes, max_new: int) -> InferenceResult:
    with InferenceClient(target) as client:
        request = InferenceRequest(TaskKind.OCR, [image], params=GenerationParams(max_new))
        return client.generate(request, timeout=3600)


def concurrent(target: str, images: list[bytes], max_new: int) -> tuple[float, list[InferenceResult]]:
    results: list[InferenceResult] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results.append(ask(target, images[i % len(images)], max_new))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BATCH)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]!r}")
    return time.perf_counter() - started, results


def measure(model_dir: Path, scheduler: str, new_tokens: int, logs: Path) -> Figures:
    images = [path.read_bytes() for path in SAMPLES]
    log = logs / f"worker-{scheduler}.log"
    env = {"DOCVL_MODEL_WORKER_SCHEDULER": scheduler}
    started = time.perf_counter()
    with model_worker_process(
        model_dir, log, "--max-batch-size", str(BATCH), "--max-wait-ms", "200", env=env
    ) as (
        process,
        target,
    ):
        rss = RssPeak(process.pid)
        with InferenceClient(target) as client:
            client.wait_ready(3600)
        load_s = time.perf_counter() - started
        rss_ready = rss.now()
        print(f"{scheduler}: SERVING after {load_s:.1f} s, RSS {rss_ready / 2**30:.2f} GiB", flush=True)
        prefills = [ask(target, images[0], 1).timings.inference_ms / 1000 for _ in range(1)]
        prefill_s = statistics.median(prefills)
        print(f"{scheduler}: prefill {prefills} s", flush=True)
        long = ask(target, images[0], 1 + new_tokens)
        if long.generated_tokens != 1 + new_tokens:
            raise AssertionError(f"expected {1 + new_tokens} tokens, got {long.generated_tokens}")
        decode_b1 = (long.timings.inference_ms / 1000 - prefill_s) / new_tokens
        print(f"{scheduler}: decode at batch 1 {decode_b1:.3f} s/token", flush=True)
        wall, results = concurrent(target, images, 1 + new_tokens)
        batch_sizes = {r.timings.batch_size for r in results}
        inference_s = max(r.timings.inference_ms for r in results) / 1000
        step = (inference_s - BATCH * prefill_s) / new_tokens
        print(
            f"{scheduler}: batch of {BATCH}: {wall:.1f} s wall, inference {inference_s:.1f} s, batch sizes "
            f"{sorted(batch_sizes)}, decode step {step:.3f} s",
            flush=True,
        )
        rss.stop()
    return Figures(
        scheduler,
        load_s,
        rss_ready / 2**30,
        rss.peak / 2**30,
        prefill_s,
        decode_b1,
        wall,
        step,
        new_tokens,
    )


def decode_steps(model_dir: Path, context: int = 600, steps: int = 16) -> dict[int, float]:
    """Median seconds of one decoding step at batch 1 and 8, in-process (load_checkpoint, DynamicCache).

    The step after a `context`-token prompt (random ids, text only: a decoding step costs the same whatever
    the prompt held); robust where the subtraction over gRPC drowns in the noise of a shared machine.
    """
    import torch
    from transformers import DynamicCache

    from model_worker.checkpoint import load_checkpoint

    loaded = load_checkpoint(model_dir, device="cpu")
    language = loaded.model
    medians: dict[int, float] = {}
    with torch.inference_mode():
        for batch in (1, BATCH):
            ids = torch.randint(3, 500, (batch, context))
            cache = DynamicCache()
            out = language(input_ids=ids, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            times = []
            for _ in range(steps):
                started = time.perf_counter()
                out = language(input_ids=token, past_key_values=cache, use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
                times.append(time.perf_counter() - started)
            medians[batch] = statistics.median(times)
            print(
                f"in-process decode step at batch {batch}: {medians[batch]:.3f} s (median of {steps})",
                flush=True,
            )
    return medians


def report(figures: list[Figures], build_s: float, params: int) -> str:
    built = (
        f"{build_s:.0f} s to build and save" if build_s else "built beforehand, about 70 s to build and save"
    )
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/real_size.py` on: {machine()}.",
        "",
        f"The deepseek-vl-1.3b-chat configuration ({params / 1e9:.2f} B parameters: SigLIP-L 384 px, "
        "LLaMA-style decoder hidden 2048 x 24 layers, vocabulary 102,400) with random weights, built by "
        f"`model_worker/sized.py` (stored in bf16; {built}) and served by `docvl model-worker` in **fp32** "
        "(the CPU dtype of "
        "`load_checkpoint`), torch's default threads. One 1-image OCR request is 576 image tokens plus about "
        "40 prompt tokens; the end token is ignored, so every answer runs to its max_new_tokens. Load: "
        "process start to SERVING (the worker's warm-up included). Prefill: the worker's inference time of a "
        f"request with max_new_tokens=1. Decode: {figures[0].new_tokens} more tokens; at batch 1 from one "
        f"request, at batch {BATCH} from {BATCH} concurrent requests (max_batch_size={BATCH}, "
        f"max_wait_ms=200), the step's time estimated as (inference time - {BATCH} x prefill) / tokens.",
        "",
        "| scheduler | load s | RSS at SERVING GiB | RSS peak GiB | prefill s | decode s/token, batch 1 | "
        f"batch {BATCH} wall s | decode s/step, batch {BATCH} | s/token per row, batch {BATCH} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.scheduler} | {f.load_s:.1f} | {f.rss_ready_gib:.2f} | {f.rss_peak_gib:.2f} | "
            f"{f.prefill_s:.2f} | {f.decode_b1_s:.3f} | {f.batch8_s:.1f} | {f.decode_b8_step_s:.3f} | "
            f"{f.decode_b8_token_s:.3f} |"
        )
    lines += [
        "",
        "Configuration values used by `model_worker/sized.py` (from the published deepseek-vl-1.3b-chat "
        "and deepseek-vl-7b-chat configs; transformers' `DeepseekVLConfig` / `DeepseekVLHybridConfig` "
        "defaults are SigLIP-B 224 px, so every value is set explicitly): decoder `llama`, vocabulary "
        "102,400, max_position_embeddings 16384, rms_norm_eps 1e-6, rope_theta 10000, SiLU, untied output"
        " layer; 1.3B: hidden 2048, 24 layers, 16 heads (16 KV heads), intermediate 5632; 7B: hidden "
        "4096, 30 layers, 32 heads (32 KV heads), intermediate 11008. SigLIP-L/16 384 px: hidden 1024, 24"
        " layers, 16 heads, intermediate 4096, no pooling head (576 image tokens). 7B only, SAM-B 1024 "
        "px: hidden 768, 12 layers, 12 heads, mlp 3072, global attention at layers 2, 5, 8, 11, window "
        "14, 256 output channels. Parameters: 1.96 B and 7.33 B (the Hub lists 1.98 B and 7.3 B). The "
        "tokenizer is the tiny model's offline BPE (about 550 tokens, DeepSeek-VL's special tokens) with "
        "the embedding kept at 102,400 rows; the image token id is the tokenizer's, not 100015.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=16, help="decoded tokens measured after the first")
    parser.add_argument("--schedulers", default="window,continuous", help="window, continuous or both")
    parser.add_argument("--model-dir", type=Path, help="reuse a checkpoint built by model_worker/sized.py")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--decode-only",
        action="store_true",
        help="only time decoding steps in-process on --model-dir (batch 1 and 8), print them",
    )
    args = parser.parse_args()
    if args.decode_only:
        decode_steps(args.model_dir)
        return
    params = parameter_count(meta_model("1.3b"))
    with tempfile.TemporaryDirectory(prefix="docvl-real-size-") as tmp:
        base = Path(tmp)
        build_s = 0.0
        model_dir = args.model_dir
        if model_dir is None:
            started = time.perf_counter()
            model_dir = build_random(base / "deepseek-vl-1.3b", "1.3b", ignore_eos=True)
            build_s = time.perf_counter() - started
            print(f"built in {build_s:.0f} s", flush=True)
        figures = [measure(model_dir, name, args.new_tokens, base) for name in args.schedulers.split(",")]
    section = report(figures, build_s, params)
    write_section(args.out, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
