"""Running untrusted Python (a model's chart code) contained by the operating system, with bubblewrap.

Each run is a fresh `bwrap` with every namespace unshared (no network: the sandbox has only a loopback
interface that is down; its own pid namespace, torn down with its first process), an empty environment,
read-only binds of the Python installation alone, a small memory-backed directory (`/sandbox`) as the only
writable place, rlimits (CPU time, address space, file size, open files) and a wall-clock timeout that
kills the whole sandbox. The number of processes is capped by a pids cgroup where one can be made here,
otherwise (and for root, whom RLIMIT_NPROC does not bind) by counting the sandbox's processes while it
runs and killing it past the cap. Where bubblewrap is missing or not permitted, `Sandbox.refusal` says why
and nothing is run at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
BWRAP = "/usr/bin/bwrap"
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
_POLL_S = 0.02


@dataclass(frozen=True)
class Limits:
    wall_s: float = 20.0
    cpu_s: int = 15
    memory_bytes: int = 1536 * 1024 * 1024  # address space per process
    file_bytes: int = 16 * 1024 * 1024  # largest file written, and the stdout/stderr captured
    open_files: int = 256
    processes: int = 16
    scratch_bytes: int = 32 * 1024 * 1024  # the writable /sandbox (memory-backed)


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # None: killed by the sandbox (see `killed`)
    stdout: bytes
    stderr: str
    killed: str | None  # why the sandbox killed it: timed out, too many processes
    seconds: float


class Sandbox:
    """Runs commands in a bubblewrap sandbox. Made once per worker process: it checks at start that it
    can contain code here (`refusal` is None) and how it caps processes (`process_cap`)."""

    def __init__(self, limits: Limits | None = None, bwrap: str = BWRAP) -> None:
        self.limits = limits or Limits()
        self.bwrap = bwrap
        self.python = sys.executable
        self.cgroup_root = _writable_cgroup_root()
        self.process_cap = "cgroup" if self.cgroup_root is not None else "watchdog"
        self.refusal: str | None = None
        self.refusal = self._probe()
        if self.refusal is not None:
            log.warning("chart code will not be run: %s", self.refusal)
        else:
            log.info("chart code runs in bubblewrap; processes capped by %s", self.process_cap)

    def _probe(self) -> str | None:
        if not Path(self.bwrap).is_file() or not os.access(self.bwrap, os.X_OK):
            return f"bubblewrap ({self.bwrap}) is not installed: untrusted code is not run uncontained"
        try:
            done = self.run([sys.executable, "-I", "-c", "print('ok')"], {}, probe=True)
        except OSError as exc:
            return f"bubblewrap cannot be started here ({exc}): untrusted code is not run uncontained"
        if done.returncode != 0 or done.stdout.strip() != b"ok":
            why = done.stderr.strip().splitlines()[-1:] or [done.killed or f"exit {done.returncode}"]
            return f"bubblewrap is not permitted here ({why[0][:200]}): untrusted code is not run uncontained"
        return None

    def run(
        self, argv: list[str], inputs: dict[str, bytes], *, probe: bool = False, wall_s: float | None = None
    ) -> Completed:
        """Run `argv` in a fresh sandbox, the `inputs` readable (only) under /input, cwd /sandbox."""
        if self.refusal is not None and not probe:
            raise RuntimeError(self.refusal)
        limit = wall_s if wall_s is not None else self.limits.wall_s
        with tempfile.TemporaryDirectory(prefix="docvl-sandbox-") as host_dir:
            host = Path(host_dir)
            (host / "input").mkdir()
            for name, content in inputs.items():
                (host / "input" / name).write_bytes(content)
            nproc = _nproc_limit(self.limits.processes)
            with (
                self._cgroup() as cgroup,
                (host / "stdout").open("wb") as out,
                (host / "stderr").open("wb") as err,
            ):
                started = time.monotonic()
                process = subprocess.Popen(
                    self._command(host / "input", argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env={},  # nothing to read in /proc/1/environ either
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=lambda: self._contain(cgroup, nproc),
                )
                killed = self._watch(process, started, limit, counted=cgroup is None)
            return Completed(
                returncode=None if killed else process.returncode,
                stdout=_read(host / "stdout", self.limits.file_bytes),
                stderr=_read(host / "stderr", 64 * 1024).decode("utf-8", "replace"),
                killed=killed,
                seconds=time.monotonic() - started,
            )

    def _command(self, inputs: Path, argv: list[str]) -> list[str]:
        command = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv", "HOME", "/sandbox",
            "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "MPLBACKEND", "Agg",
            "--setenv", "MPLCONFIGDIR", "/sandbox/.matplotlib",
            # one thread per numerical library: threads count against the process cap too
            "--setenv", "OPENBLAS_NUM_THREADS", "1",
            "--setenv", "OMP_NUM_THREADS", "1",
            "--setenv", "MKL_NUM_THREADS", "1",
        ]  # fmt: skip
        for path in _python_paths():
            command += ["--ro-bind", str(path), str(path)]
        if Path("/etc/fonts").is_dir():  # fontconfig's settings (fonts themselves are in /usr)
            command += ["--ro-bind", "/etc/fonts", "/etc/fonts"]
        for name in ("lib", "lib64", "bin", "sbin"):
            root = Path("/") / name
            if root.is_symlink():
                command += ["--symlink", os.readlink(root), str(root)]
            elif root.is_dir():
                command += ["--ro-bind", str(root), str(root)]
        command += [
            "--ro-bind", str(inputs), "/input",
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(self.limits.scratch_bytes), "--tmpfs", "/sandbox",
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", "/sandbox",
            "--",
        ]  # fmt: skip
        return command + argv

    def _contain(self, cgroup: Path | None, nproc: int | None) -> None:
        """In the child, before bwrap starts: join the cgroup and set the rlimits its processes inherit."""
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        limits = self.limits
        for kind, soft, hard in (
            (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1),  # SIGXCPU, then SIGKILL a second later
            (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
            (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            resource.setrlimit(kind, (soft, hard))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    def _watch(
        self, process: subprocess.Popen[bytes], started: float, limit: float, counted: bool
    ) -> str | None:
        """Wait for the sandbox; kill all of it on the wall-clock limit or, when no cgroup caps its
        processes, once it has more than the cap. Returns why it was killed, or None."""
        killed: str | None = None
        while process.poll() is None:
            if time.monotonic() - started > limit:
                killed = f"timed out after {limit:g} s"
            elif counted and _descendants(process.pid) > self.limits.processes + 2:  # bwrap's own two
                killed = f"started more than {self.limits.processes} processes"
            if killed:
                _kill_tree(process)
                break
            time.sleep(_POLL_S)
        process.wait()
        return killed

    @contextlib.contextmanager
    def _cgroup(self) -> Iterator[Path | None]:
        if self.cgroup_root is None:
            yield None
            return
        group = self.cgroup_root / f"docvl-sandbox-{uuid.uuid4().hex[:12]}"
        group.mkdir()
        try:
            (group / "pids.max").write_text(str(self.limits.processes + 2))
            yield group
        finally:
            _remove_cgroup(group)


def _nproc_limit(processes: int) -> int | None:
    """RLIMIT_NPROC counts every task (threads too) of the real user, and does not bind root: for another
    user, the tasks it has now plus the sandbox's share; None for root (the cgroup or the watchdog caps)."""
    uid = os.getuid()
    if uid == 0:
        return None
    tasks = 0
    for process in psutil.process_iter(["uids", "num_threads"]):
        uids, threads = process.info["uids"], process.info["num_threads"]
        if uids is not None and uids.real == uid and threads:
            tasks += threads
    return tasks + processes + 2


