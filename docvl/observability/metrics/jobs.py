"""Job lifecycle counters, counted where each step happens: job runners (starts), page workers, job
runners and the reconciler (ends), the reconciler (recoveries). Every one has a label, so that a prefork
pool process creates its series after the fork, in multiprocess mode (see metrics.worker)."""

from __future__ import annotations

from prometheus_client import Counter

from docvl.observability.metrics import NAMESPACE

starts = Counter(
    "job_starts", "Jobs a job runner took to start, by outcome: started (rendered and dispatched), failed "
    "(a bad document) or deferred (an outage: left to the reconciler).", ["outcome"], namespace=NAMESPACE,
)  # fmt: skip
finished = Counter("jobs_finished", "Jobs ended, by final status.", ["status"], namespace=NAMESPACE)
recovered = Counter(
    "jobs_recovered", "Re-drives by the reconciler, by what was done (start, resume_render, redispatch, "
    "finalize, notify, time_out).", ["action"], namespace=NAMESPACE,
)  # fmt: skip
