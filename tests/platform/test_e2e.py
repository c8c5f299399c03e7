"""End to end: the README's `make run` in a fresh copy of the repository (its own .venv, its own embedded
Postgres and Redis on free ports, its own data directory), then the shared corpus over REST and the
sample chart over gRPC, then Ctrl-C (SIGINT to the process group, as a terminal sends it): every process
it started must be gone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from docvl.client import ApiError, Client
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from tests.support.helpers import ROOT, wait_for
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"  # a copy of ../shared/corpus (CC-BY-SA-4.0)
REFUSED = {"encrypted_document", "corrupt_document"}


@dataclass
class Running:
    root: Path
    process: subprocess.Popen[bytes]
    output: Path
    api_url: str
    gateway: str
    key: str
    env: dict[str, str]


def make_run(root: Path, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """`make run` in its own session, as a terminal would start it; waits until it serves."""
    with output.open("wb") as out:
        process = subprocess.Popen(
            ["make", "run"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def serving() -> bool:
        text = output.read_text(errors="replace")
        if process.poll() is not None or "Start-up failed" in text:
            raise AssertionError(f"make run stopped:\n{text[-6000:]}")
        return "\nServing. Ctrl-C stops every service." in text and (root / "var" / "api-key").is_file()

    try:
        wait_for(serving, 900, "make run to install, start and run its demo")
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        raise
    return process


def fresh_copy(target: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def platform() -> Iterator[Running]:
    # Readable by others: run as root (as CI is), the embedded PostgreSQL runs as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="docvl-e2e-"))
    base.chmod(0o755)
    root = fresh_copy(base)
    output = root / "make-run.log"
    ports = {
        name: free_port() for name in ("api", "gateway", "prefect", "model", "layout", "postgres", "redis")
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DOCVL_", "PREFECT_"))},
        "DOCVL_API_PORT": str(ports["api"]),
        "DOCVL_GATEWAY_PORT": str(ports["gateway"]),
        "DOCVL_PREFECT_PORT": str(ports["prefect"]),
        "DOCVL_MODEL_WORKER_PORT": str(ports["model"]),
        "DOCVL_LAYOUT_WORKER_PORT": str(ports["layout"]),
        **{  # each process's /metrics on a free port, not on the defaults another run may hold
            f"DOCVL_{name}_METRICS_PORT": str(free_port())
            for name in ("API", "GATEWAY", "MODEL_WORKER", "LAYOUT_WORKER", "WORKER", "JOB_RUNNER", "FLOWS")
        },
        # Nothing answers on these ports: `docvl up` starts its embedded Postgres and Redis there.
        "DOCVL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{ports['postgres']}/docvl",
        "DOCVL_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
    }
    running: Running | None = None
    try:
        process = make_run(root, env, output)
        key = (root / "var" / "api-key").read_text().strip()
        api_url, gateway = f"http://127.0.0.1:{ports['api']}", f"127.0.0.1:{ports['gateway']}"
        running = Running(root, process, output, api_url, gateway, key, env)
        yield running
    finally:
        if running is not None and running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(30)
        _kill_everything_under(root)  # services left by a test that failed midway, whoever their parent
        shutil.rmtree(base, ignore_errors=True)


def _kill_everything_under(root: Path) -> None:
    """SIGKILL every process running this copy's programs (its .venv, its files on the command line)."""
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid != os.getpid() and any(str(root) in part for part in (p.info["cmdline"] or []))
    ]
    for process in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(mine, timeout=30)


def test_the_demo_ran_on_the_tiny_model(platform: Running) -> None:
    text = platform.output.read_text(errors="replace")
    assert "TINY RANDOM" in text
    for sample in ("page.pdf (ocr)", "chart.png (chart2code)", "webpage.png (web2html, qa)"):
        assert f"── {sample}: job " in text
    assert text.count(" succeeded, 1 page(s)") == 3


