"""`docvl up`: start every service of the platform on loopback, in order, each once the ones it needs are
ready; print where they listen; run the demo; serve until Ctrl-C or SIGTERM; then stop them all."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx

from docvl.broker import stack
from docvl.broker.celery_app import JOBS_QUEUE, QUEUES, WEBHOOK_QUEUE
from docvl.db import api_keys, migrate
from docvl.db.database import Database
from docvl.errors import DocvlError
from docvl.namespace import database_name, redis_prefix
from docvl.office import office_off
from docvl.probes import grpc_serving
from docvl.up import embedded
from docvl.up.settings import UpSettings
from docvl.up.supervisor import StartFailed, Supervisor, log_contains

HOST = "127.0.0.1"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, a stop, a closed terminal
TINY_WARNING = """
┌──────────────────────────────────────────────────────────────────────────────────────────────────────┐
│ NO MODEL CONFIGURED: serving TINY RANDOM DeepSeek-VL and DeepSeek-OCR-2 models. Their text           │
│ is JUNK. They exist so that every path can be tried without a GPU or a download;                     │
│ generation is capped at {tokens} tokens. For real results: DOCVL_MODEL=/path/to/deepseek-vl-7b-chat        │
│ and DOCVL_LAYOUT_MODEL=/path/to/DeepSeek-OCR-2 (the layout task).                                    │
└──────────────────────────────────────────────────────────────────────────────────────────────────────┘"""


def office_state(settings: UpSettings) -> str:
    """Whether Office documents are taken, and why not (then PDFs and images still are)."""
    try:
        off = office_off(settings)
    except ValueError as exc:
        return f"OFF: {exc}"
    if off is not None:
        return f"OFF: {off}"
    return "on (LibreOffice converts docx, pptx, xlsx, odt, doc, rtf, ... to PDF)"


def say(text: str) -> None:
    print(text, flush=True)


def up(settings: UpSettings) -> int:
    """Run the platform until interrupted; 0 after Ctrl-C/SIGTERM, 1 when a service fails."""
    warnings.filterwarnings("ignore", module="platformdirs")
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(data / "logs", dict(os.environ))
    for sig in STOP_SIGNALS:  # also when started with SIGINT ignored (a background job)
        signal.signal(sig, _interrupt)
    try:
        _start(settings, data, supervisor)
        say("\nServing. Ctrl-C stops every service.")
        while True:
            time.sleep(1)
            stopped = supervisor.exited()
            if stopped is not None:
                code = stopped.process.returncode
                say(f"\n{stopped.name} stopped unexpectedly (exit {code}); restarting it (see {stopped.log})")
                supervisor.restart(stopped)
                say(f"{stopped.name} is back")
    except KeyboardInterrupt:
        say("\nStopping…")
        return 0
    except (StartFailed, DocvlError, embedded.EmbeddedUnusable) as exc:
        say(f"\nStart-up failed: {exc}")
        return 1
    except Exception as exc:  # anything else: still stop what was started, and say what happened
        say(f"\nStart-up failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for sig in STOP_SIGNALS:  # a second Ctrl-C must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop_all()
        say(f"Stopped. Logs and data are in {data}.")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(settings: UpSettings, data: Path, supervisor: Supervisor) -> None:
    env = supervisor.env
    timeout = settings.start_timeout_s
    python = sys.executable

    database_url = settings.database_url
    if not embedded.postgres_reachable(database_url):
        launch = embedded.postgres_launch(database_url, data)
        say(f"Postgres: none answers at {_where(database_url)}; starting the embedded one there")
        supervisor.start(
            "postgres",
            launch.command,
            lambda _: embedded.postgres_reachable(database_url),
            timeout,
            user=launch.user,
            stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
        )
    embedded.ensure_database(database_url)
    prefect_db = _prefect_database(database_url, prefect_database_name(settings))
    database = Database(database_url)
    migrate.upgrade(database)

    if not embedded.redis_reachable(settings.redis_url):
        launch = embedded.redis_launch(settings.redis_url, data)
        say(f"Redis: none answers at {_where(settings.redis_url)}; starting the embedded one there")
        supervisor.start(
            "redis", launch.command, lambda _: embedded.redis_reachable(settings.redis_url), timeout
        )
    stack.stake(settings)  # NamespaceTaken: another stack uses this namespace on this Redis

    model_dir, tiny = _model(settings, data)
    layout_dir = _layout_model(settings, data)
    model_target = f"{HOST}:{settings.model_worker_port}"
    layout_target = f"{HOST}:{settings.layout_worker_port}"
    targets = [model_target] + ([layout_target] if layout_dir is not None else [])
    prefect_api = f"http://{HOST}:{settings.prefect_port}/api"
    env.update(
        {
            "DOCVL_DATABASE_URL": database_url,
            "DOCVL_REDIS_URL": settings.redis_url,
            "DOCVL_NAMESPACE": settings.namespace,
            "DOCVL_OBJECT_STORE": settings.object_store,
            "DOCVL_STORAGE_DIR": str(_absolute(settings.storage_dir, data)),
            "DOCVL_MODEL_WORKER_TARGETS": ",".join(targets),
            "DOCVL_API_HOST": HOST,
            "DOCVL_API_PORT": str(settings.api_port),
            "DOCVL_GATEWAY_HOST": HOST,
            "DOCVL_GATEWAY_PORT": str(settings.gateway_port),
            **metrics_env(settings),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(data / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "DOCVL_SOURCE_BUCKETS": ",".join(settings.source_buckets or [settings.s3_bucket]),
            "DOCVL_WEBHOOK_ALLOW_PRIVATE": "true",  # one machine: receivers are usually local too
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    if tiny:
        env["DOCVL_MAX_NEW_TOKENS"] = str(settings.tiny_max_new_tokens)

    supervisor.start(
        "prefect",
        [python, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(settings.prefect_port)],
        lambda _: httpx.get(prefect_api + "/health", timeout=2).status_code == 200,
        timeout,
    )
    supervisor.start(
        "model-worker",
        [python, "-m", "docvl", "model-worker", "--model", str(model_dir), "--host", HOST,
         "--port", str(settings.model_worker_port)],
        lambda _: grpc_serving(model_target),
        timeout,
    )  # fmt: skip
    if layout_dir is not None:  # DeepSeek-OCR-2: the layout task (and ocr); its own metrics port
        supervisor.start(
            "layout-worker",
            [python, "-m", "docvl", "model-worker", "--model", str(layout_dir), "--host", HOST,
             "--port", str(settings.layout_worker_port),
             f"--metrics-port={settings.layout_worker_metrics_port}"],
            lambda _: grpc_serving(layout_target),
            timeout,
        )  # fmt: skip
    page_queues = [f"--queue={q}" for q in [*QUEUES, WEBHOOK_QUEUE]]
    supervisor.start(
        "celery-worker",
        [python, "-m", "docvl", "worker", "--concurrency", str(settings.worker_concurrency), *page_queues],
        log_contains(" ready."),
        timeout,
    )
    supervisor.start(
        "job-runner",
        [python, "-m", "docvl", "worker", "--concurrency", str(settings.job_runner_concurrency),
         f"--queue={JOBS_QUEUE}", f"--metrics-port={settings.job_runner_metrics_port}"],
        log_contains(" ready."),
        timeout,
    )  # fmt: skip
    supervisor.start(
        "flow-runner", [python, "-m", "docvl", "flows", "serve"], log_contains("reconciler"), timeout
    )
    api_url = f"http://{HOST}:{settings.api_port}"
    supervisor.start(
        "api",
        [python, "-m", "docvl", "api"],
        lambda _: httpx.get(api_url + "/readyz", timeout=2).status_code == 200,
        timeout,
    )
    gateway_target = f"{HOST}:{settings.gateway_port}"
    supervisor.start(
        "gateway", [python, "-m", "docvl", "gateway"], lambda _: grpc_serving(gateway_target), timeout
    )

    key = _local_key(database, data)
    layout_line = "none (set DOCVL_LAYOUT_MODEL for the layout task)"
    if layout_dir is not None:
        layout_line = f"{layout_target}  ({'the TINY RANDOM DeepSeek-OCR-2' if tiny else layout_dir})"
    database.dispose()
    say(
        f"""
