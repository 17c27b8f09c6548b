"""Rollback protection that survives restarts: the newest release each key signed, per URL.

One small JSON file per URL under ``<cache dir>/state/``, holding for every
key id the newest (version, body digest) that key validly signed there.  The
client refuses anything older than the newest record of a key it *still
pins*: adding a key (rotation) keeps the old key's record, so no replay slips
through; removing a leaked key drops its record from the check, so a leaked
key that signed version 2**63-1 cannot brick clients that stopped pinning it.

The files are written atomically.  They are not secret, but they are trusted
the way ``~/.ssh/known_hosts`` is: a local attacker who can edit them as this
user can also edit the program (out of scope, see SECURITY.md).  Other users
cannot: the directories are 0700 and one they could write is refused
(privatedir.py).  A file that cannot be parsed is treated as missing and logged.

Beside the records, for a tree pinned by its root keys (``root=``): the newest
root this client trusts, as the signed bytes (``<hash of URL and pin>.root``).
It is filed under the URL *and* the pinned root key ids and threshold, so a
changed pin starts the walk afresh; the walk re-checks it when read back
(``TrustedRoot.from_store``), and it is written and read like the records:
atomically, 0600, a regular file only, at most ``MAX_ROOT_BYTES``.

And, for a tree with ``Config(max_age=...)``, when its manifest was last
revalidated with the server (``<hash of URL>.fresh``: the wall-clock time,
the source that answered and the manifest's digest), read back as a
:class:`Revalidated` only if it is well formed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._format.root import MAX_ROOT_BYTES
from .._trust.verify import TrustedState
from .atomic import write_atomically
from .cache import read_regular_file
from .file_names import file_name_for
from .privatedir import make_private_dirs

__all__ = ["MAX_STATE_BYTES", "Revalidated", "StateStore"]

#: A record is a few hundred bytes per key; far more is not one of ours.
MAX_STATE_BYTES = 1024 * 1024

log = logging.getLogger("secure_urlimport")


@dataclass(frozen=True)
class Revalidated:
    """The last time the server confirmed a manifest as current."""

    #: Seconds since the epoch, by this machine's clock.
    at: float
    #: The base URL (the tree's, or a mirror's) whose manifest it was.
    source: str
    #: The SHA-256 of that manifest's body.
    digest: str


class StateStore:
    """Reads and raises, per URL and key id, the newest release accepted."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory) / "state"

    def _path(self, url: str) -> Path:
        return self.directory / f"{file_name_for(url)}.json"

    def load(self, url: str) -> dict[str, TrustedState]:
        """Key id -> newest release that key signed at *url* (empty if none)."""
        path = self._path(url)
        # Never follows a link nor blocks on a FIFO, and reads at most the cap.
        data = read_regular_file(path, MAX_STATE_BYTES)
        if data is None:
            return {}
        try:
            obj = json.loads(data.decode("utf-8"))
            return {
                str(keyid): TrustedState(int(rec["version"]), str(rec["digest"]))
                for keyid, rec in obj["keys"].items()
            }
        except FileNotFoundError:
            return {}
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            log.warning("ignoring unreadable rollback state %s: %s", path, exc)
            return {}

    def record(self, url: str, keyids: Iterable[str], state: TrustedState) -> None:
        """Record that *keyids* signed *state* at *url*, where it is newer."""
        records = self.load(url)
        changed = False
        for keyid in keyids:
            current = records.get(keyid)
            if current is None or state.version > current.version:
                records[keyid] = state
                changed = True
        if changed:
            self._write(url, records)

    def _root_path(self, url: str, pin: str) -> Path:
        return self.directory / f"{file_name_for(url + chr(10) + pin)}.root"

    def load_root(self, url: str, pin: str) -> bytes | None:
        """The newest root stored for *url* under the pin *pin*, unverified, or None."""
        data = read_regular_file(self._root_path(url, pin), MAX_ROOT_BYTES + 1)
        if data is not None and len(data) > MAX_ROOT_BYTES:
            log.warning("ignoring stored root %s: larger than a root", self._root_path(url, pin))
            return None
        return data

    def store_root(self, url: str, pin: str, data: bytes) -> None:
        """Keep *data*, a root the chain trusted, as the newest for *url* and *pin*."""
        try:
            make_private_dirs(self.directory)
            write_atomically(self._root_path(url, pin), data, mode=None)
        except OSError as exc:
            # Not fatal: the next start walks the chain again from the pin.
            log.warning("cannot store the trusted root in %s: %s", self.directory, exc)

    def _fresh_path(self, url: str) -> Path:
        return self.directory / f"{file_name_for(url)}.fresh"

    def load_revalidated(self, url: str) -> Revalidated | None:
        """When the manifest of the tree at *url* was last revalidated, or None."""
        data = read_regular_file(self._fresh_path(url), 4096)
        if data is None:
            return None
        try:
            obj = json.loads(data.decode("utf-8"))
            record = Revalidated(float(obj["at"]), str(obj["source"]), str(obj["digest"]))
            if obj["url"] != url or not math.isfinite(record.at):
                raise ValueError("not a record of this URL")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.debug("ignoring unreadable freshness record of %s: %s", url, exc)
            return None
        return record

    def record_revalidated(self, url: str, record: Revalidated) -> None:
        """Note that the server confirmed the manifest of the tree at *url*.
        Not durable: a torn record is unreadable, and then only means a request."""
        data = {"url": url, "at": record.at, "source": record.source, "digest": record.digest}
        try:
            make_private_dirs(self.directory)
            write_atomically(
                self._fresh_path(url), json.dumps(data).encode("utf-8"), durable=False, mode=None
            )
        except OSError as exc:
            log.debug("cannot record the revalidation in %s: %s", self.directory, exc)

    def _write(self, url: str, records: dict[str, TrustedState]) -> None:
        data = json.dumps(
            {
                "url": url,
                "keys": {k: {"version": s.version, "digest": s.digest} for k, s in records.items()},
            }
        )
        try:
            make_private_dirs(self.directory)
            write_atomically(self._path(url), data.encode("utf-8"), mode=None)
        except OSError as exc:
            # Not fatal: the import is already verified, and this process keeps
            # its own floor; only protection across restarts is weakened.
            log.warning("cannot record rollback state in %s: %s", self.directory, exc)
