"""Replacing a file atomically: readers see the old file or the new, never a mix.

Shared by the signer (manifest, bundle), the rollback state and the cache.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(
    path: Path, data: bytes, *, durable: bool = True, mode: int | None = 0o644
) -> None:
    """Replace *path* with *data* through a temporary file and a rename.

    *durable* flushes the data to disk before the rename (a published tree,
    rollback state); the cache skips it, since a torn entry only fails
    verification.  *mode* None keeps the temporary file's private 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
