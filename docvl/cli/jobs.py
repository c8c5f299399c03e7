"""`docvl submit`, `status`, `result`, `cancel` and `jobs`: the REST API from the command line
(DOCVL_API_URL, DOCVL_API_KEY). Errors print `error (<code>): <message>` on stderr and exit 1; bad usage
exits 2."""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from docvl.cli.errors import call, say_error, usage
from docvl.cli.waiting import save, wait_all
from docvl.client import Client
from docvl.errors import DocvlError, InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs.options import SubmitOptions
from docvl.jobs.quote import QuoteView
from docvl.jobs.views import JobView, PageResult, ResultView
from docvl.tasks import TaskKind
from docvl.verify.report import describe, describe_summary

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="The docvl API; default: DOCVL_API_URL, else http://127.0.0.1:8000.",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", help="An API key; default: DOCVL_API_KEY.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
JobIdArg = Annotated[str, typer.Argument(metavar="ID", help="The job's id.")]

T = TypeVar("T")


class ResultFormat(StrEnum):
    """`docvl result --format`: a layout job's files, as the API serves them."""

    JSON = "json"  # document.json, indented
    CHUNKS = "chunks"  # chunks.jsonl, one chunk a line


# The document each task's default output prints whole (the other tasks print every page's result).
_DOCUMENTS = {"ocr": "document.md", "layout": "layout.md"}

# Errors after which submitting the remaining files cannot go better.
_STOP_CODES = {"unauthenticated", "unavailable", "too_many_submissions"}


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("result")(result)
    app.command("cancel")(cancel)
    app.command("jobs")(list_jobs)


# -- submit ------------------------------------------------------------------------------------------------


def _password(path: Path) -> str:
    """The first line of the password file, without its line ending."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--password-file") from exc
    if not lines or not lines[0]:
        raise typer.BadParameter(
            f"{path} is empty: put the password on its first line", param_hint="--password-file"
        )
    return lines[0]


def submit(
    files: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE", help="PDFs or images; s3://bucket/key names a document already in storage."
        ),
    ],
    task: Annotated[
        list[str],
        typer.Option("--task", "-t", help="ocr, chart2code, web2html, qa or layout; repeat for several."),
    ],
    question: Annotated[str | None, typer.Option(help="The question (required with --task qa).")] = None,
    priority: Annotated[
        int | None, typer.Option(min=0, max=9, help="0 (lowest) to 9 (highest); default 5.")
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POSTed to (signed) when a job ends.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Submitting again with the same key returns the first job instead of a new one. With "
            "several files, file N (from 1) uses KEY:N."
        ),
    ] = None,
    pages: Annotated[
        str | None,
        typer.Option(help="Only these pages, e.g. 1-3,7,12- (from 1; 12- runs to the last page)."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding an encrypted PDF's password (its first line); never give a password on "
            "the command line.",
            metavar="FILE",
        ),
    ] = None,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse/--no-reuse",
            help="--no-reuse computes every page again, even where an earlier job's result for the same "
            "page, task, question and model could be reused.",
        ),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what each job would cost and when it would end (pages, page tasks, tokens, queue "
            "ahead, GPU-seconds, price) instead of submitting it; nothing is stored.",
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the jobs to end, showing progress on stderr.")
    ] = False,
    as_json: AsJson = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Download every output of each job into DIR/<job id>/, with result.json (implies --wait).",
            metavar="DIR",
        ),
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Submit documents (one job each) and print `<job id> <status>` per job.

    --json prints one JSON object a line.
    --wait (or --out) waits for every job to end (a progress bar each on stderr), then prints a summary.

    Exit code: 0 only when every job was submitted and (with --wait) ended succeeded,
    1 otherwise (partially_succeeded, failed and cancelled included), 2 for bad usage.
    """
    tasks = _tasks(task)
    if TaskKind.QA in tasks and not (question and question.strip()):
        raise typer.BadParameter("the qa task needs --question", param_hint="--question")
    for name in files:
        if not name.startswith("s3://") and not Path(name).is_file():
            raise typer.BadParameter(f"{name} is not a file", param_hint="FILE")
    password = _password(password_file) if password_file is not None else None
    given = {
        "tasks": tasks,
        "question": question,
        "priority": priority,
        "webhook_url": webhook_url,
        "pages": pages,
        "password": password,
        "reuse": None if reuse else False,
    }
    options = call(lambda: SubmitOptions.of(given))
    if dry_run:
        if wait or out is not None:
            usage("--dry-run submits nothing: leave out --wait and --out")
        raise typer.Exit(_quote_all(files, options, as_json, api_url, api_key))
    wait = wait or out is not None
    ok = True
    submitted: list[tuple[str, JobView]] = []
    with Client(api_url, api_key) as client:
        for index, name in enumerate(files, 1):
            key = idempotency_key
            if key is not None and len(files) > 1:
                key = f"{key}:{index}"
            try:
                send = client.submit_source if name.startswith("s3://") else client.submit
                job = send(name, options.model_copy(update={"idempotency_key": key}))
            except DocvlError as exc:
                ok = False
                say_error(exc, f"{name}: ")
                if exc.code in _STOP_CODES:
                    break
                continue
            submitted.append((name, job))
            if not wait:
                typer.echo(job.model_dump_json() if as_json else f"{job.id} {job.status}")
        if not wait or not submitted:
            raise typer.Exit(0 if ok else 1)
        outcomes = wait_all(client, submitted)
        for name, outcome in outcomes:
            if outcome.error is not None:
                ok = False
                say_error(outcome.error, f"{outcome.job.id}: ")
                continue
            job = outcome.job
            ok = ok and job.status is JobStatus.SUCCEEDED
            if as_json:
                typer.echo(job.model_dump_json())
            else:
                typer.echo(f"{_summary(job)}  {name}")
                if job.error is not None:
                    typer.echo(f"  error ({job.error.code}): {job.error.message}")
            if out is not None:
                try:
                    saved = save(client, job.id, out)
                except DocvlError as exc:
                    ok = False
                    say_error(exc, f"{job.id}: ")
                else:
                    typer.echo(f"{job.id}: saved {len(saved)} files in {saved[0].parent}", err=True)
    raise typer.Exit(0 if ok else 1)


