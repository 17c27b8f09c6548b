"""Progress for long tree walks: one line on a terminal's stderr, rewritten with ``\\r``.

Shown only when stderr is a terminal and the tree has more than
:data:`MIN_FILES` files.  Never written to stdout, so JSON and workflow-command
output stay machine-readable, and silent in pipes, files and CI logs.  The line
is erased when the walk ends, before any result is printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeAlias

__all__ = ["MIN_FILES", "ProgressFn", "TerminalProgress", "terminal_progress"]

#: Trees of at most this many files finish too fast to need a progress line.
MIN_FILES = 200
#: At most this many rewrites per second (plus the last one).
_INTERVAL = 0.1

#: Called as ``progress(done, total)`` after each file of a walk.
ProgressFn: TypeAlias = Callable[[int, int], None]


class TerminalProgress:
    """``progress(done, total)`` callback drawing ``LABEL: done/total files``."""

    def __init__(self, label: str, stream: TextIO | None) -> None:
        self._label = label
        self._stream = stream if stream is not None and _is_terminal(stream) else None
        self._last = float("-inf")
        self._width = 0

    def __call__(self, done: int, total: int) -> None:
        if self._stream is None or total <= MIN_FILES:
            return
        now = time.monotonic()
        if done < total and now - self._last < _INTERVAL:
            return
        self._last = now
        text = f"{self._label}: {done}/{total} files"
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Erase the line, so the results start on a clean one."""
        if self._stream is not None and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def terminal_progress(label: str) -> Iterator[TerminalProgress]:
    """A progress callback on ``sys.stderr`` (silent unless it is a terminal)."""
    progress = TerminalProgress(label, sys.stderr)
    try:
        yield progress
    finally:
        progress.close()
