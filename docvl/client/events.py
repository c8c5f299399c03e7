"""Following a job: its server-sent event stream read into (kind, data) pairs, and what `Client.wait`
makes of the events (a job's state never goes backwards)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from pydantic import ValidationError

from docvl.client.errors import ApiError, WaitTimeout
from docvl.job_status import JobStatus
from docvl.jobs.views import EventView, JobView, Progress


def read_sse(lines: Iterable[str], on_line: Callable[[], None]) -> Iterator[tuple[str, str]]:
    """(event kind, data) of each event in the lines of an event stream, up to and with `end`; `on_line`
    is called before each line is read on (the server sends a keep-alive comment when idle)."""
    kind, data = "message", list[str]()
    for line in lines:
        on_line()
        if not line:
            if data:
                yield kind, "\n".join(data)
                if kind == "end":
                    return
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def parse_event(data: str) -> EventView:
    try:
        return EventView.model_validate_json(data)
    except ValidationError as exc:
        raise ApiError(200, "invalid_response", f"an event is not an EventView: {data[:200]}") from exc


def state(view: JobView) -> tuple[JobStatus, int, int, int]:
    """What `wait` reports a change of: the status and the page counters."""
    p = view.progress
    return view.status, p.pages_total, p.pages_done, p.pages_failed


def apply(view: JobView, event: EventView) -> JobView:
    """The job as an event leaves it: its status, and the counters of progress events. The stream starts
    from the job's first event, so events older than `view` are replayed: nothing goes backwards."""
    if _RANK[event.status] < _RANK[view.status]:
        return view
    current = view.progress.model_dump()
    for name in ("pages_total", "pages_done", "pages_failed"):
        value = event.data.get(name)
        if isinstance(value, int) and value > current[name]:
            current[name] = value
    return view.model_copy(update={"status": event.status, "progress": Progress.model_validate(current)})


_RANK = {
    status: 0 if status is JobStatus.QUEUED else 1 if status is JobStatus.RUNNING else 2
    for status in JobStatus
}


def check_deadline(deadline: float | None, job_id: object) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"job {job_id} had not finished when the wait ran out")
