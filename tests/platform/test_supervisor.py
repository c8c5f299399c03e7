"""docvl up's supervisor with real child processes: a child killed with SIGKILL is started again (with
whatever it had started stopped first), and one that keeps dying is given up on."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from docvl.up.supervisor import StartFailed, Supervisor, log_contains

SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(600)"]


def test_a_killed_child_is_restarted(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", dict(os.environ))
    try:
        child = supervisor.start("sleeper", SLEEPER, log_contains("ready"), 30)
        first = child.process.pid
        assert supervisor.exited() is None
        os.killpg(first, signal.SIGKILL)
        child.process.wait(10)
        assert supervisor.exited() is child
        supervisor.restart(child)
        assert child.process.pid != first
        assert child.process.poll() is None
        assert supervisor.exited() is None
        assert "ready" in child.log.read_text()
    finally:
        supervisor.stop_all()
    assert child.process.poll() is not None


def test_a_child_that_keeps_dying_is_given_up(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", dict(os.environ))
    try:
        child = supervisor.start("sleeper", SLEEPER, log_contains("ready"), 30)
        for _ in range(2):
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait(10)
            supervisor.restart(child, limit=2)
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait(10)
        with pytest.raises(StartFailed, match="died 3 times"):
            supervisor.restart(child, limit=2)
    finally:
        supervisor.stop_all()
