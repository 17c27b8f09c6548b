"""Real ``os.fork`` children for the tests, with a deadline so a hang fails instead.

:func:`in_child` runs a function in a forked copy of the test process (as
another user id if asked: the tests run as root) and returns what it
returned, or raises :class:`ChildFailed` with what went wrong there: an
exception, a crash, or no answer before the deadline (the child is then
killed, so a regression fails the test rather than hanging the suite).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["ChildFailed", "as_root", "in_child"]

NEIGHBOUR_UID = 54321  # a user id with no passwd entry, like a container's

as_root = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs fork() and root, to become a second user with os.setuid",
)


class ChildFailed(AssertionError):
    """The forked child raised, crashed or did not finish in time."""


def in_child(
    func: Callable[[], Any],
    *,
    uid: int | None = None,
    gid: int | None = None,
    timeout: float = 20.0,
) -> Any:
    """What *func* returns when run in a forked child: as user *uid* if given, in
    group *gid* (default: the group of the same number)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # 3.12+ warns that forking a process with threads may deadlock the
        # child: that fork, with the library's threads running, is what these
        # tests stage (and the child runs under an alarm).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_end)
        _child(func, uid, gid, write_end, timeout)
    os.close(write_end)
    blob, status = _collect(pid, read_end, timeout + 5)
    if status is None:
        raise ChildFailed(f"the child did not finish within {timeout + 5:g} s (it hung)")
    if not blob:
        raise ChildFailed(f"the child died without an answer ({_describe(status)})")
    ok, value = pickle.loads(blob)  # written by our own child
    if not ok:
        raise ChildFailed(f"in the child:\n{value}")
    return value


def _child(
    func: Callable[[], Any], uid: int | None, gid: int | None, fd: int, timeout: float
) -> None:
    code = 1
    try:
        signal.alarm(int(timeout) + 1)  # the child's own deadline, SIGALRM kills it
        if uid is not None:
            os.setgroups([])
            os.setgid(uid if gid is None else gid)
            os.setuid(uid)
        try:
            answer = (True, func())
        except BaseException:
            answer = (False, traceback.format_exc())
        with os.fdopen(fd, "wb") as out:
            out.write(pickle.dumps(answer))
        code = 0
    finally:
        os._exit(code)


def _collect(pid: int, fd: int, seconds: float) -> tuple[bytes, int | None]:
    """The child's answer and wait status; status None after killing it at the deadline."""
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks), os.waitpid(pid, 0)[1]
                chunks.append(chunk)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return b"", None
    finally:
        os.close(fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return f"killed by {name}" + (": it hung past its deadline" if name == "SIGALRM" else "")
    return f"exit code {os.waitstatus_to_exitcode(status)}"
