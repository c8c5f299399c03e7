"""The JobService of a front door, wired to the real engines: Celery (the dispatch port) carries start
requests to the job runners, revokes page tasks and queues webhooks. Also the readiness check of the front
doors' dependencies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial

import httpx
import redis

from docvl import office
from docvl.broker import stack
from docvl.broker.dispatch import CeleryDispatch
from docvl.db.database import Database
from docvl.db.notifications import EventNotifier
from docvl.errors import InvalidInput
from docvl.inference.routing import ModelFleet
from docvl.jobs.intake import Limits
from docvl.jobs.quote import Pricing
from docvl.jobs.service import JobService
from docvl.office import office_off
from docvl.settings import FrontDoorSettings
from docvl.storage import open_store
from docvl.storage.factory import open_bucket


def limits(settings: FrontDoorSettings, fleet: ModelFleet | None = None) -> Limits:
    served = {} if fleet is None else {"served": fleet.check_served}
    return Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_pages=settings.max_pages,
        max_tasks=settings.max_tasks_per_job,
        max_question_chars=settings.max_question_chars,
        max_in_flight=settings.max_in_flight_per_key,
        retry_after_s=settings.retry_after_s,
        webhook_allow_private=settings.webhook_allow_private,
        source_buckets=tuple(settings.source_buckets),
        office_off=office_off(settings),
        max_unpacked_bytes=settings.office_max_unpacked_bytes,
        **served,
    )


def job_service(settings: FrontDoorSettings, db: Database | None = None) -> JobService:
    """The service; NamespaceTaken when another stack holds this one's namespace on its Redis."""
    stack.stake(settings)
    store = open_store(settings)
    store.ensure_ready()  # the bucket or directory, made when missing
    fleet = ModelFleet(settings.model_worker_targets)  # what the model workers serve, refreshed meanwhile
    fleet.start_refreshing()
    return JobService(
        db or Database(settings.database_url),
        store,
        limits(settings, fleet),
        CeleryDispatch.connect(settings.redis_url, settings.namespace),
        source_store=partial(open_bucket, settings, own=store),
        presign_expiry_s=settings.presign_expiry_s,
        spool_dir=settings.spool_dir,
        notifier=EventNotifier(settings.database_url).start(),
        converter=office.converter_for(settings) if office_off(settings) is None else None,
        pricing=Pricing(settings.gpu_hour_price, settings.price_currency),
        on_close=fleet.close,
    )


def readiness(settings: FrontDoorSettings, service: JobService) -> dict[str, str]:
    """Each dependency's state: "ok" or why not."""
    checks: dict[str, str] = {}

    def check(name: str, probe: Callable[[], object]) -> None:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"{type(exc).__name__}: {exc}"[:300]

    check("database", service.db.ping)
    check("storage", lambda: service.store.stat("readiness-probe"))
    check("broker", lambda: redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping())
    prefect = settings.prefect_api_url
    if prefect:
        check("prefect", lambda: httpx.get(prefect.rstrip("/") + "/health", timeout=2).raise_for_status())
    else:
        checks["prefect"] = "PREFECT_API_URL is not set"
    off = service.limits.office_off  # reported, never a reason to be unready: PDFs and images still work
    checks["office"] = "ok" if off is None else f"off: {off}"
    return checks


def job_id_of(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput(f"{value[:60]!r} is not a job id (a UUID)") from exc