def _quote_all(
    files: list[str], options: SubmitOptions, as_json: bool, api_url: str | None, api_key: str | None
) -> int:
    """Each file's quote, one a line (JSON with --json); the exit code."""
    ok = True
    with Client(api_url, api_key) as client:
        for name in files:
            try:
                ask = client.quote_source if name.startswith("s3://") else client.quote
                quoted = ask(name, options)
            except DocvlError as exc:
                ok = False
                say_error(exc, f"{name}: ")
                if exc.code in _STOP_CODES:
                    break
                continue
            typer.echo(quoted.model_dump_json() if as_json else f"{_quote_line(quoted)}  {name}")
    return 0 if ok else 1


def _quote_line(quoted: QuoteView) -> str:
    price = "no price set" if quoted.price is None else f"{quoted.price:.4f} {quoted.currency}"
    return (
        f"{quoted.pages} pages, {quoted.page_tasks} page tasks, ~{quoted.output_tokens} tokens, "
        f"{quoted.queue_ahead} ahead, start {quoted.expected_start:%H:%M:%S}, end "
        f"{quoted.expected_finish:%H:%M:%S} UTC, {quoted.gpu_seconds:.1f} GPU-s, {price}"
    )


# -- status, result, cancel, jobs ---------------------------------------------------------------------------


