"""The early admission of submissions (docvl/jobs/admission.py), on its own: `read` stands for the
database (a key's caller and its jobs in flight), the clock is the test's. The same logic in front of the
real database and API: tests/front_doors/test_bursts.py."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from docvl.db.api_keys import Caller
from docvl.errors import Unauthenticated
from docvl.jobs.admission import Admission, Full, Ticket

CALLER = Caller("acme", uuid.uuid4())


class Keys:
    """What the database would answer: the known secret, its jobs in flight; the reads it was asked for."""

    def __init__(self, in_flight: int = 0) -> None:
        self.known = {"good"}
        self.in_flight = in_flight
        self.reads = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def read(self, secret: str) -> tuple[Caller, int]:
        with self.lock:
            self.reads += 1
        self.entered.set()
        assert self.go_on.wait(10)
        if secret not in self.known:
            raise Unauthenticated("unknown or revoked API key")
        return CALLER, self.in_flight


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admission(keys: Keys, clock: Clock) -> Admission:
    return Admission(keys.read, fresh_for_s=0.25, clock=clock)


def test_a_burst_reads_the_key_once_and_lets_in_exactly_its_room() -> None:
    keys, clock = Keys(in_flight=2), Clock()
    gate = admission(keys, clock)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: gate.admit("good", 5), range(200)))
    assert keys.reads == 1
    assert sum(isinstance(a, Ticket) for a in answers) == 3  # 5 less the 2 in flight
    refused = [a for a in answers if isinstance(a, Full)]
    assert len(refused) == 197
    assert {(a.caller, a.counted) for a in refused} == {(CALLER, 5)}


def test_a_ticket_holds_its_place_until_recorded_or_released() -> None:
    keys, clock = Keys(), Clock()
    gate = admission(keys, clock)
    first, second = gate.admit("good", 2), gate.admit("good", 2)
    assert isinstance(first, Ticket)
    assert isinstance(second, Ticket)
    assert gate.from_memory("good", 2) == Full(CALLER, 2)
    first.release()
    first.release()  # once only
    third = gate.from_memory("good", 2)
    assert isinstance(third, Ticket)
    third.recorded()  # now one of the key's jobs in flight, until the next read says otherwise
    third.release()  # after recorded: nothing
    assert gate.from_memory("good", 2) == Full(CALLER, 2)
    second.release()
    assert isinstance(gate.from_memory("good", 2), Ticket)


def test_a_count_is_used_while_fresh_then_read_again() -> None:
    keys, clock = Keys(in_flight=3), Clock()
    gate = admission(keys, clock)
    assert gate.from_memory("good", 3) is None  # never read: the caller has to read
    assert gate.admit("good", 3) == Full(CALLER, 3)
    keys.in_flight = 0  # jobs ended
    clock.now += 0.25
    assert gate.from_memory("good", 3) == Full(CALLER, 3)  # still fresh: the hint lags
    clock.now += 0.01
    assert gate.from_memory("good", 3) is None
    assert isinstance(gate.admit("good", 3), Ticket)
    assert keys.reads == 2


def test_who_waits_for_a_read_answers_from_it() -> None:
    keys, clock = Keys(in_flight=1), Clock()
    gate = admission(keys, clock)
    held = gate.admit("good", 2)  # read once: 1 in flight, and this one let in
    assert isinstance(held, Ticket)
    clock.now += 1  # stale: the next answer needs a read
    keys.go_on.clear()
    keys.entered.clear()
    keys.in_flight = 0  # the job ended meanwhile
    with ThreadPoolExecutor(8) as pool:
        reading = pool.submit(gate.admit, "good", 2)
        assert keys.entered.wait(10)
        assert gate.from_memory("good", 2) is None  # stale: not answered from the count before the read
        waiting = [pool.submit(gate.admit, "good", 2) for _ in range(6)]
        clock.now += 5  # however long the read takes, the ones waiting answer from it
        keys.go_on.set()
        answers = [reading.result(10), *(w.result(10) for w in waiting)]
    assert keys.reads == 2
    # 0 in flight now, 1 place held: 1 more let in
    assert sum(isinstance(a, Ticket) for a in answers) == 1
    assert [a for a in answers if isinstance(a, Full)] == [Full(CALLER, 2)] * 6


def test_an_unknown_key_is_refused_from_memory_while_fresh() -> None:
    keys, clock = Keys(), Clock()
    gate = admission(keys, clock)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            gate.admit("bad", 5)
    assert keys.reads == 1
    clock.now += 0.3
    with pytest.raises(Unauthenticated):
        gate.admit("bad", 5)
    assert keys.reads == 2


def test_a_key_revoked_is_forgotten() -> None:
    keys, clock = Keys(), Clock()
    gate = admission(keys, clock)
    ticket = gate.admit("good", 5)
    assert isinstance(ticket, Ticket)
    clock.now += 1
    keys.known.clear()  # revoked
    with pytest.raises(Unauthenticated):
        gate.admit("good", 5)
    with pytest.raises(Unauthenticated):
        gate.from_memory("good", 5)  # from memory, no read
    assert keys.reads == 2
    ticket.recorded()  # a ticket of the forgotten key still ends quietly
