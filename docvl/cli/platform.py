"""`docvl api` and `docvl keys ...`: serving the REST API and managing API keys (DOCVL_DATABASE_URL)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from docvl.cli.errors import fail, usage
from docvl.db import api_keys
from docvl.db.database import Database
from docvl.errors import DocvlError
from docvl.settings import CoreSettings

keys_app = typer.Typer(help="API keys (stored hashed in DOCVL_DATABASE_URL).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("healthcheck")(healthcheck)
    app.command("api")(api)
    app.add_typer(keys_app, name="keys")


def up(
    demo: Annotated[
        bool | None,
        typer.Option(help="Submit the bundled samples and print their results [DOCVL_DEMO, default: on]."),
    ] = None,
) -> None:
    """The whole platform on this machine (database, broker, Prefect, Celery worker, model worker, REST API,
    gRPC gateway), on loopback, until Ctrl-C. Starts its own Postgres and Redis where none answers."""
    from docvl.up.launcher import up as run_up
    from docvl.up.settings import UpSettings

    chosen = {} if demo is None else {"demo": demo}  # the option, else DOCVL_DEMO, else on
    raise typer.Exit(run_up(UpSettings(**chosen)))  # type: ignore[arg-type]


def healthcheck(
    http: Annotated[str | None, typer.Option(help="Exit 0 when this URL answers 2xx.")] = None,
    grpc_target: Annotated[
        str | None, typer.Option("--grpc", help="Exit 0 when this HOST:PORT's gRPC health is SERVING.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds.")] = 3.0,
) -> None:
    """A container health check: an HTTP URL or a gRPC health service (exit 0 healthy, 1 not)."""
    try:
        if http:
            import httpx

            httpx.get(http, timeout=timeout).raise_for_status()
        if grpc_target:
            from docvl.probes import grpc_serving

            if not grpc_serving(grpc_target, timeout):
                raise RuntimeError(f"{grpc_target} is not serving")
    except Exception as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        raise typer.Exit(1) from None


def api(
    host: Annotated[str | None, typer.Option(help="Default: DOCVL_API_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DOCVL_API_PORT (8000).")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Serve the REST API (OpenAPI docs at /docs) until Ctrl-C."""
    import uvicorn

    from docvl.observability import logs, metrics, tracing
    from services.api.app import create_app
    from services.api.settings import ApiSettings

    logs.setup_logging("docvl-api", log_level)
    tracing.setup_tracing("docvl-api")
    settings = ApiSettings()
    metrics.serve(settings.api_metrics_port, settings.metrics_host)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through docvl's logging setup
    )


def _database() -> Database:
    return Database(CoreSettings().database_url)


@keys_app.command("create")
def keys_create(
    owner: Annotated[
        str, typer.Option(help="Who the key belongs to; its jobs are visible to this owner only.")
    ],
    name: Annotated[str | None, typer.Option(help="A label, e.g. the machine or service using it.")] = None,
) -> None:
    """Create a key and print it alone on stdout: it is shown once and stored only as a hash."""
    db = _database()
    try:
        with db.transaction() as s:
            created = api_keys.create_key(s, owner, name)
            key_id = created.key.id
    except DocvlError as exc:
        fail(exc)
    typer.echo(created.secret)
    typer.echo(f"key {key_id} for owner {owner.strip()!r} created; it is not shown again", err=True)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (docvl keys list).")]) -> None:
    """Revoke a key: calls with it are refused from now on."""
    db = _database()
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        usage(f"{key_id!r} is not a key id (a UUID; see docvl keys list)")
    try:
        with db.transaction() as s:
            key = api_keys.revoke(s, parsed)
            typer.echo(f"key {key.id} ({key.prefix}…, owner {key.owner!r}) revoked at {key.revoked_at}")
    except DocvlError as exc:
        fail(exc)


@keys_app.command("list")
def keys_list(owner: Annotated[str | None, typer.Option(help="Only this owner's keys.")] = None) -> None:
    """List keys (id, prefix, owner, name, created, last used, revoked); never the secrets."""
    db = _database()
    try:
        with db.transaction() as s:
            for key in api_keys.list_keys(s, owner):
                revoked = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
                typer.echo(
                    f"{key.id}  {key.prefix}…  owner={key.owner}  name={key.name or '-'}  "
                    f"created={key.created_at:%Y-%m-%d %H:%M}  last-used={used}  {revoked}"
                )
    except DocvlError as exc:
        fail(exc)


@keys_app.command("webhook-secret")
def keys_webhook_secret(
    owner: Annotated[str, typer.Option(help="The owner whose webhooks it signs.")],
) -> None:
    """Print the owner's webhook signing secret (HMAC-SHA256 of the body, header X-Docvl-Signature)."""
    db = _database()
    try:
        with db.transaction() as s:
            typer.echo(api_keys.webhook_secret(s, owner.strip()))
    except DocvlError as exc:
        fail(exc)
