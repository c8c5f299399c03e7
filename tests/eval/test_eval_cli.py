"""`docvl eval` interrupted with Ctrl-C while its submissions hang: it exits 130 at once, no report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from docvl.eval.manifest import MANIFEST
from tests.support.helpers import ROOT, png, stop_process


def test_ctrl_c_stops_a_run_whose_submissions_hang(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(png(5))
    item = {"id": "a", "file": "img.png", "task": "ocr", "reference": "x"}
    (tmp_path / MANIFEST).write_text(json.dumps(item) + "\n")
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never answers
        server.settimeout(60)
        port = server.getsockname()[1]
        command = [
            sys.executable, "-m", "docvl", "eval", "--set", str(tmp_path), "--out", str(tmp_path / "r.md"),
            "--api", f"http://127.0.0.1:{port}", "--api-key", "k",
        ]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            connection, _ = server.accept()  # the submission is under way
            with connection:
                os.kill(process.pid, signal.SIGINT)
                _, stderr = process.communicate(timeout=20)
        finally:
            stop_process(process)  # type: ignore[arg-type]
    assert process.returncode == 130, stderr
    assert "interrupted: no report written" in stderr
    assert not (tmp_path / "r.md").exists()
