"""A stack's namespace (docvl/namespace.py): derived from its database's name unless DOCVL_NAMESPACE names
it; every Redis key of its Celery app starts with it, and its page tasks say it; and its marker in Redis
(docvl/broker/stack.py), on a real Redis and real Postgres databases, refuses a second database under the
same namespace. tests/platform/test_two_stacks.py runs two stacks side by side."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from pydantic import ValidationError

from docvl import namespace
from docvl.broker.celery_app import make_celery
from docvl.broker.dispatch import CeleryDispatch
from docvl.broker.stack import TTL_S, StackMarker, marker_for, where
from docvl.db.database import Database
from docvl.db.identity import DatabaseIdentity, identity_of
from docvl.errors import NamespaceTaken
from docvl.jobs.context import PageWork
from docvl.settings import CoreSettings
from docvl.tasks import TaskKind
from docvl.up.launcher import prefect_database_name
from docvl.up.settings import UpSettings
from tests.support.helpers import wait_for
from tests.support.services import ensure_redis, scratch_database

REDIS = "redis://127.0.0.1:6379/15"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:5432/docvl", "docvl"),
        ("postgresql://docvl:secret@postgres:5432/docvl_staging", "docvl_staging"),
        ("postgresql://team@db.internal/", "team"),  # no database named: libpq takes the user's name
        ("postgresql://postgres@127.0.0.1/My%20Stack%3A2", "My-Stack-2"),
        ("postgresql://postgres@127.0.0.1/_x_", "x"),
    ],
)
def test_the_default_namespace_is_the_databases_name(url: str, expected: str) -> None:
    assert namespace.derive(url) == expected
    assert CoreSettings(database_url=url).namespace == expected


def test_different_databases_on_one_server_get_different_namespaces() -> None:
    server = "postgresql+psycopg://postgres@127.0.0.1:5432"
    assert (
        CoreSettings(database_url=f"{server}/docvl_a").namespace
        != CoreSettings(database_url=f"{server}/docvl_b").namespace
    )


def test_docvl_namespace_names_it_and_bad_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVL_NAMESPACE", "prod-eu.1")
    assert CoreSettings().namespace == "prod-eu.1"
    for bad in ("with:colon", "-leading", "x" * 64, "spa ce"):
        monkeypatch.setenv("DOCVL_NAMESPACE", bad)
        with pytest.raises(ValidationError, match="cannot be a namespace"):
            CoreSettings()


def test_prefect_keeps_its_state_in_a_database_named_after_docvls() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/docvl_b"
    assert prefect_database_name(UpSettings(database_url=url)) == "docvl_b_prefect"
    assert prefect_database_name(UpSettings(database_url=url, prefect_database="pf")) == "pf"
    assert len(prefect_database_name(UpSettings(database_url=url + "x" * 60))) <= 63


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    ensure_redis()
    client = redis.Redis.from_url(REDIS)
    yield client
    client.close()


def test_every_key_of_a_stacks_celery_app_is_its_own_and_page_tasks_say_where_from(
    broker: redis.Redis,
) -> None:
    name = f"ns-test-{uuid.uuid4().hex[:8]}"
    app = make_celery(REDIS, name)
    assert app.conf.broker_transport_options["global_keyprefix"] == f"{name}:"
    work = PageWork(uuid.uuid4(), 3, TaskKind.QA, 9)
    try:
        CeleryDispatch(app).send_pages([work])
        keys = {key.decode() for key in broker.scan_iter(match="*", count=1000) if name.encode() in key}
        assert keys
        assert all(key.startswith(f"{name}:") for key in keys)
        (message,) = [m for key in keys if broker.type(key) == b"list" for m in broker.lrange(key, 0, -1)]
        args, kwargs, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
        assert args == [str(work.job_id), 3, "qa", 9]
        assert kwargs == {"namespace": name}
    finally:
        for key in broker.scan_iter(match=f"{name}:*"):
            broker.delete(key)
        app.close()


def test_a_new_job_sends_no_start_request_while_a_runner_of_its_stack_is_looking(
    broker: redis.Redis,
) -> None:
    """CeleryDispatch.start_new_job sends a start request unless a job runner of the same stack said it is
    looking for jobs (and has not withdrawn it, nor died long enough ago for the mark to expire): then it
    wakes that runner instead, once per job."""
    mine, other = (f"ns-look-{uuid.uuid4().hex[:8]}" for _ in range(2))
    apps = [make_celery(REDIS, mine), make_celery(REDIS, other)]
    dispatch, elsewhere = (CeleryDispatch(app) for app in apps)

    def start_requests() -> int:
        return int(broker.llen(f"{mine}:jobs"))

    try:
        dispatch.start_new_job()
        assert start_requests() == 1
        elsewhere.looking(60)  # another stack's runner: no concern of this stack's jobs
        dispatch.start_new_job()
        assert start_requests() == 2
        assert not elsewhere.wait_for_new_job(0.05)
        dispatch.looking(60)
        dispatch.start_new_job()
        dispatch.start_new_job()
        assert start_requests() == 2
        assert dispatch.wait_for_new_job(5)
        assert dispatch.wait_for_new_job(5)
        assert not dispatch.wait_for_new_job(0.05)
        dispatch.start_jobs()  # what the reconciler and the runners send is sent all the same
        assert start_requests() == 3
        dispatch.stopped_looking()
        dispatch.start_new_job()
        assert start_requests() == 4
        dispatch.looking(0.05)  # a runner that died looking: the mark expires
        wait_for(lambda: not broker.exists(f"{mine}:runner-looking"), 10, "the mark to expire")
        dispatch.start_new_job()
        assert start_requests() == 5
    finally:
        for name in (mine, other):
            for key in broker.scan_iter(match=f"{name}:*"):
                broker.delete(key)
        for app in apps:
            app.close()


@pytest.fixture
def two_databases() -> Iterator[tuple[str, str]]:
    with scratch_database("ns_a") as a, scratch_database("ns_b") as b:
        yield a, b


def test_a_second_database_under_a_taken_namespace_is_refused_and_says_which(
    broker: redis.Redis, two_databases: tuple[str, str]
) -> None:
    a, b = two_databases
    name = f"ns-test-{uuid.uuid4().hex[:8]}"
    first = marker_for(CoreSettings(database_url=a, redis_url=REDIS, namespace=name))
    second = marker_for(CoreSettings(database_url=b, redis_url=REDIS, namespace=name))
    try:
        first.claim()
        first.claim()  # the same stack again (another of its processes, a refresh): kept
        assert 0 < broker.ttl(first.key) <= TTL_S
        with pytest.raises(NamespaceTaken) as refused:
            second.claim()
        message = refused.value.message
        assert f"namespace {name!r}" in message
        assert where(a) in message
        assert where(b) in message
        assert "DOCVL_NAMESPACE" in message
        assert first.key in message
        second.refresh()  # a running process that lost its claim logs it and goes on
        # The same database under another host name is the same stack.
        same = marker_for(
            CoreSettings(database_url=a.replace("127.0.0.1", "localhost"), redis_url=REDIS, namespace=name)
        )
        same.claim()
        broker.delete(first.key)  # the first stack gone for good: its claim lapsed
        second.claim()
        with pytest.raises(NamespaceTaken):
            first.claim()
    finally:
        broker.delete(first.key)


def test_a_database_is_known_by_what_its_server_says(two_databases: tuple[str, str]) -> None:
    a, b = two_databases
    identities = []
    for url in (a, b, a.replace("127.0.0.1", "localhost")):
        database = Database(url)
        identities.append(identity_of(database))
        database.dispose()
    assert identities[0] != identities[1]
    assert identities[0] == identities[2]
    assert identities[0].name == namespace.database_name(a)


def test_a_marker_names_the_stacks_database_without_its_password() -> None:
    marker = StackMarker(REDIS, "x", DatabaseIdentity("docvl", "1"), where("postgresql://u:pw@db:6000/docvl"))
    assert marker.database_where == "db:6000/docvl"
    assert marker.key == "x:docvl-stack"
    assert where("redis://:pw@cache/3") == "cache:6379/3"
