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
import socket
import threading
import time

__all__ = ["Watchdog", "current_watchdog"]


class Watchdog:
    """Enforces one download's deadline, whatever the server does.

    Socket timeouts bound each ``recv``, not the sum: a server dripping a byte
    every 0.2 s into the headers never trips them.  So when the deadline
    passes, a timer shuts down every socket the download uses, and the blocked
    read returns at once.  It shuts down a private ``dup`` of each socket, so a
    descriptor number closed and reused meanwhile can never be hit.
    """

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._token = _current.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
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

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                for dup in self._dups:
                    _shutdown(dup)


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
