"""`docvl up` as a benchmark's platform: started in its own session on free ports with its own data
directory, its services found by what they run, their CPU and memory read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[1]

# What each service of `docvl up` runs, as a part of its command line, by the name its log has.
ROLES = {
    "job-runner": "--queue=jobs",
    "celery-worker": "--queue=ocr",
    "model-worker": "model-worker",
    "flow-runner": "flows serve",
    "prefect": "prefect server start",
    "api": "-m docvl api",
    "gateway": "-m docvl gateway",
    "postgres": "bin/postgres -D",
    "redis": "valkey-server",
}


class Platform:
    """`docvl up` in its own process group, on free ports, with its own data directory. `embedded`: its
    own Postgres and Valkey on free ports (as on a machine without them), else the configured ones."""

    def __init__(self, data: Path, env: dict[str, str] | None = None, *, embedded: bool = False) -> None:
        self.data = data
        self.api_port, self.model_port, self.gateway_port = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "DOCVL_DATA_DIR": str(data),
            "DOCVL_DEMO": "false",
            "DOCVL_API_PORT": str(self.api_port),
            "DOCVL_GATEWAY_PORT": str(self.gateway_port),
            "DOCVL_PREFECT_PORT": str(free_port()),
            "DOCVL_MODEL_WORKER_PORT": str(self.model_port),
            "DOCVL_LAYOUT_WORKER_PORT": str(free_port()),  # the DeepSeek-OCR-2 worker beside it
            "DOCVL_LAYOUT_WORKER_METRICS_PORT": "0",
            **(env or {}),
        }
        if embedded:
            self.env["DOCVL_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/docvl"
            self.env["DOCVL_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
        self.database_url = self.env.get("DOCVL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/docvl")
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.model = f"127.0.0.1:{self.model_port}"
        self.gateway = f"127.0.0.1:{self.gateway_port}"
        self.log = data / "up.log"
        data.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self, timeout_s: float = 600) -> None:
        """Start `docvl up` (again, on the same data and ports) and wait until it serves."""
        self.log.write_bytes(b"")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "docvl", "up"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_log("Serving.", timeout_s)
        self.key = (self.data / "api-key").read_text().strip()

    def wait_log(self, text: str, timeout_s: float, after: int = 0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace")[after:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"docvl up: no {text!r}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def service(self, role: str) -> int:
        """The pid of the service's process (the leader of its process group)."""
        marker = ROLES[role]
        for pid in children(self.process.pid):
            if marker in command_line(pid):
                return pid
        raise LookupError(f"no {role} process under docvl up")

    def kill(self, role: str) -> int:
        """SIGKILL the service with everything it started; returns the log offset to wait from."""
        offset = len(self.log.read_text(errors="replace"))
        os.killpg(self.service(role), signal.SIGKILL)
        return offset

    def kill_everything(self) -> None:
        """A power cut: every process of `docvl up` killed at once."""
        everyone = [self.process.pid, *descendants(self.process.pid)]
        groups = {os.getpgid(pid) for pid in children(self.process.pid)}
        for group in [*groups, self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait(30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in everyone):  # as after a reboot: none of them is left
            if time.monotonic() > deadline:
                raise SystemExit("processes of docvl up outlived SIGKILL")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(120)


def children(root: int) -> list[int]:
    """The direct children of `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet collected by its parent, is not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(root: int) -> list[int]:
    found, stack = [], children(root)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children(pid)
    return found


def command_line(pid: int) -> str:
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def role_of(pid: int, platform_pid: int) -> str:
    """The service a process belongs to: its ancestor among docvl up's children."""
    top = set(children(platform_pid))
    current = pid
    while current not in top and current > 1:
        try:
            current = int((Path("/proc") / str(current) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return "other"
    text = command_line(current)
    return next((role for role, marker in ROLES.items() if marker in text), "other")


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each service of the `docvl up` at `root`."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for pid in descendants(root):
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = role_of(pid, root)
        totals[role] = totals.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def rss_mib(root: int) -> dict[str, float]:
    """Memory (MiB) of each service of the `docvl up` at `root`, its processes summed: their proportional
    set size (PSS: shared pages, such as PostgreSQL's shared buffers, divided among the processes sharing
    them, so a sum counts them once); the resident set size where PSS cannot be read."""
    totals: dict[str, float] = {}
    for pid in descendants(root):
        proc = Path("/proc") / str(pid)
        try:
            rollup = (proc / "smaps_rollup").read_text()
            kib = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            try:
                kib = int((proc / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except OSError:
                continue
        role = role_of(pid, root)
        totals[role] = totals.get(role, 0.0) + kib / 1024
    return totals
