"""Helpers shared by the tests: images, free ports, and server processes stopped by PID."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def png(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """A noise image, different per seed, as PNG bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until `predicate` returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)


@contextmanager
def model_worker_process(
    model_dir: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`docvl model-worker` on a free loopback port; yields (process, "127.0.0.1:PORT") once it listens."""
    command = [
        sys.executable,
        "-m",
        "docvl",
        "model-worker",
        "--model",
        str(model_dir),
        "--port",
        "0",
        *extra,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    try:

        def bound_port() -> int | None:
            if process.poll() is not None:
                raise AssertionError(
                    f"model worker exited with {process.returncode}:\n{log_path.read_text()}"
                )
            found = re.search(r"listening on [\d.]+:(\d+)", log_path.read_text())
            return int(found.group(1)) if found else None

        port = wait_for(bound_port, 300, "the model worker to listen")  # torch imports slowly under load
        yield process, f"127.0.0.1:{port}"
    finally:
        stop_process(process)
