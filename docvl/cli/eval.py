"""`docvl eval`: run a labelled set through the platform and report; `docvl eval convert`: make a set
from a public benchmark on disk. Exit codes: 0 the run completed (whatever the scores), 1 some
submissions failed, 2 bad usage (options, an invalid set)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from docvl.cli.errors import usage
from docvl.errors import DocvlError

eval_app = typer.Typer(
    help="Score the model on a labelled set (see docs/eval.md): docvl eval --set DIR --out report.md. "
    "Exit code: 0 the run completed (whatever the scores), 1 submissions failed, 2 bad usage.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


@eval_app.callback()
def evaluate(
    ctx: typer.Context,
    set_dir: Annotated[
        Path | None,
        typer.Option("--set", help="The set's directory (with manifest.jsonl).", metavar="DIR"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="The Markdown report; the JSON report goes beside it (.json).", metavar="FILE"),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api",
            "--api-url",
            help="The docvl API; default: DOCVL_API_URL, else http://127.0.0.1:8000.",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="An API key; default: DOCVL_API_KEY.", show_default=False),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Items in flight at once.")] = 4,
    job_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for one item's job before giving up on it.")
    ] = 600.0,
) -> None:
    """Submit every item of the set (one job each), score the outputs, write the reports.

    Exit code: 0 when the run completed (even with low scores), 1 when submissions failed, 2 for bad
    usage or an invalid set.
    """
    if ctx.invoked_subcommand is not None:
        return
    if set_dir is None or out is None:
        usage("docvl eval needs --set DIR and --out FILE (see docvl eval --help)")
    if out.suffix == ".json":
        usage(f"--out {out}: name the Markdown report (e.g. report.md); the JSON goes beside it")
    from docvl.client import Client
    from docvl.eval import report
    from docvl.eval.manifest import load_set
    from docvl.eval.runner import Outcome, RunOptions, run_set

    try:
        labelled = load_set(set_dir)
    except DocvlError as exc:
        usage(exc.message)
    total = len(labelled.items)
    done = 0

    def progress(outcome: Outcome) -> None:
        nonlocal done
        done += 1
        state = "ok" if outcome.succeeded else f"failed: {outcome.error or outcome.job_error or 'no output'}"
        typer.echo(f"[{done}/{total}] {outcome.item.id} ({outcome.item.task}) {state}", err=True)

    started = datetime.now(UTC)
    with Client(api_url, api_key) as client:
        options = RunOptions(concurrency=concurrency, job_timeout_s=job_timeout)
        try:
            outcomes = run_set(labelled, client, options, on_done=progress)
        except KeyboardInterrupt:
            typer.echo("interrupted: no report written; the submitted jobs go on", err=True)
            sys.stderr.flush()
            os._exit(130)  # the worker threads are blocked waiting on their jobs
        run = report.Run(set_dir, client.base_url, started, datetime.now(UTC), outcomes)
    markdown_path, json_path = report.write(run, out)
    typer.echo(f"wrote {markdown_path} and {json_path}")
    if run.submission_failures:
        typer.echo(f"{run.submission_failures} of {total} submissions failed", err=True)
        raise typer.Exit(1)


@eval_app.command("convert")
def convert(
    source: Annotated[
        str,
        typer.Option(
            "--from", help="chartmimic, design2code, docvqa, chartqa or olmocr-bench.", metavar="BENCHMARK"
        ),
    ],
    src: Annotated[Path, typer.Argument(help="The benchmark's local copy.", metavar="SRC")],
    dest: Annotated[Path, typer.Argument(help="The set to write (manifest.jsonl and files).", metavar="DIR")],
) -> None:
    """Make a set from a public benchmark already on disk (nothing is downloaded)."""
    from docvl.eval.converters import CONVERTERS, ConversionError

    converter = CONVERTERS.get(source.lower())
    if converter is None:
        usage(f"--from {source}: use one of {', '.join(CONVERTERS)}")
    if not src.is_dir():
        usage(f"{src} is not a directory")
    try:
        result = converter(src, dest)
    except ConversionError as exc:
        usage(exc.message)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {result.items} items to {result.manifest}")
    sys.stdout.flush()
