"""Postgres going away mid-operation: a typed, retryable error; after it is back, the retry writes once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from docvl.db import database, jobs, page_results
from docvl.db.database import Database
from docvl.errors import DatabaseUnavailable
from docvl.job_status import JobStatus
from docvl.tasks import TaskKind
from tests.jobs.test_jobs_repository import in_tx, new_job, pages, result
from tests.support.helpers import wait_for
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def proxied(db: Database) -> Iterator[tuple[Database, TcpProxy]]:
    url = make_url(db.url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = Database(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    yield through_proxy, proxy
    proxy.stop()
    through_proxy.dispose()


def lose_server_before_commit(database: Database, proxy: TcpProxy, work: Callable[[Session], object]) -> None:
    """Do `work` in a transaction, then cut the server off before the commit."""
    with database.transaction() as session:
        work(session)
        proxy.stop()


def test_outage_mid_transaction_then_retry_writes_once(
    db: Database, proxied: tuple[Database, TcpProxy]
) -> None:
    remote, proxy = proxied
    job_id = new_job(remote, tasks=[TaskKind.OCR])
    in_tx(remote, page_results.add_pages, job_id, pages(3))
    write = result(job_id, 1, TaskKind.OCR)

    with pytest.raises(DatabaseUnavailable):
        lose_server_before_commit(remote, proxy, lambda s: page_results.record_result(s, write))

    with pytest.raises(DatabaseUnavailable):
        in_tx(remote, jobs.get_job, job_id)

    proxy.start()
    in_tx(remote, page_results.record_result, write)  # the caller's retry of the same call
    in_tx(remote, page_results.record_result, write)  # and a duplicate delivery
    job = in_tx(db, jobs.get_job, job_id)
    assert (job.pages_total, job.pages_done, job.pages_failed) == (3, 1, 0)
    assert len(in_tx(db, page_results.results, job_id)) == 1


def test_outage_during_a_status_change_leaves_it_undone_until_retried(
    db: Database, proxied: tuple[Database, TcpProxy]
) -> None:
    remote, proxy = proxied
    job_id = new_job(remote)
    with pytest.raises(DatabaseUnavailable):
        lose_server_before_commit(remote, proxy, lambda s: jobs.transition(s, job_id, JobStatus.RUNNING))
    assert in_tx(db, jobs.get_job, job_id).status == JobStatus.QUEUED
    assert len(in_tx(db, jobs.events, job_id)) == 1
    proxy.start()
    assert in_tx(remote, jobs.transition, job_id, JobStatus.RUNNING).status == JobStatus.RUNNING
    assert [e.status for e in in_tx(db, jobs.events, job_id)] == ["queued", "running"]


def test_waiting_for_the_database_gives_up_with_a_typed_error() -> None:
    database = Database(f"postgresql+psycopg://postgres@127.0.0.1:1/{uuid.uuid4().hex}", connect_timeout_s=1)
    with pytest.raises(DatabaseUnavailable, match="unreachable"):
        database.wait_until_reachable(0.5)


def test_connections_the_server_closed_while_idle_are_replaced_not_used(
    db: Database, proxied: tuple[Database, TcpProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection whose server end went away while it sat idle (an administrator's
    pg_terminate_backend, a restart, the network path cut) is replaced when it is next taken: the next
    transaction runs on a new one, without an error. A direct connection shows it on its socket at once; one
    through a proxy may not yet, and is pinged when it has been idle (here: at once)."""
    remote, proxy = proxied
    job_id = new_job(remote)

    def backend(s: Session) -> int:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def terminate(pid: int, by: Database) -> None:
        assert in_tx(by, lambda s: s.execute(_TERMINATE, {"p": pid}).scalar_one())
        wait_for(lambda: not in_tx(by, lambda s: s.execute(_ALIVE, {"p": pid}).scalar_one()), 10, "its end")

    first = in_tx(db, backend)  # direct: the server's last message is on the socket before its backend ends
    terminate(first, by=remote)
    assert in_tx(db, backend) != first
    assert in_tx(db, jobs.get_job, job_id).id == job_id

    before_cut = in_tx(remote, backend)
    proxy.stop()  # the path to the server cut while the connection is idle, then back
    proxy.start()
    assert in_tx(remote, jobs.get_job, job_id).id == job_id
    assert in_tx(remote, backend) != before_cut

    monkeypatch.setattr(database, "PING_IDLE_S", 0.0)
    through_proxy = in_tx(remote, backend)
    terminate(through_proxy, by=db)  # the proxy passes the server's message on in its own time
    assert in_tx(remote, backend) != through_proxy


_ALIVE = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
_TERMINATE = text("SELECT pg_terminate_backend(:p)")
