"""A deadline for one whole download, whatever the server does.

Socket timeouts bound each ``recv``, not the sum: a server dripping a byte
into the headers every 0.2 s never trips them.  A :class:`Watchdog` shuts the
download's sockets down when its deadline passes, so the blocked read returns
at once.  The transport registers sockets with the watchdog of the download
running in the current thread (:func:`current_watchdog`), because requests
offers no way to pass it through.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator

from .. import forksafe

__all__ = ["Watchdog", "budget_left", "current_watchdog", "import_step", "source_budget"]


class Watchdog:
    """Enforces one download's deadline, whatever the server does.

    Socket timeouts bound each ``recv``, not the sum: a server dripping a byte
    every 0.2 s into the headers never trips them.  So when the deadline
    passes, every socket the download uses is shut down, and the blocked read
    returns at once.  It shuts down a private ``dup`` of each socket, so a
    descriptor number closed and reused meanwhile can never be hit.  One
    shared timer thread serves every watchdog: starting a thread per download
    would cost more than a small download itself.
    """

    def __init__(self, seconds: float) -> None:
        own = time.monotonic() + seconds
        bound = _bound()
        #: True if the import step's budget, not this download's own timeout, ends it.
        self.budgeted = bound is not None and bound < own
        self.deadline = bound if bound is not None and self.budgeted else own
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []

    def __enter__(self) -> Watchdog:
        self._token = _current.set(self)
        _timer.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
        with self._lock:
            self._done = True
            for dup in self._dups:
                dup.close()
            self._dups.clear()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down too when the deadline passes."""
        with self._lock:
            if sock is None or self._done:
                return
            try:
                dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
            except (OSError, ValueError):
                return  # already closed: nothing left to interrupt
            self._dups.append(dup)
            if self.fired:
                _shutdown(dup)

    def fire(self) -> None:
        """The deadline has passed: cut every watched socket (no-op once done)."""
        with self._lock:
            if not self._done:
                self.fired = True
                for dup in self._dups:
                    _shutdown(dup)

    @property
    def done(self) -> bool:
        return self._done


class _Timer:
    """One daemon thread that fires watchdogs whose deadline has passed.

    Watchdogs that finish in time stay in the heap until their deadline and
    are then dropped unfired; with one timeout per client, a new deadline is
    never the earliest, so adding one rarely wakes the thread.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watchdog: Watchdog) -> None:
        _register_fork_reset()
        with self._cond:
            entry = (watchdog.deadline, next(self._count), watchdog)
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="secure_urlimport-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                watchdog = heapq.heappop(self._heap)[2]
            watchdog.fire()  # outside the condition: it takes the watchdog's lock


_timer = _Timer()
_fork_reset_registered = False


def _register_fork_reset() -> None:
    """Register the timer's fork reset on first use, not at import.

    A child starts with one thread: the timer's lock may be held by a thread
    that does not exist there, so it gets a fresh timer.  No lock here (one
    could be held at a fork): two threads at once may both register, which
    only resets twice.
    """
    global _fork_reset_registered
    if _fork_reset_registered:
        return
    forksafe.at_fork_in_child(_timer.reset)  # before the flag: see forksafe.Lock.acquire
    _fork_reset_registered = True


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone, which is what we wanted
        sock.shutdown(socket.SHUT_RDWR)


# The download running in this thread: the connection hook below finds it
# here, since requests has no way to pass it through.
_current: contextvars.ContextVar[Watchdog | None] = contextvars.ContextVar(
    "secure_urlimport_watchdog", default=None
)


def current_watchdog() -> Watchdog | None:
    """The watchdog of the download running in this thread, if any."""
    return _current.get()


# -- one import step: every download for it shares each source's deadline ------


class _Step:
    """The downloads one step of an import makes (the manifest, or one module:
    its bundle, its file, a no-cache retry), each source's starting when that
    source is first asked, so a slow mirror cannot starve the next one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadlines: dict[str, float] = {}

    def deadline_of(self, source: str) -> float:
        return self._deadlines.setdefault(source, time.monotonic() + self.seconds)


_step: contextvars.ContextVar[_Step | None] = contextvars.ContextVar(
    "secure_urlimport_step", default=None
)
_source: contextvars.ContextVar[str] = contextvars.ContextVar("secure_urlimport_source", default="")


@contextlib.contextmanager
def import_step(seconds: float) -> Iterator[None]:
    """Bound every download made inside to *seconds* per source, all together.

    Without this each download had its own timeout, and the bundle, the file
    and a no-cache retry dripping slowly made one import take three times
    ``timeout``.  A step inside a step is part of the outer one (an inner
    step must never extend the bound).  Context variables do not follow work
    to other threads, so prefetch threads keep their own per-download bound.
    """
    if _step.get() is not None:
        yield
        return
    token = _step.set(_Step(seconds))
    try:
        yield
    finally:
        _step.reset(token)


@contextlib.contextmanager
def source_budget(source: str) -> Iterator[None]:
    """Downloads inside come from *source* (a tree URL or a mirror's) and share
    its deadline in the current step, if there is one."""
    token = _source.set(source)
    try:
        yield
    finally:
        _source.reset(token)


def budget_left(seconds: float) -> float:
    """*seconds*, or less if the current step's budget for this source ends sooner."""
    bound = _bound()
    return seconds if bound is None else min(seconds, bound - time.monotonic())


def _bound() -> float | None:
    """The deadline the current step sets for the current source, if any."""
    step = _step.get()
    return None if step is None else step.deadline_of(_source.get())
