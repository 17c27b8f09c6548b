"""What ``fork()`` leaves broken in the child, and the one place that mends it.

A forked child starts with one thread, the one that called ``fork()``, and a
copy of everything else.  So, in the child:

* a lock another thread held at the fork stays held forever: the next
  ``install()``/``uninstall()`` or import waits on it for good;
* a thread pool counts workers that do not exist, and futures that no thread
  will ever complete;
* a keep-alive TLS connection is shared with the parent; the two processes
  then write records under one set of sequence numbers, and the server (or
  the parent) fails with "bad record MAC".

Everything of this library that holds such state registers here, and
:func:`_after_fork_in_child` resets it in the child (``os.register_at_fork``)
before the child's own code runs.  A reset only *replaces*: it never
acquires, releases, closes or shuts down what it inherited, since another
thread's lock may guard it, and shutting a shared socket down would also cut
the parent's connection.  The dropped objects are garbage: an inherited
socket is then closed in the child only, which the parent does not notice.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Lock", "RLock", "at_fork_in_child", "register"]

log = logging.getLogger("secure_urlimport")


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None:
        """Replace (never touch) what the parent's threads may have been using."""


# Weak: registering must not keep a closed tree, fetcher or pool alive.
_objects: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_functions: list[Callable[[], None]] = []


_hook_installed = False


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every forked child while *obj* lives."""
    _install_hook()
    _objects.add(obj)


def at_fork_in_child(func: Callable[[], None]) -> Callable[[], None]:
    """Call *func* (module-level state) in every forked child; usable as a decorator."""
    _install_hook()
    _functions.append(func)
    return func


def _install_hook() -> None:
    """The one ``os.register_at_fork`` call, made on first use, never at import.

    No lock (one could be held at a fork): two threads registering the first
    objects at once may both install it, which only resets twice -- harmless,
    since a reset only replaces.
    """
    global _hook_installed
    if _hook_installed or not hasattr(os, "register_at_fork"):
        return
    # Installed before the flag is set, never the other way round: a thread
    # that sees the flag must find the hook in place.
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _hook_installed = True


class _RawLock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


class Lock:
    """A ``threading.Lock`` that a forked child gets back new and unlocked.

    Right in the child because the library never forks while holding one of
    its own locks: it runs no user code under them.  Registered on its first
    acquire (a lock never taken cannot be held at a fork), so that creating
    one, e.g. at import, installs no hook.
    """

    __slots__ = ("__weakref__", "_lock", "_registered")

    @staticmethod
    def _new() -> _RawLock:
        return threading.Lock()

    def __init__(self) -> None:
        self._lock = self._new()
        self._registered = False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._registered:
            # Registered before the flag is set: another thread that sees the
            # flag may take the lock at once, and must find it registered.
            register(self)
            self._registered = True
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = self._new()


class RLock(Lock):
    """A ``threading.RLock`` that a forked child gets back new and unlocked."""

    __slots__ = ()

    @staticmethod
    def _new() -> _RawLock:
        return threading.RLock()


def _after_fork_in_child() -> None:
    for func in list(_functions):
        _run(func)
    for obj in list(_objects):
        _run(obj._after_fork_in_child)


def _run(reset: Callable[[], None]) -> None:
    try:
        reset()
    except Exception:  # one failed reset must not leave the others undone
        log.exception("secure_urlimport: resetting %r after fork failed", reset)
