"""TEST-ONLY: the real model worker, steered into scripted answers, as a process of its own.

    python -m tests.support.scripted_worker --model DIR --script FILE.json [--port 0] [--scheduler window]
        [--host H] [--device cpu] [--max-batch-size N] [--max-wait-ms MS] [--log-level info]

It serves the checkpoint in DIR (a tiny random one: `docvl model build-tiny --family deepseek-ocr2 DIR`)
with the production server (model_worker.transport.server: gRPC, health, reflection, both schedulers,
preprocessing, graceful shutdown) and the production loader, plus one logits hook: `ScriptedAnswers`
(tests/support/scripted.py), which steers the random model so that every request of a task named in
FILE.json is answered with that text, exactly (then STOP). FILE.json is one JSON object from task names to
answer texts, e.g. {"layout": "<|ref|>title<|/ref|><|det|>[[118, 62, 880, 104]]<|/det|>\\n# Report"}.
Other settings come from DOCVL_MODEL_WORKER_* as for `docvl model-worker`. Like it, it logs
"listening on HOST:PORT" once the port is bound, which is how `scripted_worker_process` finds a free port.

This is a steering of a junk model for platform tests that need real answers (a grounded page to parse into
blocks, say) through real processes; it is never part of a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_worker.service import InferenceService
    from model_worker.settings import ModelWorkerSettings


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.scripted_worker", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--script", type=Path, required=True, help="JSON object: task name -> answer text")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--device")
    parser.add_argument("--scheduler", choices=["window", "continuous"])
    parser.add_argument("--max-batch-size", type=int)
    parser.add_argument("--max-wait-ms", type=int)
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ[name] = value  # as `docvl model-worker`: nothing is downloaded
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from docvl.observability import logs, tracing
    from model_worker.settings import ModelWorkerSettings
    from model_worker.transport.server import serve

    logs.setup_logging("docvl-model-worker", args.log_level)
    tracing.setup_tracing("docvl-model-worker")  # as `docvl model-worker`: when OTEL_* configure it
    script_path: Path = args.script
    from tests.support.scripted import load_script

    answers = load_script(script_path)  # read now: a bad script fails before the port opens
    overrides: dict[str, Any] = {
        "model_dir": args.model,
        "host": args.host,
        "port": args.port,
        "device": args.device,
        "scheduler": args.scheduler,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
    }
    settings = ModelWorkerSettings(**{k: v for k, v in overrides.items() if v is not None})

    def load(s: ModelWorkerSettings) -> InferenceService:
        from model_worker.transport.server import load_service
        from tests.support.scripted import ScriptedAnswers

        service = load_service(s)
        ScriptedAnswers.install(service.engine, answers)
        return service

    asyncio.run(serve(settings, load))


@contextmanager
def scripted_worker_process(
    model_dir: Path, script: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """This module as a process on a free loopback port; yields (process, "127.0.0.1:PORT") once it listens
    (not yet SERVING: wait with InferenceClient.wait_ready). Stopped by its PID on exit."""
    from tests.support.helpers import ROOT, stop_process, wait_for

    command = [sys.executable, "-m", "tests.support.scripted_worker", "--model", str(model_dir)]
    command += ["--script", str(script), "--port", "0", *extra]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    try:

        def bound_port() -> int | None:
            if process.poll() is not None:
                raise AssertionError(
                    f"scripted worker exited with {process.returncode}:\n{log_path.read_text()}"
                )
            found = re.search(r"listening on [\d.]+:(\d+)", log_path.read_text())
            return int(found.group(1)) if found else None

        port = wait_for(bound_port, 300, "the scripted worker to listen")  # torch imports slowly under load
        yield process, f"127.0.0.1:{port}"
    finally:
        stop_process(process)


if __name__ == "__main__":
    main()
