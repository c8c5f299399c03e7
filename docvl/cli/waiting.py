"""Waiting for submitted jobs with a progress bar each, and saving a job's outputs."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import typer

from docvl.client import Client
from docvl.errors import DocvlError
from docvl.jobs.views import JobView


@dataclass
class Outcome:
    job: JobView
    error: DocvlError | None = None
    done: threading.Event = field(default_factory=threading.Event)


def wait_all(client: Client, submitted: list[tuple[str, JobView]]) -> list[tuple[str, Outcome]]:
    """Wait for every job (a thread each), with a progress bar per job on stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    outcomes = [(name, Outcome(job)) for name, job in submitted]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages  {task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )

    def follow(outcome: Outcome, bar: TaskID) -> None:
        def update(view: JobView) -> None:
            p = view.progress
            progress.update(
                bar,
                total=p.pages_total or None,
                completed=p.pages_done + p.pages_failed,
                status=str(view.status),
            )

        try:
            outcome.job = client.wait(outcome.job, on_update=update)
        except DocvlError as exc:
            outcome.error = exc
        except Exception as exc:  # a bug must not leave the main thread waiting forever
            outcome.error = DocvlError(f"{type(exc).__name__}: {exc}")
        finally:
            outcome.done.set()

    with progress:
        for name, outcome in outcomes:
            label = f"{str(outcome.job.id)[:8]} {Path(name).name[:32]}"
            bar = progress.add_task(label, total=None, status=str(outcome.job.status))
            threading.Thread(target=follow, args=(outcome, bar), daemon=True).start()
        try:
            for _, outcome in outcomes:
                while not outcome.done.wait(0.2):
                    pass
        except KeyboardInterrupt:
            progress.stop()
            ids = " ".join(str(o.job.id) for _, o in outcomes)
            typer.echo(f"interrupted; the jobs go on (docvl status ID): {ids}", err=True)
            raise typer.Exit(130) from None
    return outcomes


def save(client: Client, job_id: uuid.UUID, out: Path) -> list[Path]:
    """Every output file of the job into OUT/<job id>/, then result.json (the ResultView)."""
    view = client.result(job_id)
    directory = out / str(job_id)
    directory.mkdir(parents=True, exist_ok=True)
    saved = [
        client.download(job_id, file.name, directory / file.name)
        for files in view.outputs.values()
        for file in files
    ]
    path = directory / "result.json"
    path.write_text(view.model_dump_json(indent=2) + "\n")
    return [*saved, path]
