"""`docvl`'s process commands: worker, flows, model-worker, gateway, model, db, infer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from docvl.cli.errors import fail, usage
from docvl.errors import DocvlError

app = typer.Typer(help="docvl: document understanding with DeepSeek-VL.", no_args_is_help=True)
model_app = typer.Typer(help="Model checkpoints.", no_args_is_help=True)
app.add_typer(model_app, name="model")
db_app = typer.Typer(help="The Postgres schema (DOCVL_DATABASE_URL).", no_args_is_help=True)
app.add_typer(db_app, name="db")
flows_app = typer.Typer(help="The Prefect flows (PREFECT_API_URL).", no_args_is_help=True)
app.add_typer(flows_app, name="flows")


@flows_app.command("serve")
def flows_serve() -> None:
    """The flow runner, until Ctrl-C: the reconciler every DOCVL_RECONCILE_INTERVAL_S, and the deployments
    (the nightly sweep on its cron, the reconciler on demand)."""
    _observe("docvl-flows", "info")
    from workflows.flows import serve

    try:
        serve()
    except DocvlError as exc:  # the stack's namespace taken by another database: refused, said plainly
        fail(exc)


@flows_app.command("sweep")
def flows_sweep(
    bucket: Annotated[
        str | None, typer.Option(help="Default: DOCVL_SWEEP_BUCKET or DOCVL_S3_BUCKET.")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Default: DOCVL_SWEEP_PREFIX.")] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Repeat for several; default: DOCVL_SWEEP_TASKS.")
    ] = None,
    read_all: Annotated[
        bool,
        typer.Option(
            "--read-all",
            help="Read every object, even those unchanged since a sweep read them (same ETag and size).",
        ),
    ] = False,
) -> None:
    """Sweep a bucket now, as the schedule does, and print how many jobs it started."""
    from workflows.flows import sweep_bucket

    try:
        typer.echo(f"started {sweep_bucket(bucket, prefix, task, read_all)} jobs")
    except DocvlError as exc:
        fail(exc)


@app.command("worker")
def worker(
    queue: Annotated[
        list[str] | None,
        typer.Option(help="Queues to serve; default: the page queues, webhooks and jobs (start requests)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Pool processes.")] = 2,
    log_level: Annotated[str, typer.Option()] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of /metrics (every pool process, summed); default: "
            "DOCVL_WORKER_METRICS_PORT (9104); 0: off."
        ),
    ] = None,
) -> None:
    """Run a Celery worker: page tasks (ocr, chart2code, web2html, qa queues), webhooks, and on the `jobs`
    queue the job runner (start requests: claim jobs, render and dispatch them in Prefect flow runs)."""
    if metrics_port is not None:  # read by the worker's settings, made when its tasks are imported
        os.environ["DOCVL_WORKER_METRICS_PORT"] = str(metrics_port)
    from docvl.broker.celery_app import ALL_QUEUES, JOBS_QUEUE

    queues = ",".join(queue or ALL_QUEUES)
    # Its logs and traces say which part of the pipeline it is (OTEL_SERVICE_NAME overrides).
    os.environ.setdefault("OTEL_SERVICE_NAME", "docvl-job-runner" if queues == JOBS_QUEUE else "docvl-worker")
    if queues == JOBS_QUEUE:
        from workflows.runner import app as celery_app
    else:
        from services.worker.tasks import app as celery_app

        if JOBS_QUEUE in queues.split(","):
            from workflows.runner import register

            register(celery_app)
    celery_app.worker_main(
        ["worker", "-Q", queues, "-c", str(concurrency), "-l", log_level, "--without-gossip"]
    )


def _offline() -> None:
    """Nothing is downloaded at run time: checkpoints come from local directories only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _observe(service: str, level: str) -> None:
    """The process's logging (JSON lines off a terminal) and, when configured, its tracing."""
    from docvl.observability import logs, tracing

    logs.setup_logging(service, level)
    tracing.setup_tracing(service)


