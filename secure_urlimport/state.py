"""Rollback protection that survives restarts: the newest manifest seen per URL and key set.

One small JSON file per (URL, key set) under ``<cache dir>/state/``.  The key
set's fingerprint is part of the file name, so rotating the pinned keys starts
from a clean slate: a leaked key that signed version 2**63 cannot brick
clients that have since pinned a new key.

The files are written atomically.  They are not secret, but they are trusted
the way ``~/.ssh/known_hosts`` is: a local attacker who can edit them can
also edit the program (out of scope, see SECURITY.md).  A file that cannot be
parsed is treated as missing and logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from .verify import TrustedState

__all__ = ["StateStore"]

log = logging.getLogger("secure_urlimport")


class StateStore:
    """Reads and raises the newest accepted manifest version for URLs."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory) / "state"

    def _path(self, url: str, keyset: str) -> Path:
        name = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{name}-{keyset}.json"

    def load(self, url: str, keyset: str) -> TrustedState | None:
        path = self._path(url, keyset)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            state = TrustedState(int(obj["version"]), str(obj["digest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable rollback state %s: %s", path, exc)
            return None
        return state

    def save(self, url: str, keyset: str, state: TrustedState) -> None:
        """Record *state* unless a newer one is already recorded."""
        current = self.load(url, keyset)
        if current is not None and current.version > state.version:
            return
        if current == state:
            return
        data = json.dumps({"url": url, "version": state.version, "digest": state.digest})
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".state-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path(url, keyset))
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            # Not fatal: the import is already verified; only cross-restart
            # rollback protection is weakened, so say so loudly.
            log.warning("cannot record rollback state in %s: %s", self.directory, exc)
