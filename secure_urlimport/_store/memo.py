"""Manifests verified by an earlier process, kept on disk under the bytecode MAC key.

A warm start reads the cached manifest, checks its Ed25519 signatures and
parses a JSON body of about 240 bytes per file: for a tree of 1,000 files that
was most of what ``install()`` cost within ``max_age``.  The memo records, for
one tree, the last manifest whose check passed: the *vouch* of that check
(``_trust.verify.manifest_vouch``: keys, threshold, signature lines and body
digest), the body's SHA-256 and the parsed manifest (``marshal``).  A process
whose own check would get the same inputs gets the same verdict, so it takes
the parsed manifest from the memo instead.  Expiry, the tree name and the
rollback records are still checked on every start (``_trust``).

Trusted exactly as far as the bytecode cache (bytecode.py): an entry is used
only with a matching HMAC-SHA256 under the private ``bytecode.key``, and only
this library writes one, after the check passed.  Off when the bytecode cache
is off; nothing is written under ``-B`` / ``PYTHONDONTWRITEBYTECODE``.

Layout: ``<cache dir>/memo/<sha256(tree URL NUL Python version)[:32]>``:
MEMO_MAGIC | vouch (32) | body SHA-256 (64 hex) | HMAC (32) | marshal data.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import marshal
import sys
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from .._format.entry import FileEntry
from .._format.manifest import Manifest
from .._format.shard import ShardRef
from .atomic import write_atomically
from .cache import read_regular_file
from .file_names import file_name_for
from .privatedir import is_private, make_private_dirs

__all__ = ["MEMO_MAGIC", "ManifestMemoFile"]

log = logging.getLogger("secure_urlimport")

MEMO_MAGIC = b"SUIMEMO1\n"
_HEAD = len(MEMO_MAGIC) + 32 + 64 + 32
#: A memo larger than this is neither read nor written (a manifest is at most
#: max_manifest_bytes; its marshal form is smaller than its JSON).
MAX_MEMO_BYTES = 64 * 1024 * 1024


class ManifestMemoFile:
    """The memo of one tree: read at most once, written at exit if it changed."""

    def __init__(self, directory: Path, tree_url: str, mac_key: Callable[[], bytes | None]) -> None:
        """*mac_key*: the bytecode cache's key (None while that cache is off)."""
        self.directory = Path(directory)
        name = file_name_for(f"{tree_url}\0{sys.version_info[0]}.{sys.version_info[1]}")
        self.path = self.directory / "memo" / name
        self._mac_key = mac_key
        self._pending: bytes | None = None  # a record to write at exit
        _open_memos.add(self)
        _register_exit_hook()

    def recall(self, vouch: bytes, digest: str) -> Manifest | None:
        key = self._mac_key()
        if key is None or not _is_ours(self.path):
            return None
        blob = read_regular_file(self.path, MAX_MEMO_BYTES + 1)
        if blob is None or len(blob) > MAX_MEMO_BYTES or not blob.startswith(MEMO_MAGIC):
            return None
        head = len(MEMO_MAGIC)
        stored_vouch, stored_digest = blob[head : head + 32], blob[head + 32 : head + 96]
        if stored_vouch != vouch or stored_digest != digest.encode("ascii"):
            return None  # another release, other keys: the check runs, then a new memo
        mac, data = blob[head + 96 : _HEAD], blob[_HEAD:]
        if not hmac.compare_digest(mac, _mac(key, vouch, stored_digest, data)):
            log.warning("discarding the manifest memo %s, which fails its MAC", self.path)
            return None
        try:
            # Safe to unmarshal: the MAC proves this library wrote these bytes.
            return _decode(marshal.loads(data), digest)  # noqa: S302
        except (ValueError, EOFError, TypeError, KeyError, IndexError):
            return None

    def remember(self, vouch: bytes, manifest: Manifest) -> None:
        if sys.dont_write_bytecode:
            return
        key = self._mac_key()
        if key is None:
            return
        digest = manifest.digest.encode("ascii")
        data = marshal.dumps(_encode(manifest))
        self._pending = MEMO_MAGIC + vouch + digest + _mac(key, vouch, digest, data) + data

    def flush(self) -> None:
        """Write the pending record.  Best effort: a memo that cannot be
        written only costs the next process a signature check and a parse."""
        pending, self._pending = self._pending, None
        if pending is None or len(pending) > MAX_MEMO_BYTES:
            return
        try:
            make_private_dirs(self.path.parent)
            write_atomically(self.path, pending, durable=False, mode=None)
        except OSError as exc:
            log.debug("cache: cannot write %s: %s", self.path, exc)


def _mac(key: bytes, vouch: bytes, digest: bytes, data: bytes) -> bytes:
    # vouch and digest have fixed lengths: the three cannot be re-cut.
    return hmac.digest(key, MEMO_MAGIC + vouch + digest + data, "sha256")


def _is_ours(path: Path) -> bool:
    try:
        return is_private(path.lstat())
    except OSError:
        return False


# -- the parsed manifest as marshal data ------------------------------------------

# The files as one flat list, path, size, sha256, n, then n key ids and n
# signatures, and so on: one container for the whole list, so a warm start
# allocates (and the garbage collector tracks) one FileEntry per file and
# nothing more.
_Files = list[str | int | bytes]
_Snapshot = tuple[
    int,  # version
    tuple[int, int],  # created, expires (POSIX seconds)
    tuple[str, ...],  # keyids
    _Files,  # files
    str,  # name
    int,  # format
    list[tuple[str, str, int]],  # shards
    tuple[str, ...],  # signers
]


def _encode(m: Manifest) -> _Snapshot:
    files: _Files = []
    for e in m.files.values():
        files += [
            e.path,
            e.size,
            e.sha256,
            len(e.signatures),
            *e.signatures,
            *e.signatures.values(),
        ]
    shards = [(s.first, s.sha256, s.size) for s in m.shards]
    times = (int(m.created.timestamp()), int(m.expires.timestamp()))
    return (m.version, times, m.keyids, files, m.name, m.format, shards, tuple(m.signers))


def _decode(value: object, digest: str) -> Manifest:
    version, (created, expires), keyids, files, name, fmt, shards, signers = cast(_Snapshot, value)
    return Manifest(
        version=version,
        created=datetime.fromtimestamp(created, UTC),
        expires=datetime.fromtimestamp(expires, UTC),
        keyids=keyids,
        files=_decode_files(files),
        name=name,
        digest=digest,
        signers=frozenset(signers),
        format=fmt,
        shards=tuple(ShardRef(first, sha, size) for first, sha, size in shards),
    )


def _decode_files(flat: _Files) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    at, end = 0, len(flat)
    while at < end:
        path, size, sha = cast(str, flat[at]), cast(int, flat[at + 1]), cast(str, flat[at + 2])
        count = cast(int, flat[at + 3])
        keyids = cast(list[str], flat[at + 4 : at + 4 + count])
        sigs = cast(list[bytes], flat[at + 4 + count : at + 4 + 2 * count])
        files[path] = FileEntry(path, size, sha, dict(zip(keyids, sigs, strict=True)))
        at += 4 + 2 * count
    return files


# Every memo with a pending record, written when the interpreter exits.
_open_memos: weakref.WeakSet[ManifestMemoFile] = weakref.WeakSet()
_hook_registered = False


def _register_exit_hook() -> None:
    global _hook_registered
    if not _hook_registered:
        atexit.register(_flush_all)
        _hook_registered = True


def _flush_all() -> None:
    for memo in list(_open_memos):
        memo.flush()