docvl is up on this machine:
  REST API       {api_url}        (OpenAPI docs: {api_url}/docs)
  web console    {api_url}/       (sign in with the API key below)
  gRPC JobService {gateway_target}  (docvl.v1.JobService, health, reflection)
  Prefect UI     http://{HOST}:{settings.prefect_port}  (its database: {prefect_database_name(settings)})
  namespace      {settings.namespace}  (Redis keys {redis_prefix(settings.namespace)}*)
  model worker   {model_target}  ({"the TINY RANDOM model" if tiny else model_dir})
  layout worker  {layout_line}
  API key        {key}
                 (also in {data / "api-key"}; use it as DOCVL_API_KEY or `Authorization: Bearer`)
  logs           {data / "logs"}
  metrics        {metrics_where(settings)}
  Office input   {office_state(settings)}"""
    )
    if tiny:
        say(TINY_WARNING.format(tokens=settings.tiny_max_new_tokens))
    if settings.demo:
        from docvl.client import Client
        from docvl.up import demo

        say("\nSubmitting the bundled samples over REST:")
        with Client(api_url, key) as client:
            demo.run(client, say)


METRICS = (  # (process, its UpSettings port field, the variable its own settings read)
    ("api", "api_metrics_port", "DOCVL_API_METRICS_PORT"),
    ("gateway", "gateway_metrics_port", "DOCVL_GATEWAY_METRICS_PORT"),
    ("model-worker", "model_worker_metrics_port", "DOCVL_MODEL_WORKER_METRICS_PORT"),
    ("layout-worker", "layout_worker_metrics_port", None),  # given on its command line
    ("celery-worker", "worker_metrics_port", "DOCVL_WORKER_METRICS_PORT"),
    ("job-runner", "job_runner_metrics_port", None),  # given on its command line
    ("flow-runner", "flows_metrics_port", "DOCVL_FLOWS_METRICS_PORT"),
)


def metrics_env(settings: UpSettings) -> dict[str, str]:
    """Each process's /metrics port, on loopback."""
    env = {"DOCVL_METRICS_HOST": HOST, "DOCVL_MODEL_WORKER_METRICS_HOST": HOST}
    env.update({variable: str(getattr(settings, field)) for _, field, variable in METRICS if variable})
    return env