def test_the_corpus_over_rest_and_a_chart_over_grpc(platform: Running) -> None:
    catalogue = json.loads((CORPUS / "files.json").read_text())["data"]
    submitted: dict[str, tuple[uuid.UUID, int]] = {}
    refused: dict[str, str] = {}
    with Client(platform.api_url, platform.key, timeout=120) as client:
        for entry in catalogue:
            try:
                job = client.submit(CORPUS / entry["path"], ["ocr"])
                submitted[entry["path"]] = (job.id, entry["pages"])
            except ApiError as exc:
                refused[entry["path"]] = exc.code
        with grpc.insecure_channel(platform.gateway) as channel:
            stub = pb_grpc.JobServiceStub(channel)
            metadata = (("x-api-key", platform.key),)
            chart = (platform.root / "docvl" / "samples" / "chart.png").read_bytes()
            job = stub.SubmitJob(pb.SubmitJobRequest(content=chart, tasks=["chart2code"]), metadata=metadata)
            updates = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=metadata, timeout=600))
        assert updates[-1].job.status == "succeeded"
        assert updates[-1].job.progress.pages_total == 1
        for path, (job_id, pages) in submitted.items():
            done = client.wait(job_id, timeout_s=900)
            assert done.status == "succeeded", (path, done.error)
            assert done.progress.pages_total == pages, path
            assert done.progress.pages_done == pages, path
    assert set(refused.values()) <= REFUSED, refused
    encrypted = {e["path"] for e in catalogue if e["encrypted"]}
    assert {p for p, code in refused.items() if code == "encrypted_document"} == encrypted
    assert len(submitted) + len(refused) == len(catalogue)
    assert len(submitted) >= len(catalogue) - 2


def test_a_power_cut_loses_no_job(platform: Running) -> None:
    """Every process of the platform killed at once mid-run (SIGKILL; both model workers, DeepSeek-VL and
    DeepSeek-OCR-2, among them), then `make run` again on the same data: the jobs that were running finish,
    each with its page count, their results written once, the reused pages of the thesis among them."""
    mix = [
        # The thesis's pages as a range: the corpus test's job rendered it whole, and a job with the same
        # page selection would take that render (docvl/jobs/render_reuse.py) instead of being mid-render
        # when the power goes; its page images are the same, so their results are still reused.
        (CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf", ["ocr"], 117, "1-117"),
        (CORPUS / "026-latex-multicolumn" / "multicolumn.pdf", ["ocr", "qa", "layout"], 3, None),
        (platform.root / "docvl" / "samples" / "page.png", ["qa"], 1, None),
    ]
    with Client(platform.api_url, platform.key, timeout=120) as client:
        jobs = [
            (
                client.submit(path, tasks, question="What?" if "qa" in tasks else None, pages=selected).id,
                pages,
            )
            for path, tasks, pages, selected in mix
        ]
        wait_for(
            lambda: client.get(jobs[0][0]).progress.pages_total >= 8, 300, "the big PDF to be mid-render"
        )
    everyone = [
        *psutil.Process(platform.process.pid).children(recursive=True),
        psutil.Process(platform.process.pid),
    ]
    for group in {os.getpgid(p.pid) for p in everyone if _alive(p)}:
        with contextlib.suppress(ProcessLookupError):  # a group gone with one killed before it
            os.killpg(group, signal.SIGKILL)
    platform.process.wait(30)
    wait_for(lambda: not [p for p in everyone if _alive(p)], 60, "every process to be gone")
    platform.process = make_run(platform.root, platform.env, platform.output)
    with Client(platform.api_url, platform.key, timeout=120) as client:
        for job_id, pages in jobs:
            done = client.wait(job_id, timeout_s=600)
            assert done.status == "succeeded", done.error
            assert (done.progress.pages_total, done.progress.pages_done) == (pages, pages)
            result = client.result(job_id)
            assert (
                len(result.pages)
                == len({(p.page, p.task) for p in result.pages})
                == pages * len(result.job.tasks)
            )
        # The thesis was processed for the same owner before (the corpus test): its pages were reused,
        # through the power cut too, and each still written once (above).
        thesis = client.result(jobs[0][0])
        assert sum(p.reused_from is not None for p in thesis.pages) > 0
    assert "Serving." in platform.output.read_text(errors="replace")


def test_ctrl_c_stops_every_process(platform: Running) -> None:
    make = psutil.Process(platform.process.pid)
    started = make.children(recursive=True)
    sessions = {p.pid for p in started if _session(p) != _session(make)}
    assert len(started) >= 8  # make, docvl up, and every service it started with their own children
    assert sessions  # the services run in their own sessions: only `docvl up` can stop them
    os.killpg(platform.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    platform.process.wait(120)
    wait_for(lambda: not [p for p in started if _alive(p)], 60, "every started process to exit")
    assert "Stopped." in platform.output.read_text(errors="replace")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session(process: psutil.Process) -> int:
    return os.getsid(process.pid)
