"""Which model worker serves which task: the fleet of `DOCVL_MODEL_WORKER_TARGETS`, each target's tasks
learnt from its GetModelInfo (its model family's), and each request sent to a worker that serves its task.

Discovered, not configured: a worker knows what its checkpoint serves, so a deployment lists its workers
once and adding a DeepSeek-OCR-2 worker beside the DeepSeek-VL ones needs no second list that could
disagree with the checkpoints. What a target answered is remembered: a worker that stops answering keeps
its tasks (it is probably restarting), and a target never heard from counts as "may serve anything", so
nothing is refused on a guess. The front doors refresh in the background and refuse, at submission, a task
that every known worker declines; the page workers refresh when their knowledge is older than
`refresh_s` and route each page there.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from docvl.errors import DocvlError, InvalidInput
from docvl.inference.client import InferenceClient
from docvl.inference.types import InferenceRequest, InferenceResult, ModelIdentity
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)

INFO_TIMEOUT_S = 2.0  # a worker that takes longer to say what it serves is asked again later


@dataclass
class _Known:
    tasks: frozenset[TaskKind] | None = None  # None: never heard from
    identity: ModelIdentity | None = None
    checked_at: float = float("-inf")


class ModelFleet:
    def __init__(
        self,
        targets: Iterable[str],
        *,
        timeout_s: float | None = None,
        refresh_s: float = 30.0,
        client: Callable[[str], InferenceClient] = InferenceClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = list(dict.fromkeys(targets))
        if not self.targets:
            raise ValueError("no model worker targets: set DOCVL_MODEL_WORKER_TARGETS")
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self.clock = clock
        self._clients = {target: client(target) for target in self.targets}
        self._known = {target: _Known() for target in self.targets}
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- what each worker serves ---------------------------------------------------------------------

    def refresh(self, *, stale_only: bool = True) -> None:
        """Ask the workers what they serve (those not asked for `refresh_s`, unless all); a worker that
        does not answer keeps what it said last."""
        now = self.clock()
        for target in self.targets:
            known = self._known[target]
            if stale_only and now - known.checked_at < self.refresh_s:
                continue
            try:
                info = self._clients[target].model_info(timeout=INFO_TIMEOUT_S)
            except DocvlError as exc:
                log.debug("model worker %s did not say what it serves: %s", target, exc)
                with self._lock:
                    known.checked_at = now
                continue
            tasks = frozenset(TaskKind.parse(task) for task in info["tasks"])
            identity = ModelIdentity(
                info["model_id"], info["model_revision"], info["prompt_template_version"]
            )
            with self._lock:
                if tasks != known.tasks:
                    log.info("model worker %s serves %s", target, ", ".join(sorted(t.value for t in tasks)))
                known.tasks, known.identity, known.checked_at = tasks, identity, now

    def served(self) -> dict[str, frozenset[TaskKind] | None]:
        """Each target's tasks as last heard; None for a target never heard from."""
        with self._lock:
            return {target: known.tasks for target, known in self._known.items()}

    def identities(self, task: TaskKind) -> list[ModelIdentity]:
        """The models (and prompts) of the workers known to serve `task` (as last heard; refreshed when
        stale): a result of one of them is what the page would get again."""
        self.refresh()
        with self._lock:
            known = list(self._known.values())
        return list(dict.fromkeys(k.identity for k in known if k.tasks and task in k.tasks and k.identity))

    def check_served(self, tasks: Iterable[TaskKind]) -> None:
        """InvalidInput naming a task that no worker serves, when every worker has said what it serves; a
        task is let through while some worker has not (it may serve it)."""
        served = self.served()
        if any(known is None for known in served.values()):
            return
        offered = frozenset().union(*(known for known in served.values() if known is not None))
        missing = [task for task in tasks if task not in offered]
        if missing:
            names = ", ".join(task.value for task in missing)
            raise InvalidInput(
                f"no model worker of this deployment serves {names}: they serve "
                f"{', '.join(sorted(t.value for t in offered))}"
                + (
                    "; layout needs a DeepSeek-OCR-2 worker (see docs/deployment.md)"
                    if TaskKind.LAYOUT in missing
                    else ""
                )
            )

    # -- sending requests ----------------------------------------------------------------------------

    def pick(self, task: TaskKind) -> InferenceClient:
        """A worker for `task`, in turn among those that serve it (or, when none is known to, among those
        not heard from). InvalidInput when every worker is known and none serves it."""
        self.refresh()
        served = self.served()
        candidates = [t for t, known in served.items() if known is not None and task in known]
        if not candidates:
            candidates = [t for t, known in served.items() if known is None]
        if not candidates:
            self.check_served([task])  # raises, naming what is served
        return self._clients[candidates[next(self._turn) % len(candidates)]]

    def generate(self, request: InferenceRequest) -> InferenceResult:
        return self.pick(request.task).generate(request, timeout=self.timeout_s)

    # -- the front doors' background refresh ---------------------------------------------------------

    def start_refreshing(self) -> None:
        """Refresh in a daemon thread every `refresh_s`, so a submission only reads what is known."""
        if self._refresher is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.refresh(stale_only=False)
                self._stop.wait(self.refresh_s)

        self._refresher = threading.Thread(target=loop, name="model-fleet", daemon=True)
        self._refresher.start()

    def close(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=INFO_TIMEOUT_S * len(self.targets) + 1)
        for client in self._clients.values():
            client.close()
