"""Reading a file of a tree on disk (signer, ``sign --check``, local ``verify``) safely.

A tree is often a checkout that others contribute to, so any name in it may
be a symlink to a FIFO (``open`` blocks forever) or to ``/dev/zero`` (``read``
never ends).  Every read here opens the name itself, never a link's target,
without blocking, accepts only a regular file and stops past a size cap.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["UnsafeFileError", "read_tree_file"]

# O_NOFOLLOW: a symlink fails to open (ELOOP) instead of being followed.
# O_NONBLOCK: a FIFO planted under the name opens at once instead of waiting
# for a writer; it is then refused as not a regular file.
_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class UnsafeFileError(OSError):
    """The name is a symlink or not a regular file: it was not read.

    An ``OSError``, so callers that already report unreadable files (with
    ``strerror``) report these the same way.
    """


def read_tree_file(path: Path | str, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at *path*, at most ``max_bytes + 1`` of them.

    Callers compare the length with *max_bytes* to see "too large" (one byte
    more is enough to know).  *None* reads the whole (regular, so finite) file.
    Raises what ``open`` raises (``FileNotFoundError``, ``PermissionError``)
    and :class:`UnsafeFileError` for a symlink or a special file.
    """
    # lstat first: a device node is never even opened (opening some has effects).
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise _unsafe(path)
    fd = os.open(path, _FLAGS)  # O_NOFOLLOW and fstat: the name may be swapped meanwhile
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _unsafe(path)
        if max_bytes is None:
            return handle.read()
        # Never read(max_bytes): that allocates the whole cap up front.
        return handle.read(min(max_bytes, info.st_size) + 1)


def _unsafe(path: Path | str) -> UnsafeFileError:
    why = "a symlink, never followed" if os.path.islink(path) else "not a regular file"
    return UnsafeFileError(errno.EINVAL, why, str(path))
