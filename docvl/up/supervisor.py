"""Child processes of `docvl up`: each started in its own process group with its log in a file, waited
for until ready, restarted when it dies (as compose's `restart: unless-stopped` and Kubernetes do), and
stopped (with everything it started) in reverse order."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StartFailed(Exception):
    pass


@dataclass
class Spec:
    """How to start a child, kept to start it again."""

    name: str
    command: list[str]
    ready: Callable[[Path], bool]
    timeout_s: float
    user: str | None = None
    cwd: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    spec: Spec | None = None
    restarts: list[float] = field(default_factory=list)  # when it was restarted (monotonic)


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        self,
        name: str,
        command: list[str],
        ready: Callable[[Path], bool],
        timeout_s: float,
        *,
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Child:
        """Start the command and wait until `ready(log path)` says so; StartFailed if it exits first or
        does not get ready in time (the caller then stops everything)."""
        spec = Spec(name, command, ready, timeout_s, user, cwd, stop_signal)
        child = Child(name, self._launch(spec), self.log_dir / f"{name}.log", stop_signal, spec)
        self.children.append(child)
        self._wait_ready(child)
        return child

    def _launch(self, spec: Spec) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{spec.name}.log"
        if log.exists():  # keep the last run's log; readiness is read from this run's alone
            log.replace(log.with_suffix(".log.1"))
        out: IO[bytes]
        with log.open("wb") as out:
            return subprocess.Popen(
                spec.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=spec.cwd,
                user=spec.user,
                start_new_session=True,  # its own process group: stopped with all it starts
            )

    def _wait_ready(self, child: Child) -> None:
        assert child.spec is not None
        spec, process = child.spec, child.process
        deadline = time.monotonic() + spec.timeout_s
        while True:
            if process.poll() is not None:
                raise StartFailed(
                    f"{spec.name} exited with {process.returncode} while starting:\n{tail(child.log)}"
                )
            try:
                if spec.ready(child.log):
                    return
            except Exception:  # not answering yet
                pass
            if time.monotonic() > deadline:
                raise StartFailed(
                    f"{spec.name} was not ready after {spec.timeout_s:.0f} s:\n{tail(child.log)}"
                )
            time.sleep(0.25)

    def exited(self) -> Child | None:
        """A child that has stopped on its own, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def restart(self, child: Child, *, limit: int = 5, window_s: float = 300.0) -> None:
        """Start a child that died again (what it had started is stopped first) and wait until it is ready.
        StartFailed when it does not come back, or has died more than `limit` times in `window_s`."""
        assert child.spec is not None
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < window_s] + [now]
        if len(child.restarts) > limit:
            raise StartFailed(f"{child.name} died {len(child.restarts)} times in {window_s:.0f} s: giving up")
        _signal_group(child.process, signal.SIGKILL)  # whatever it started that is still running
        child.process = self._launch(child.spec)
        self._wait_ready(child)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        """Signal each process group (SIGTERM, or the child's own stop signal), newest first; SIGKILL what
        is left after `timeout_s`."""
        for child in reversed(self.children):
            _signal_group(child.process, child.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout_s)
            _signal_group(child.process, signal.SIGKILL)  # the group's stragglers, if any
            if child.process.poll() is None:
                child.process.wait(5)
        self.children.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def log_contains(text: str) -> Callable[[Path], bool]:
    return lambda log: text in log.read_text(errors="replace")
