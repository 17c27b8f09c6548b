"""Compiled code of verified modules, kept on disk under a local MAC key.

Compiling is about half of a local import's cost, so a warm start that loads
code objects instead of compiling source again is as fast as importing a
package from ``site-packages`` with its ``__pycache__``.  Unlike CPython's
``__pycache__``, which trusts any ``.pyc`` whose recorded mtime matches, an
entry here is used only when

* it was made by this library, from source it had just verified against the
  signed manifest (the only place :meth:`BytecodeCache.put` is called);
* it is filed under the interpreter's magic number, the optimisation level,
  the module's URL and the SHA-256 that the *currently* verified manifest
  lists for the file (:func:`slot_id`), so a new release, another module or
  another Python never finds it;
* its HMAC-SHA256 under a 256-bit key that only this user can read matches.

Each entry also records the *vouch* of the per-file signature check that
passed when it was made (``_trust.verify.signature_vouch``): a digest of the
keys, threshold, signatures and signed messages.  A hit whose vouch equals the
current one needs no Ed25519 check (the same inputs give the same answer); any
other hit is checked again by the loader, then re-vouched.

Whoever can read that key runs as this user, and can already edit
``site-packages`` or drop a ``.pth`` file; SECURITY.md has the argument.  A
key file that others could read, that belongs to someone else, that lacks
KEY_MAGIC, that is a symbolic link or that sits in a directory others can
write turns the cache off (with a warning) instead of being trusted.

All of a tree's code lives in one *pack* file, read once at the first import
and written once when the process exits (or the tree is uninstalled): creating
a file costs more than compiling a small module on some disks, so one file per
module would make the first import slower than no cache at all.

Layout under ``<cache dir>``::

    bytecode.key            KEY_MAGIC + 32 random bytes, mode 0600, owned by this user
    bytecode/<name>         a pack: PACK_MAGIC, then entries of SHA-256(slot_id) (32)
                            | vouch (32) | HMAC (32) | length (8, big-endian) | marshal data
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import importlib.util
import logging
import marshal
import os
import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType

from .. import forksafe
from .atomic import write_atomically
from .cache import read_regular_file
from .file_names import file_name_for
from .mackey import KEY_MAGIC, KEY_NAME, load_or_create_key
from .privatedir import is_private, make_private_dirs

__all__ = [
    "KEY_MAGIC",
    "KEY_NAME",
    "PACK_MAGIC",
    "BytecodeCache",
    "load_or_create_key",
    "slot_digests",
    "slot_id",
]

log = logging.getLogger("secure_urlimport")

PACK_MAGIC = b"SUIPACK2\n"  # 2: entries carry the vouch of their signature check
_HEADER = 32 + 32 + 32 + 8  # slot digest, vouch, MAC, length
#: A pack larger than this is ignored when read and not written.
MAX_PACK_BYTES = 64 * 1024 * 1024
# The owner and mode checks below need POSIX; elsewhere the cache stays off.
SUPPORTED = hasattr(os, "getuid") and hasattr(os, "O_NOFOLLOW")


def slot_id(url: str, sha256: str) -> bytes:
    """What a code object is bound to: this interpreter's bytecode format and
    optimisation level, the module's URL (its ``co_filename``) and the SHA-256
    of the verified source it was compiled from."""
    return b"\0".join([_slot_prefix(), url.encode("utf-8"), sha256.encode("ascii")])


def _slot_prefix() -> bytes:
    # Not cached: tests change sys.flags.optimize's stand-ins between calls,
    # and building it is cheap next to the hash of the slot.
    return b"\0".join(
        [
            b"secure-urlimport bytecode v1",
            importlib.util.MAGIC_NUMBER,
            (sys.implementation.cache_tag or "").encode("ascii"),
            str(sys.flags.optimize).encode("ascii"),
        ]
    )


def pack_name(tree_url: str) -> str:
    """The file name of the pack holding *tree_url*'s code for this interpreter."""
    tag = f"{tree_url}\0{sys.implementation.cache_tag}\0{sys.flags.optimize}"
    return file_name_for(tag)


def slot_digests(modules: Iterable[tuple[str, str]]) -> set[bytes]:
    """The pack keys of ``(url, sha256)`` pairs (one release's modules: the
    prefix of their slot ids is built once)."""
    prefix = _slot_prefix() + b"\0"
    sha256 = hashlib.sha256
    return {
        sha256(b"".join([prefix, url.encode("utf-8"), b"\0", sha.encode("ascii")])).digest()
        for url, sha in modules
    }


Entry = tuple[bytes, bytes, bytes]  # (vouch, MAC, marshal data)
VOUCH_BYTES = 32


