"""The start-up demo of `docvl up`: the bundled samples through the REST API, with their results printed."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from docvl.client import Client
from docvl.jobs.views import JobView

SAMPLES = [
    ("page.pdf", ["ocr"], None),
    ("chart.png", ["chart2code"], None),
    ("webpage.png", ["web2html", "qa"], "What is this page about?"),
]


def sample(name: str) -> Path:
    return Path(str(resources.files("docvl") / "samples" / name))


def run(client: Client, say: Callable[[str], None]) -> list[JobView]:
    """Submit each sample, wait for it, print what came out; returns the finished jobs."""
    finished: list[JobView] = []
    for name, tasks, question in SAMPLES:
        job = client.submit(sample(name), tasks, question=question)
        done = client.wait(job.id, timeout_s=600)
        finished.append(done)
        pages = done.progress.pages_total
        say(f"\n── {name} ({', '.join(tasks)}): job {done.id} {done.status}, {pages} page(s)")
        result = client.result(done.id)
        for page in result.pages:
            text = (page.text or (page.error.message if page.error else "")).strip().replace("\n", " ")
            say(f"   page {page.page} {page.task}: {text[:160]}{'…' if len(text) > 160 else ''}")
        for task, files in result.outputs.items():
            say(f"   {task} output: {', '.join(f.name for f in files)}")
    return finished
