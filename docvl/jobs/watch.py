"""The one job-event watch loop, behind SSE (`GET /v1/jobs/{id}/events`) and gRPC `WatchJob`.

`follow` is the loop: it reads the events after the last one sent, sends them, ends after the job's final
status event, and otherwise waits until the job's events change (a Postgres notification, through
`JobService.subscribed`) or `poll_s` passes, whichever comes first; while the service's notifications are
live, the timed look is only a safety net and comes every LIVE_POLL_S instead (each look is two queries:
16 streams looking every 0.5 s took as much of the API's CPU as the submissions). It is async, so that
an SSE stream holds no thread while it waits; its database reads run where the caller says (`offload`: the
API's thread pool). `follow_blocking` runs the same loop for a caller that has a thread of its own (the
gateway's), on a private event loop, reading inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

from docvl.db.api_keys import Caller
from docvl.jobs.views import EventView

if TYPE_CHECKING:
    from docvl.jobs.service import JobService

LIVE_POLL_S = 5.0  # how often a stream looks anyway while notifications wake it
Polled = tuple[list[EventView], bool]  # the events after the last one sent; whether the job has ended
Offload = Callable[[Callable[[], Polled]], Awaitable[Polled]]


class Mark(Enum):
    """What a stream says besides events."""

    OPEN = "open"  # first: the job is the caller's (its first look found it); its events follow
    KEEP_ALIVE = "keep-alive"  # nothing was sent for `keepalive_s`: the stream is still there
    END = "end"  # the job has ended and its last event was sent: nothing more comes


async def _always() -> bool:
    return True


async def _inline(read: Callable[[], Polled]) -> Polled:
    return read()


def wait_s(svc: object, poll_s: float, keepalive_s: float | None = None) -> float:
    """How long a stream waits for a wake-up before it looks anyway: `poll_s` while the service gets no
    notifications (none configured, or its listening connection is down: the notifier wakes every stream
    when it is back), else LIVE_POLL_S (never less than `poll_s`); never past a keep-alive due."""
    notifier = getattr(svc, "notifier", None)
    live = notifier is not None and notifier.connected.is_set()
    wait = max(poll_s, LIVE_POLL_S) if live else poll_s
    return wait if keepalive_s is None else min(wait, max(poll_s, keepalive_s))


async def follow(
    svc: JobService,
    caller: Caller,
    job_id: uuid.UUID,
    *,
    after_id: int = 0,
    poll_s: float,
    keepalive_s: float | None = None,
    keep_going: Callable[[], Awaitable[bool]] = _always,
    offload: Offload = _inline,
) -> AsyncIterator[EventView | Mark]:
    """Mark.OPEN, then the job's events after `after_id` as they happen, then Mark.END once it has ended;
    Mark.KEEP_ALIVE when nothing was sent for `keepalive_s` (None: never). Stops, without END, when
    `keep_going` says so (it is asked before each look). The first look raises NotFound when the job is
    not the caller's, before OPEN: a caller that takes the first item before it answers can answer 404
    without a look of its own."""
    loop, woken = asyncio.get_running_loop(), asyncio.Event()
    last_sent = time.monotonic()

    def wake() -> None:  # called from the notifier's thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: its stream is over
            loop.call_soon_threadsafe(woken.set)

    with svc.subscribed(job_id, wake):
        opened = False
        while opened is False or await keep_going():
            woken.clear()  # before looking: an event committed after the look ends the wait below
            batch, ended = await offload(partial(svc.poll_events, caller, job_id, after_id))
            if not opened:
                opened = True
                yield Mark.OPEN
            for event in batch:
                after_id = event.id
                yield event
                last_sent = time.monotonic()
            if ended:
                yield Mark.END
                return
            if keepalive_s is not None and time.monotonic() - last_sent > keepalive_s:
                yield Mark.KEEP_ALIVE
                last_sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), wait_s(svc, poll_s, keepalive_s))


def follow_blocking(
    svc: JobService,
    caller: Caller,
    job_id: uuid.UUID,
    *,
    after_id: int = 0,
    poll_s: float,
    keep_going: Callable[[], bool] = lambda: True,
) -> Generator[EventView, None, None]:
    """`follow`'s events, for a thread of its own: the loop runs on a private event loop, between the
    events it yields. Closing the iterator ends the stream (and its subscription)."""

    async def going() -> bool:
        return keep_going()

    stream = follow(svc, caller, job_id, after_id=after_id, poll_s=poll_s, keep_going=going)

    async def pull() -> EventView | Mark | None:
        return await anext(stream, None)

    with asyncio.Runner() as runner:  # on leaving, the loop finishes `stream` (aclose) and closes
        while (item := runner.run(pull())) is not None:
            if isinstance(item, EventView):
                yield item