def status(job_id: JobIdArg, as_json: AsJson = False, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Print a job's status, progress, times and error."""
    parsed = _job_id(job_id)
    with Client(api_url, api_key) as client:
        job = call(lambda: client.get(parsed))
    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    p = job.progress
    typer.echo(f"{job.id} {job.status}")
    typer.echo(f"  tasks     {', '.join(job.tasks)}")
    if job.question:
        typer.echo(f"  question  {job.question}")
    typer.echo(f"  pages     {p.pages_done} of {p.pages_total} done, {p.pages_failed} failed")
    typer.echo(f"  priority  {job.priority}")
    for label, when in (
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
    ):
        if when is not None:
            typer.echo(f"  {label:<9} {when.isoformat(timespec='seconds')}")
    if job.error is not None:
        typer.echo(f"  error     ({job.error.code}) {job.error.message}")


def result(
    job_id: JobIdArg,
    as_json: AsJson = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Download every output into DIR/<job id>/ with result.json, and print the paths.",
            metavar="DIR",
        ),
    ] = None,
    result_format: Annotated[
        ResultFormat | None,
        typer.Option(
            "--format",
            help="A layout job's files: json prints its document JSON (pages, blocks, labels, boxes), "
            "chunks its RAG chunks (JSON Lines). Default: the results as text.",
            show_default=False,
        ),
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Print a job's results: per task, the OCR or layout Markdown document, or every page result of the
    other tasks (--json: the whole result, with download links; --format: a layout job's document JSON or
    chunks)."""
    parsed = _job_id(job_id)
    if result_format is not None and (as_json or out is not None):
        usage("--format prints one file of a layout job: leave out --json and --out")
    with Client(api_url, api_key) as client:
        if result_format is not None:
            _print_layout(client, parsed, result_format)
            return
        if out is not None:
            for path in call(lambda: save(client, parsed, out)):
                typer.echo(str(path))
            return
        view = call(lambda: client.result(parsed))
        if as_json:
            typer.echo(view.model_dump_json(indent=2))
            return
        if not view.job.status.finished:
            typer.echo(f"job {view.job.id} is {view.job.status}: the results so far", err=True)
        for task in view.job.tasks:
            typer.echo(f"== {task} ==")
            if str(task) in view.summary:
                typer.echo(describe_summary(view.summary[str(task)]))
            document = _document_md(view, task)
            if document is not None:
                text = call(partial(client.read_output, parsed, document))
                typer.echo(text.decode("utf-8", errors="replace").rstrip("\n"))
                continue
            pages = [p for p in view.pages if p.task == task]
            for page in pages:
                typer.echo(_page_text(page))
            if not pages:
                typer.echo("(no page results)")


def _print_layout(client: Client, job_id: uuid.UUID, result_format: ResultFormat) -> None:
    if result_format is ResultFormat.JSON:
        document = call(lambda: client.document(job_id))
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    for chunk in call(lambda: client.chunks(job_id)):
        typer.echo(json.dumps(chunk, ensure_ascii=False))


def _document_md(view: ResultView, task: TaskKind) -> str | None:
    name = _DOCUMENTS.get(str(task))
    names = [f.name for f in view.outputs.get(str(task), [])]
    return name if name in names else None


def _page_text(page: PageResult) -> str:
    head = f"-- page {page.page} --"
    if page.error is not None:
        return f"{head}\n(failed: {page.error.code}: {page.error.message})"
    lines = [head, page.text or ""]
    if page.valid is False:
        lines.append(f"(did not pass its check: {page.problem})")
    if page.verification is not None:
        lines.append(describe(page.verification))
    return "\n".join(lines)


def cancel(job_id: JobIdArg, as_json: AsJson = False, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Cancel a job (its queued pages are dropped) and print `<job id> <status>`."""
    parsed = _job_id(job_id)
    with Client(api_url, api_key) as client:
        job = call(lambda: client.cancel(parsed))
    typer.echo(job.model_dump_json(indent=2) if as_json else f"{job.id} {job.status}")


def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
    as_json: AsJson = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List your jobs, newest first."""
    with Client(api_url, api_key) as client:

        def fetch() -> list[JobView]:
            found: list[JobView] = []
            for job in client.iter_jobs(status, limit=min(limit, 500)):
                found.append(job)
                if len(found) >= limit:
                    break
            return found

        found = call(fetch)
    if as_json:
        typer.echo(json.dumps([json.loads(j.model_dump_json()) for j in found], indent=2))
        return
    if not found:
        typer.echo("no jobs", err=True)
        return
    typer.echo(f"{'ID':<36}  {'STATUS':<19}  {'PAGES':>9}  {'TASKS':<24}  CREATED")
    for job in found:
        p = job.progress
        pages = f"{p.pages_done + p.pages_failed}/{p.pages_total}"
        tasks = ",".join(job.tasks)
        created = job.created_at.isoformat(timespec="seconds")
        typer.echo(f"{job.id!s:<36}  {job.status!s:<19}  {pages:>9}  {tasks:<24}  {created}")


# -- helpers -----------------------------------------------------------------------------------------------


def _summary(job: JobView) -> str:
    p = job.progress
    failed = f", {p.pages_failed} failed" if p.pages_failed else ""
    return f"{job.id} {job.status} {p.pages_done}/{p.pages_total} pages{failed}"


def _tasks(values: list[str]) -> list[TaskKind]:
    tasks: list[TaskKind] = []
    for value in values:
        for part in value.split(","):
            try:
                kind = TaskKind.parse(part)
            except InvalidInput as exc:
                raise typer.BadParameter(exc.message, param_hint="--task") from None
            if kind not in tasks:
                tasks.append(kind)
    return tasks


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a job id (a UUID)", param_hint="ID") from None