def metrics_where(settings: UpSettings) -> str:
    """Where each process serves its Prometheus metrics, one per line."""
    lines = [
        f"{name:<13} http://{HOST}:{getattr(settings, field)}/metrics"
        for name, field, _ in METRICS
        if getattr(settings, field)
    ]
    return "\n                 ".join(lines) or "off"


def prefect_database_name(settings: UpSettings) -> str:
    """DOCVL_PREFECT_DATABASE, or docvl's database's name followed by `_prefect`: each stack on a server
    keeps its Prefect state (deployments, runs) apart (Postgres names are at most 63 bytes)."""
    return settings.prefect_database or f"{database_name(settings.database_url)[:55]}_prefect"


def _prefect_database(database_url: str, name: str) -> str:
    """Prefect's own database, `name`, on the same Postgres, which must offer the pg_trgm extension that
    Prefect's schema needs (the embedded PostgreSQL does, and so does a system one with its contrib
    modules). Prefect never falls back to SQLite, which locks under load."""
    if not embedded.has_extension(database_url, "pg_trgm"):
        raise StartFailed(
            f"the Postgres at {_where(database_url)} lacks the pg_trgm extension, which Prefect's schema "
            "needs: install that server's contrib modules (the postgresql-contrib package), or point "
            "DOCVL_DATABASE_URL at a loopback port where no server answers and docvl up starts its "
            "embedded PostgreSQL, which has pg_trgm"
        )
    url = urlsplit(database_url)._replace(path=f"/{name}").geturl()
    embedded.ensure_database(url)
    return url.replace("+psycopg", "+asyncpg").replace("postgresql://", "postgresql+asyncpg://")


def _model(settings: UpSettings, data: Path) -> tuple[Path, bool]:
    if settings.model is not None:
        if not (settings.model / "config.json").is_file():
            raise StartFailed(f"DOCVL_MODEL={settings.model} is not a checkpoint directory (no config.json)")
        return settings.model, False
    tiny = data / "models" / "tiny-random"
    if not (tiny / "config.json").is_file():
        from model_worker.tiny import build_tiny

        say(f"Building the tiny random test model in {tiny}")
        build_tiny(tiny, small=True)
    return tiny, True


def _layout_model(settings: UpSettings, data: Path) -> Path | None:
    """The DeepSeek-OCR-2 checkpoint the layout worker serves: DOCVL_LAYOUT_MODEL, else the tiny random one
    beside the tiny DeepSeek-VL (so every task works out of the box), else none."""
    if settings.layout_model is not None:
        if not (settings.layout_model / "config.json").is_file():
            raise StartFailed(
                f"DOCVL_LAYOUT_MODEL={settings.layout_model} is not a checkpoint directory (no config.json)"
            )
        return settings.layout_model
    if settings.model is not None:
        return None
    tiny = data / "models" / "tiny-random-ocr2"
    if not (tiny / "config.json").is_file():
        from model_worker.tiny import build_tiny

        say(f"Building the tiny random DeepSeek-OCR-2 test model in {tiny}")
        build_tiny(tiny, small=True, family="deepseek-ocr2")
    return tiny


def _local_key(database: Database, data: Path) -> str:
    """The local key: kept in the data directory and reused while it is valid."""
    path = data / "api-key"
    if path.is_file():
        secret = path.read_text().strip()
        try:
            with database.transaction() as s:
                api_keys.authenticate(s, secret)
            return secret
        except Exception:
            pass
    with database.transaction() as s:
        secret = api_keys.create_key(s, "local", "docvl up").secret
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(secret + "\n")  # readable by its owner only, from the first byte
    return secret


def _absolute(path: Path, data: Path) -> Path:
    if path == Path("var/storage"):  # the default: inside the data directory
        return data / "storage"
    return path.resolve()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
