"""The early answer to "may this API key submit now?", given from a request's headers before its body is
read, so that a burst past a key's limit of jobs in flight is refused without reading, parsing or spooling
the bodies it refuses.

Per process, each key that has submitted lately is remembered: who it is (as Postgres authenticated it),
its jobs in flight (as Postgres counted them; both read together, at most once per FRESH_FOR_S per key and
one read at a time, the requests arriving meanwhile being answered from that read), and its submissions
let in here and not recorded yet. A key's room is its limit less both counts. A burst of a
thousand submissions from one key thus costs a read or two of the database and the bodies of the
submissions let in, nothing more.

It is a hint that saves work, not the limit itself: the exact check is made under the key's lock as the
job is inserted (docvl/db/jobs.py lock_key_submissions). Where the hint errs:
- a job that ends is seen at the next read, up to FRESH_FOR_S later: a submission in between may be
  refused although there is room (it is told when to retry);
- a key revoked within FRESH_FOR_S of its last read may be refused as "too many" rather than
  "unauthenticated" (nothing is let in on this memory alone: what is let in is authenticated again, by
  JobService.authenticate, which asks Postgres at most AUTHENTICATED_FOR_S apart per key);
- where several processes serve one key, each may let in up to the limit at the start of a burst; the
  exact check refuses the surplus, after reading their bodies.
A ticket moves its place from "being submitted" to "in flight" just before its job's insert commits,
never after: a read of the database and then of the tickets may miss a submission (let one more in, which
the exact check refuses) but never count one twice (refuse one it had room for)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from docvl.db.api_keys import Caller, hash_secret
from docvl.errors import Unauthenticated

FRESH_FOR_S = 0.25  # how long a key's count read from the database is used before it is read again
MAX_REMEMBERED = 4096  # keys remembered; past it, those idle and stale are forgotten


@dataclass(frozen=True)
class Full:
    """No room: the key's jobs in flight and its submissions let in here number `counted`."""

    caller: Caller
    counted: int


@dataclass
class _Key:
    caller: Caller
    in_flight: int  # as last read from the database, plus the jobs recorded here since
    read_at: float
    pending: int = 0  # let in here, not recorded yet


class Ticket:
    """A submission let in: it holds one of its key's places until it is recorded or released (the first
    of the two counts, the other does nothing)."""

    def __init__(self, admission: Admission | None = None, key: _Key | None = None) -> None:
        self._admission = admission
        self._key = key

    def recorded(self) -> None:
        """The job is written (call it before the commit): its place is now one of the key's in flight."""
        self._end(recorded=True)

    def release(self) -> None:
        """The submission was refused, failed or replayed an earlier job: its place is free again."""
        self._end(recorded=False)

    def _end(self, *, recorded: bool) -> None:
        if self._admission is not None and self._key is not None:
            self._admission.end(self._key, recorded=recorded)
        self._admission = self._key = None


def unlimited() -> Ticket:
    """A ticket that holds no place: a retry of a job already recorded (an Idempotency-Key seen before)."""
    return Ticket()


class Admission:
    """The keys of this process's recent submissions. `read(secret)`: the key's caller (Unauthenticated
    when it is unknown or revoked) and its jobs in flight, from the database."""

    def __init__(
        self,
        read: Callable[[str], tuple[Caller, int]],
        *,
        fresh_for_s: float = FRESH_FOR_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.fresh_for_s = fresh_for_s
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}  # by the secret's hash
        self._reading: dict[str, threading.Lock] = {}  # the keys being read, by the secret's hash
        self._refused: dict[str, tuple[float, str]] = {}  # unknown or revoked: when read, and why

    def from_memory(self, secret: str, limit: int, *, stale_ok: bool = False) -> Ticket | Full | None:
        """The answer when the key's count is fresh (or, `stale_ok`, whenever it was read: for a caller that
        waited for a read of it); None when it has to be read (see `admit`)."""
        return self._decide(hash_secret(secret), limit, stale_ok=stale_ok)

    def admit(self, secret: str, limit: int) -> Ticket | Full:
        """The answer, reading the key from the database first when its count is not fresh (blocking). One
        read per key at a time: who waited for another's read answers from it."""
        hashed = hash_secret(secret)
        decided = self._decide(hashed, limit)
        if decided is not None:
            return decided
        seen = self._read_at(hashed)
        with self._lock:
            reading = self._reading.setdefault(hashed, threading.Lock())
        with reading:
            decided = self._decide(hashed, limit)  # fresh now, or refused lately
            if decided is None and self._read_at(hashed) != seen:  # another read it while this one waited
                decided = self._decide(hashed, limit, stale_ok=True)
            if decided is None:
                self._read(secret, hashed)
                decided = self._decide(hashed, limit, stale_ok=True)
        assert decided is not None  # just read: remembered (only stale keys are forgotten)
        return decided

    def end(self, key: _Key, *, recorded: bool) -> None:
        """A ticket's end (Ticket.recorded, Ticket.release)."""
        with self._lock:
            key.pending -= 1
            if recorded:
                key.in_flight += 1

    def _read_at(self, hashed: str) -> float | None:
        with self._lock:
            key = self._keys.get(hashed)
            return None if key is None else key.read_at

    def _read(self, secret: str, hashed: str) -> None:
        started = self.clock()
        try:
            try:
                caller, in_flight = self.read(secret)
            except Unauthenticated as exc:
                with self._lock:
                    if len(self._refused) >= MAX_REMEMBERED:
                        self._refused.clear()
                    self._refused[hashed] = (started, exc.message)
                    self._keys.pop(hashed, None)  # revoked: its tickets still end, on the key forgotten
                raise
            with self._lock:
                key = self._keys.get(hashed)
                if key is None:
                    self._forget_idle()
                    self._keys[hashed] = _Key(caller, in_flight, started)
                else:
                    key.caller, key.in_flight, key.read_at = caller, in_flight, started
        finally:
            with self._lock:
                self._reading.pop(hashed, None)

    def _decide(self, hashed: str, limit: int, *, stale_ok: bool = False) -> Ticket | Full | None:
        """From memory, when the key's count is fresh or `stale_ok`; Unauthenticated for a key found
        unknown or revoked less than FRESH_FOR_S ago."""
        with self._lock:
            key = self._keys.get(hashed)
            if key is None:
                refused = self._refused.get(hashed)
                if refused is not None and self.clock() - refused[0] <= self.fresh_for_s:
                    raise Unauthenticated(refused[1])
                return None
            if not stale_ok and self.clock() - key.read_at > self.fresh_for_s:
                return None
            counted = key.in_flight + key.pending
            if counted >= limit:
                return Full(key.caller, counted)
            key.pending += 1
            return Ticket(self, key)

    def _forget_idle(self) -> None:
        """Under the lock: past MAX_REMEMBERED keys, forget those with nothing let in and a stale count."""
        if len(self._keys) < MAX_REMEMBERED:
            return
        now = self.clock()
        idle = [h for h, k in self._keys.items() if not k.pending and now - k.read_at > self.fresh_for_s]
        for hashed in idle:
            del self._keys[hashed]
