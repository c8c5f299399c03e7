"""The dispatch port: how a job's stages hand work to the queue. One implementation runs in production
(docvl.broker.dispatch.CeleryDispatch); tests record what was sent.

Every method raises BrokerUnavailable when the broker does not answer; the callers decide whether that is
an outage to retry, or best effort left to the reconciler."""

from __future__ import annotations

import uuid
from typing import Protocol

from docvl.jobs.context import PageWork
from docvl.tasks import TaskKind


class Dispatch(Protocol):
    def start_jobs(self, count: int = 1) -> None:
        """Ask the job runners `count` times to claim and start the jobs waiting to start."""

    def start_new_job(self) -> None:
        """Ask for a job just committed to be started: as start_jobs(), unless a job runner is looking for
        jobs to start already (it claims this one)."""

    def send_pages(self, work: list[PageWork]) -> None:
        """One page task per item, on its task's queue, at its job's priority, with the item's stable id."""

    def reuse_pages(self, job_id: uuid.UUID, queue: TaskKind, priority: int) -> None:
        """One reuse task for the job (docvl/jobs/reused_pages.py), on `queue` (one of the job's tasks'), at
        its priority: it takes every earlier result it finds and sends page tasks for the rest."""

    def revoke(self, ids: list[str]) -> None:
        """Revoke queued page tasks by id."""

    def queue_webhook(self, job_id: uuid.UUID) -> None:
        """Queue the delivery of the job's end webhook."""