class BytecodeCache:
    """The code objects of one tree's verified modules, in one pack file."""

    def __init__(self, directory: Path, tree_url: str, *, enabled: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "bytecode" / pack_name(tree_url)
        self._enabled = enabled and SUPPORTED
        self._key: bytes | None = None
        self._key_loaded = False
        # Guards the fields below; never held during disk I/O.  Fork-safe: a
        # fork while another thread held it leaves the child a fresh one.
        self._lock = forksafe.Lock()
        self._packed: _Pack | None = None  # None: not read yet
        self._compiled: dict[bytes, Entry] = {}  # what this process compiled
        self._bad: set[bytes] = set()  # entries that failed their MAC
        self._dirty = False
        #: Set by the tree: the slot digests its current release lists.  Only
        #: those are written to a pack, so old releases cannot make it grow.
        self.live_slots: Callable[[], set[bytes]] | None = None
        #: Set by the tree: how many modules its current release lists.  A pack
        #: with far more entries is not indexed (junk, or planted to use memory).
        self.live_count: Callable[[], int] | None = None
        if self._enabled:
            _open_caches.add(self)
            _register_process_hooks()

    def __repr__(self) -> str:
        return f"BytecodeCache({str(self.path)!r}, {'on' if self._enabled else 'off'})"

    def mac_key(self) -> bytes | None:
        """The MAC key, or None while the cache is off (shared with memo.py)."""
        return self._mac_key()

    def get(self, url: str, sha256: str) -> tuple[CodeType, bytes] | None:
        """The code compiled earlier from the verified source of *url* whose
        SHA-256 is *sha256*, with the vouch of the signature check it was
        recorded under; or None (no entry, cache off, or an entry that fails
        its MAC, which is then dropped)."""
        key = self._mac_key()
        if key is None:
            return None
        slot = slot_id(url, sha256)
        digest = hashlib.sha256(slot).digest()
        entry = self._compiled.get(digest) or self._packed_entries().get(digest)
        if entry is None:
            return None
        vouch, mac, data = entry
        if not hmac.compare_digest(mac, _mac(key, slot, vouch, data)):
            log.warning(
                "discarding the cached bytecode of %s, which fails its MAC "
                "(edited, swapped or written with another key); compiling the "
                "verified source instead",
                url,
            )
            with self._lock:
                self._bad.add(digest)
                self._dirty = True
            return None
        try:
            # Safe to unmarshal: the MAC proves this library made these bytes.
            code = marshal.loads(data)  # noqa: S302
        except (ValueError, EOFError, TypeError):
            code = None
        if not isinstance(code, CodeType):
            return None
        log.debug("loaded verified bytecode of %s from the cache", url)
        return code, vouch

    def put(self, url: str, sha256: str, code: CodeType, vouch: bytes) -> None:
        """Keep *code*, compiled from verified source with this SHA-256 whose
        signatures passed the check *vouch* describes, for the pack written at
        exit.  Like CPython, nothing is kept under ``-B`` /
        ``PYTHONDONTWRITEBYTECODE``."""
        if sys.dont_write_bytecode:
            return
        try:
            data = marshal.dumps(code)
        except (ValueError, TypeError, RecursionError) as exc:  # e.g. too deeply nested
            log.debug("not caching the bytecode of %s: %s", url, exc)
            return
        self._keep(url, sha256, vouch, data)

    def vouch(self, url: str, sha256: str, vouch: bytes) -> None:
        """Record that the signature check *vouch* describes passed for the
        cached code of *url* (after a root rotation, say), so the next process
        skips it."""
        digest = hashlib.sha256(slot_id(url, sha256)).digest()
        entry = self._compiled.get(digest) or self._packed_entries().get(digest)
        if entry is not None:
            self._keep(url, sha256, vouch, entry[2])

    def _keep(self, url: str, sha256: str, vouch: bytes, data: bytes) -> None:
        if sys.dont_write_bytecode or len(vouch) != VOUCH_BYTES:
            return
        key = self._mac_key()
        if key is None:
            return
        slot = slot_id(url, sha256)
        digest = hashlib.sha256(slot).digest()
        with self._lock:
            self._compiled[digest] = (vouch, _mac(key, slot, vouch, data), data)
            self._bad.discard(digest)
            self._dirty = True

    def flush(self) -> None:
        """Write the pack if this process compiled anything new, merged with
        what other processes wrote meanwhile.  Best effort: a cache that
        cannot be written is only a slower cache."""
        if sys.dont_write_bytecode or not self._dirty:
            return
        live = self._live()
        on_disk = self._read_pack().entries(live)
        with self._lock:
            entries = {d: e for d, e in on_disk.items() if d not in self._bad}
            entries.update((d, e) for d, e in self._compiled.items() if d in live)
            self._dirty = False
        blob = _encode(entries.items())
        if len(blob) > MAX_PACK_BYTES:
            return
        try:
            make_private_dirs(self.path.parent)
            write_atomically(self.path, blob, durable=False, mode=None)
        except OSError as exc:
            log.debug("cache: cannot write %s: %s", self.path, exc)

    # -- internals ------------------------------------------------------------

    def _packed_entries(self) -> _Pack:
        """The pack on disk, read and indexed at the first lookup."""
        if self._packed is None:
            packed = self._read_pack()
            with self._lock:
                if self._packed is None:
                    self._packed = packed
        return self._packed

    def _read_pack(self) -> _Pack:
        if not _is_ours(self.path):
            return _NO_PACK  # planted by someone else: not worth even decoding
        blob = read_regular_file(self.path, MAX_PACK_BYTES + 1)
        if blob is None or len(blob) > MAX_PACK_BYTES:
            return _NO_PACK  # none, or planted to exhaust memory: ignored, not truncated
        count = self.live_count() if self.live_count is not None else 0
        return _Pack.index(blob, max_entries=2 * count + 64)

    def _live(self) -> set[bytes]:
        return self.live_slots() if self.live_slots is not None else set()

    def _mac_key(self) -> bytes | None:
        if not self._enabled:
            return None
        if not self._key_loaded:
            # Under -B nothing is written, not even a first key.
            path = self.directory / KEY_NAME
            self._key = load_or_create_key(path, create=not sys.dont_write_bytecode)
            # Decided for good, except "no key yet" under -B (made on a later run).
            self._key_loaded = (
                self._key is not None or not sys.dont_write_bytecode or os.path.lexists(path)
            )
        return self._key


def _is_ours(path: Path) -> bool:
    """True if *path* is this user's file that others cannot write."""
    try:
        return is_private(os.lstat(path))
    except OSError:
        return False


def _mac(key: bytes, slot: bytes, vouch: bytes, data: bytes) -> bytes:
    # The vouch has a fixed length, so slot, vouch and data cannot be re-cut.
    return hmac.digest(key, slot + b"\0" + vouch + data, "sha256")  # one-shot: the fast path


def _encode(entries: Iterable[tuple[bytes, Entry]]) -> bytes:
    parts = [PACK_MAGIC]
    for digest, (vouch, mac, data) in entries:
        parts += [digest, vouch, mac, len(data).to_bytes(8, "big"), data]
    return b"".join(parts)


class _Pack:
    """A pack read from disk: its bytes and where each entry starts.

    Indexed, not decoded: a warm start reads one pack but looks up only the
    modules it imports, so nothing is copied or filtered up front (the live
    filter runs when a pack is written).  An entry's MAC is checked when it is
    looked up.
    """

    def __init__(self, blob: bytes, offsets: dict[bytes, int]) -> None:
        self._blob = blob
        self._offsets = offsets

    @classmethod
    def index(cls, blob: bytes, *, max_entries: int) -> _Pack:
        """The entries of *blob*; a damaged tail is dropped, and a pack of more
        than *max_entries* is not used at all."""
        if not blob.startswith(PACK_MAGIC):
            return _NO_PACK
        offsets: dict[bytes, int] = {}
        offset, end = len(PACK_MAGIC), len(blob)
        while offset + _HEADER <= end:
            size = int.from_bytes(blob[offset + 96 : offset + _HEADER], "big")
            if size > end - offset - _HEADER:
                break
            offsets[blob[offset : offset + 32]] = offset
            if len(offsets) > max_entries:
                log.debug("cache: ignoring a bytecode pack of over %d entries", max_entries)
                return _NO_PACK
            offset += _HEADER + size
        return cls(blob, offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def get(self, digest: bytes) -> Entry | None:
        offset = self._offsets.get(digest)
        if offset is None:
            return None
        blob = self._blob
        size = int.from_bytes(blob[offset + 96 : offset + _HEADER], "big")
        start = offset + _HEADER
        return (
            blob[offset + 32 : offset + 64],
            blob[offset + 64 : offset + 96],
            blob[start : start + size],
        )

    def entries(self, live: set[bytes]) -> dict[bytes, Entry]:
        """The entries whose slot digest is in *live* (for writing a pack)."""
        found = {}
        for digest in self._offsets.keys() & live:
            entry = self.get(digest)
            if entry is not None:
                found[digest] = entry
        return found


_NO_PACK = _Pack(b"", {})


# Every cache with unsaved code, written when the interpreter exits.
_open_caches: weakref.WeakSet[BytecodeCache] = weakref.WeakSet()
_hooks_registered = False


def _register_process_hooks() -> None:
    """Register the exit hook once, with the first cache, not at import.

    No lock: a lock taken here could be held by another thread at a fork.  Two
    threads making the first caches at once may both register, which only
    flushes (or resets) twice.
    """
    global _hooks_registered
    if _hooks_registered:
        return
    atexit.register(_flush_all)  # before the flag (its lock is fork-safe: forksafe.py)
    _hooks_registered = True


def _flush_all() -> None:
    for cache in list(_open_caches):
        cache.flush()
