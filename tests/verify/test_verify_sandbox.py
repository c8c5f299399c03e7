"""Hostile chart code in the real bubblewrap sandbox: each attack is stopped or harmless, its verdict is
recorded, and the host stays healthy (the test ends, no process or cgroup is left behind)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from docvl.verify.chart import ChartVerifier
from docvl.verify.sandbox import Limits, Sandbox

SECRET = "postgresql://docvl:s3cret-in-the-environment@db/docvl"
LIMITS = Limits(wall_s=8, cpu_s=4, memory_bytes=1024 * 1024 * 1024, processes=16)
pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    made = Sandbox(LIMITS)
    assert made.refusal is None, made.refusal
    return made


@pytest.fixture(scope="module")
def charts(sandbox: Sandbox) -> ChartVerifier:
    return ChartVerifier(sandbox)


@pytest.fixture(scope="module")
def chart_png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(3.2, 2.4), dpi=100)
    plt.bar(["a", "b"], [1, 2])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def host_stays_healthy(sandbox: Sandbox) -> Iterator[None]:
    """No process started by a test outlives it, and no cgroup of the sandbox's is left."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not left, f"processes left behind: {[p.cmdline() for p in left]}"
    if sandbox.cgroup_root is not None:
        assert not list(sandbox.cgroup_root.glob("docvl-sandbox-*"))


def observe(sandbox: Sandbox, code: str) -> dict[str, Any]:
    """Run `code` in the sandbox; it prints one JSON object of what it saw."""
    done = sandbox.run([sandbox.python, "-I", "-c", code], {})
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


PLOT = "\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\n"


def test_no_network(sandbox: Sandbox, charts: ChartVerifier, chart_png: bytes) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    connections: list[object] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except TimeoutError:
                continue

    stop = threading.Event()
    thread = threading.Thread(target=accept)
    thread.start()
    try:
        seen = observe(
            sandbox,
            "import json, socket\nout = {}\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    out['loopback'] = 'connected'\n"
            "except OSError as e:\n    out['loopback'] = type(e).__name__\n"
            "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
            "    out['internet'] = 'connected'\n"
            "except OSError as e:\n    out['internet'] = type(e).__name__\n"
            "print(json.dumps(out))",
        )
        verdict = charts.verify(
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "except OSError:\n    pass\n" + PLOT,
            chart_png,
        )
    finally:
        stop.set()
        thread.join()
        server.close()
    assert seen["loopback"] != "connected"
    assert seen["internet"] != "connected"
    assert connections == []  # the listening server on the host's loopback got nothing
    assert verdict["executed"] is True  # harmless: the code ran, without a network