def _python_paths() -> list[Path]:
    """What the sandboxed Python needs read: its installation and environment (and nothing else)."""
    wanted = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    wanted |= {Path(p) for p in sys.path if p and Path(p).is_dir() and p.endswith("-packages")}
    wanted = {p.resolve() for p in wanted} | wanted
    kept = sorted(wanted, key=lambda p: len(p.parts))
    roots: list[Path] = []
    for path in kept:
        if not any(path.is_relative_to(root) for root in roots) and not _system(path):
            roots.append(path)
    return [Path("/usr"), *roots]


def _system(path: Path) -> bool:
    return path.is_relative_to("/usr")


def _writable_cgroup_root() -> Path | None:
    """A cgroup hierarchy with the pids controller where this process may make groups, or None."""
    for root in _CGROUP_ROOTS:
        if not _has_pids_controller(root):
            continue
        probe = root / f"docvl-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if (probe / "pids.max").exists():
                return root
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
    return None


def _has_pids_controller(root: Path) -> bool:
    if root.name == "pids":  # cgroup v1: the pids hierarchy
        return (root / "cgroup.procs").exists()
    try:  # cgroup v2: pids enabled for the children of this group
        return "pids" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _remove_cgroup(group: Path) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            group.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            for pid in _cgroup_pids(group):  # none should be left; kill any that are
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(_POLL_S)


def _cgroup_pids(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _descendants(pid: int) -> int:
    try:
        return len(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return 0


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    """Kill bwrap's process group and everything below it: its pid namespace's first process dies with
    it, and the kernel then kills every process in the namespace."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(limit)