@model_app.command("build-tiny")
def build_tiny(
    directory: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    family: Annotated[
        str,
        typer.Option(
            help="deepseek-vl-hybrid (serves ocr, chart2code, web2html, qa) or deepseek-ocr2 (ocr, layout)."
        ),
    ] = "deepseek-vl-hybrid",
    small: Annotated[
        bool,
        typer.Option(
            help="Small images, for fast tests: hybrid 64/128 px and 16 image tokens; "
            "deepseek-ocr2 128 px pages and 96 px tiles (the same image tokens)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build a tiny randomly initialised checkpoint of the real classes (its text is junk)."""
    _offline()
    from model_worker.tiny import TINY_FAMILIES
    from model_worker.tiny import build_tiny as build

    if family not in TINY_FAMILIES:
        usage(f"--family {family}: use one of {', '.join(TINY_FAMILIES)}")
    build(directory, small=small, seed=seed, family=family)  # type: ignore[arg-type]
    typer.echo(str(directory))


@model_app.command("info")
def model_info(
    target: Annotated[str, typer.Option(help="Model worker HOST:PORT.")] = "127.0.0.1:50061",
) -> None:
    """Print the model worker's model, limits and counters as JSON."""
    from docvl.inference.client import InferenceClient

    with InferenceClient(target) as client:
        try:
            typer.echo(json.dumps(client.model_info(), indent=2))
        except DocvlError as exc:
            fail(exc)


def _database() -> Any:
    from docvl.db.database import Database
    from docvl.settings import CoreSettings

    settings = CoreSettings()
    database = Database(settings.database_url)
    database.wait_until_reachable(settings.database_wait_s)
    return database


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations up to REVISION (waits for the database first)."""
    from docvl.db import migrate

    try:
        database = _database()
        migrate.upgrade(database, revision)
        typer.echo(f"database at revision {migrate.current_revision(database)}")
    except DocvlError as exc:
        fail(exc)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; base removes everything.")],
) -> None:
    """Undo migrations down to REVISION."""
    from docvl.db import migrate

    try:
        database = _database()
        migrate.downgrade(database, revision)
        typer.echo(f"database at revision {migrate.current_revision(database)}")
    except DocvlError as exc:
        fail(exc)


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    from docvl.db import migrate

    try:
        typer.echo(f"database: {migrate.current_revision(_database())}\ncode head: {migrate.head_revision()}")
    except DocvlError as exc:
        fail(exc)


@app.command("model-worker")
def model_worker(
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint directory [DOCVL_MODEL_WORKER_MODEL_DIR].")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address [DOCVL_MODEL_WORKER_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [DOCVL_MODEL_WORKER_PORT].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda [DOCVL_MODEL_WORKER_DEVICE].")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="[DOCVL_MODEL_WORKER_MAX_BATCH_SIZE]")] = None,
    max_wait_ms: Annotated[int | None, typer.Option(help="[DOCVL_MODEL_WORKER_MAX_WAIT_MS]")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="/metrics port, 0: none [DOCVL_MODEL_WORKER_METRICS_PORT].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Serve the model over gRPC (InferenceService, health, reflection) until SIGTERM or Ctrl-C."""
    _offline()
    _observe("docvl-model-worker", log_level)
    from pydantic import ValidationError

    from model_worker.settings import ModelWorkerSettings
    from model_worker.transport.server import serve

    overrides: dict[str, Any] = {
        "model_dir": model,
        "host": host,
        "port": port,
        "device": device,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "metrics_port": metrics_port,
    }
    try:
        settings = ModelWorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        usage(f"invalid model worker settings:\n{exc}")
    try:
        asyncio.run(serve(settings))
    except DocvlError as exc:
        fail(exc)


@app.command("gateway")
def gateway(
    host: Annotated[str | None, typer.Option(help="Listen address [DOCVL_GATEWAY_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [DOCVL_GATEWAY_PORT].")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Serve the gRPC JobService (health, reflection) until SIGTERM or Ctrl-C; waits for the database."""
    _observe("docvl-gateway", log_level)
    from pydantic import ValidationError

    from docvl.db.database import Database
    from services.gateway.server import serve
    from services.gateway.settings import GatewaySettings

    overrides: dict[str, Any] = {"host": host, "port": port}
    try:
        settings = GatewaySettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        usage(f"invalid gateway settings:\n{exc}")
    try:
        database = Database(settings.database_url)
        database.wait_until_reachable(settings.database_wait_s)
        serve(settings, database)
    except DocvlError as exc:
        fail(exc)


@app.command("infer")
def infer(
    image: Annotated[list[Path], typer.Option(help="Image file; repeat for several.")],
    target: Annotated[str, typer.Option(help="Model worker HOST:PORT.")] = "127.0.0.1:50061",
    task: Annotated[
        str, typer.Option(help="ocr, chart2code, web2html, qa (DeepSeek-VL) or ocr, layout (DeepSeek-OCR-2).")
    ] = "ocr",
    question: Annotated[str | None, typer.Option(help="The question (qa).")] = None,
    prompt: Annotated[str | None, typer.Option(help="Replace the task's instruction text.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="0: the worker's default.")] = 0,
    temperature: Annotated[float, typer.Option(help="0: greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
    stream: Annotated[bool, typer.Option(help="Print the text as it is generated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 600.0,
) -> None:
    """Send images to a model worker and print its answer."""
    from docvl.inference.client import InferenceClient
    from docvl.inference.types import GenerationParams, InferenceRequest, InferenceResult
    from docvl.tasks import TaskKind

    try:
        for path in image:
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file", param_hint="--image")
        request = InferenceRequest(
            task=TaskKind.parse(task),
            images=[path.read_bytes() for path in image],
            question=question,
            prompt_override=prompt,
            params=GenerationParams(max_new_tokens, temperature, top_p, seed),
        )
        with InferenceClient(target) as client:
            if stream:
                result: InferenceResult | None = None
                for item in client.generate_stream(request, timeout=timeout):
                    if isinstance(item, str):
                        if not as_json:
                            sys.stdout.write(item)
                            sys.stdout.flush()
                    else:
                        result = item
                if result is None:
                    raise DocvlError("the stream ended without a result")
            else:
                result = client.generate(request, timeout=timeout)
    except DocvlError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2))
    elif not stream:
        typer.echo(result.text)
    else:
        typer.echo("")