def test_no_secrets_from_the_environment_files_or_pid_1(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCVL_DATABASE_URL", SECRET)  # the worker's own environment has it
    secret_file = Path(__file__).resolve().parents[2] / "var" / "api-key"
    seen = observe(
        sandbox,
        "import json, os\nout = {'env': dict(os.environ)}\n"
        "out['pids'] = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        f"for path in ['/proc/1/environ', '/proc/self/environ', {str(secret_file)!r}, "
        f"{str(Path.cwd() / 'pyproject.toml')!r}, '/etc/passwd', '/root/.bash_history']:\n"
        "    try:\n        out[path] = open(path, 'rb').read().decode('latin-1')\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        "print(json.dumps(out))",
    )
    assert SECRET not in json.dumps(seen)
    assert len(seen["pids"]) <= 3  # its own pid namespace: bwrap's init and itself, not the host's processes
    threads = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    assert set(seen["env"]) <= {"HOME", "PATH", "MPLBACKEND", "MPLCONFIGDIR", "PWD", "LC_CTYPE"} | threads
    for path in (str(secret_file), str(Path.cwd() / "pyproject.toml"), "/etc/passwd", "/root/.bash_history"):
        assert seen[path] in ("FileNotFoundError", "PermissionError"), path


def test_writes_outside_its_directory_fail(sandbox: Sandbox) -> None:
    targets = [
        "/x",
        "/tmp/x",
        "/dev/shm/x",
        "/usr/x",
        "/input/x",
        f"{sys.prefix}/x",
        str(Path.cwd() / "pwned"),
    ]
    seen = observe(
        sandbox,
        "import json\nout = {}\n"
        f"for path in {targets!r} + ['/sandbox/x']:\n"
        "    try:\n        open(path, 'w').write('x'); out[path] = 'written'\n"
        "    except OSError as e:\n        out[path] = type(e).__name__\n"
        "print(json.dumps(out))",
    )
    assert seen["/sandbox/x"] == "written"  # its own directory
    assert all(seen[path] != "written" for path in targets), seen
    assert not (Path.cwd() / "pwned").exists()
    assert not Path(sys.prefix, "x").exists()


def test_a_fork_bomb_is_stopped(sandbox: Sandbox, charts: ChartVerifier, chart_png: bytes) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    verdict = charts.verify(bomb, chart_png)
    assert verdict["executed"] is False
    assert "killed" in verdict["error"]


def test_a_fork_bomb_is_stopped_without_a_cgroup_too(chart_png: bytes) -> None:
    """Where no pids cgroup can be made (and root is not bound by RLIMIT_NPROC), the watchdog counts."""
    sandbox = Sandbox(LIMITS)
    sandbox.cgroup_root = None
    verdict = ChartVerifier(sandbox).verify("import os\nwhile True:\n    os.fork()\n", chart_png)
    assert verdict["executed"] is False
    assert "killed" in verdict["error"]


def test_endless_allocation_is_stopped(charts: ChartVerifier, chart_png: bytes) -> None:
    verdict = charts.verify("chunks = []\nwhile True:\n    chunks.append(bytearray(50_000_000))\n", chart_png)
    assert verdict["executed"] is False
    assert "MemoryError" in verdict["error"]


def test_an_endless_loop_is_stopped(charts: ChartVerifier, chart_png: bytes) -> None:
    verdict = charts.verify("while True:\n    pass\n", chart_png)
    assert verdict["executed"] is False
    assert "killed" in verdict["error"]
    assert verdict["seconds"] < LIMITS.wall_s + 3


def test_a_sleeper_is_killed_by_the_wall_clock(sandbox: Sandbox, chart_png: bytes) -> None:
    quick = Sandbox(Limits(wall_s=2, cpu_s=30))
    verdict = ChartVerifier(quick).verify("import time\ntime.sleep(60)\n", chart_png)
    assert verdict == verdict | {"executed": False, "error": "killed: timed out after 2 s"}


def test_ctypes_reaches_only_the_sandbox(sandbox: Sandbox, charts: ChartVerifier, chart_png: bytes) -> None:
    seen = observe(
        sandbox,
        "import ctypes, json, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "out = {'pid': libc.getpid(), 'uid': libc.getuid()}\n"
        f"out['open'] = libc.open({str(Path.cwd() / 'pwned-ctypes').encode()!r}, "
        "os.O_WRONLY | os.O_CREAT, 0o644)\n"
        "out['kill_all'] = libc.kill(-1, 9)\n"  # every process it can signal: only its own namespace's
        "out['unshare_net'] = libc.unshare(0x40000000)\n"
        "print(json.dumps(out))",
    )
    assert seen["open"] == -1
    assert not (Path.cwd() / "pwned-ctypes").exists()
    assert isinstance(seen["pid"], int)
    assert seen["pid"] < 10
    verdict = charts.verify("import ctypes\nctypes.CDLL(None).kill(-1, 9)\n" + PLOT, chart_png)
    assert verdict["executed"] in (True, False)  # killed itself or not: the test process is alive
    assert psutil.Process().is_running()


def test_refuses_without_bubblewrap(chart_png: bytes, tmp_path: Path) -> None:
    missing = Sandbox(LIMITS, bwrap=str(tmp_path / "no-bwrap"))
    assert missing.refusal is not None
    assert "not installed" in missing.refusal
    verdict = ChartVerifier(missing).verify(f"open({str(tmp_path / 'ran')!r}, 'w')" + PLOT, chart_png)
    assert verdict["executed"] is None
    assert "not run uncontained" in verdict["reason"]
    assert not (tmp_path / "ran").exists()


def test_refuses_where_bubblewrap_is_not_permitted(chart_png: bytes, tmp_path: Path) -> None:
    denied = tmp_path / "bwrap"  # what bwrap does where user namespaces are off: fails to set up
    denied.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    denied.chmod(0o755)
    sandbox = Sandbox(LIMITS, bwrap=str(denied))
    assert sandbox.refusal is not None
    assert "not permitted" in sandbox.refusal
    assert ChartVerifier(sandbox).verify(PLOT, chart_png)["executed"] is None


def test_a_good_chart_scores_higher_than_a_blank_figure(charts: ChartVerifier, chart_png: bytes) -> None:
    good = charts.verify(
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(3.2, 2.4))\nplt.bar(['a', 'b'], [1, 2])\n",
        chart_png,
    )
    blank = charts.verify("import matplotlib.pyplot as plt\nplt.figure()\n", chart_png)
    broken = charts.verify("import matplotlib.pyplot as plt\nplt.plot(values)\n", chart_png)
    assert good["executed"] is True
    assert blank["executed"] is True
    assert 0.0 <= blank["similarity"] < good["similarity"] <= 1.0
    assert broken["executed"] is False
    assert broken["similarity"] == 0.0
    assert "NameError" in broken["error"]
