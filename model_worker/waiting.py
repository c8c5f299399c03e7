"""The continuous scheduler's waiting requests: admitted by priority, then by arrival, with ageing.

A request's effective priority is its own (0..9, higher first: the job's) plus one for every
`aging_s` seconds it has waited, so an old low-priority request climbs past fresh high-priority ones
and none waits forever: a priority-0 request outranks fresh priority-9 ones after 9 × `aging_s` s plus
one more, and before that it ties with them and goes first (it arrived earlier). A preempted request
keeps its arrival time, so it goes back to the head of its (aged) priority class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from model_worker.batcher import _Pending


class WaitingQueue:
    def __init__(self, aging_s: float) -> None:
        self.aging_s = aging_s
        self._items: list[_Pending] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[_Pending]:
        return iter(list(self._items))

    def append(self, pending: _Pending) -> None:
        self._items.append(pending)

    def remove(self, pending: _Pending) -> None:
        self._items.remove(pending)

    def clear(self) -> None:
        self._items.clear()

    def effective_priority(self, pending: _Pending, now: float) -> int:
        aged = int((now - pending.enqueued_at) // self.aging_s) if self.aging_s > 0 else 0
        return pending.prepared.priority + max(aged, 0)

    def ordered(self, now: float) -> list[_Pending]:
        """Highest effective priority first; among equals, the earliest arrival."""
        return sorted(self._items, key=lambda p: (-self.effective_priority(p, now), p.enqueued_at))


class Replay:
    """A streaming request's deltas across recomputations: once preempted, its row is generated again
    from scratch, and the text the caller already has is not sent twice (greedy or seeded, the
    recomputed text is the same, so deltas resume where the caller's text ends)."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send
        self.sent = 0  # characters the caller has
        self.produced = 0  # characters the current row has streamed

    def restart(self) -> None:
        self.produced = 0

    def __call__(self, delta: str) -> None:
        start = self.produced
        self.produced += len(delta)
        if self.produced <= self.sent:
            return
        self.send(delta[max(self.sent - start, 0) :])
        self.sent = self.produced
