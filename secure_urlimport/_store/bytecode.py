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
                            | HMAC (32) | length (8, big-endian) | marshal data
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import hmac
import importlib.util
import logging
import marshal
import os
import secrets
import stat
import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType

from .. import forksafe
from .atomic import write_atomically
from .cache import SAFE_READ_FLAGS, read_regular_file
from .file_names import file_name_for
from .privatedir import is_private, make_private_dirs

__all__ = [
    "KEY_NAME",
    "PACK_MAGIC",
    "BytecodeCache",
    "load_or_create_key",
    "slot_digests",
    "slot_id",
]

log = logging.getLogger("secure_urlimport")

KEY_NAME = "bytecode.key"
PACK_MAGIC = b"SUIPACK1\n"
# A header no other cache file starts with, so a neighbour who can rename
# files in the cache directory cannot pass off one of ours as the key.
KEY_MAGIC = b"secure-urlimport bytecode key v1\n"
_KEY_BYTES = 32
_HEADER = 32 + 32 + 8  # slot digest, MAC, length
#: A pack larger than this is ignored when read and not written.
MAX_PACK_BYTES = 64 * 1024 * 1024
# The owner and mode checks below need POSIX; elsewhere the cache stays off.
SUPPORTED = hasattr(os, "getuid") and hasattr(os, "O_NOFOLLOW")


def slot_id(url: str, sha256: str) -> bytes:
    """What a code object is bound to: this interpreter's bytecode format and
    optimisation level, the module's URL (its ``co_filename``) and the SHA-256
    of the verified source it was compiled from."""
    return b"\0".join(
        [
            b"secure-urlimport bytecode v1",
            importlib.util.MAGIC_NUMBER,
            (sys.implementation.cache_tag or "").encode("ascii"),
            str(sys.flags.optimize).encode("ascii"),
            url.encode("utf-8"),
            sha256.encode("ascii"),
        ]
    )


def pack_name(tree_url: str) -> str:
    """The file name of the pack holding *tree_url*'s code for this interpreter."""
    tag = f"{tree_url}\0{sys.implementation.cache_tag}\0{sys.flags.optimize}"
    return file_name_for(tag)


def slot_digests(modules: Iterable[tuple[str, str]]) -> set[bytes]:
    """The pack keys of ``(url, sha256)`` pairs."""
    return {hashlib.sha256(slot_id(url, sha)).digest() for url, sha in modules}


Entry = tuple[bytes, bytes]  # (MAC, marshal data)


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
        self._packed: dict[bytes, Entry] | None = None  # None: not read yet
        self._compiled: dict[bytes, Entry] = {}  # what this process compiled
        self._bad: set[bytes] = set()  # entries that failed their MAC
        self._dirty = False
        #: Set by the tree: the slot digests its current release lists.  Only
        #: those are read from a pack or written to one, so neither a planted
        #: pack nor old releases can make it grow without bound.
        self.live_slots: Callable[[], set[bytes]] | None = None
        if self._enabled:
            _open_caches.add(self)
            _register_process_hooks()

    def __repr__(self) -> str:
        return f"BytecodeCache({str(self.path)!r}, {'on' if self._enabled else 'off'})"

    def get(self, url: str, sha256: str) -> CodeType | None:
        """The code compiled earlier from the verified source of *url* whose
        SHA-256 is *sha256*, or None (no entry, cache off, or an entry that
        fails its MAC, which is then dropped)."""
        key = self._mac_key()
        if key is None:
            return None
        slot = slot_id(url, sha256)
        digest = hashlib.sha256(slot).digest()
        entry = self._compiled.get(digest) or self._packed_entries().get(digest)
        if entry is None:
            return None
        mac, data = entry
        if not hmac.compare_digest(mac, _mac(key, slot, data)):
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
        return code

    def put(self, url: str, sha256: str, code: CodeType) -> None:
        """Keep *code*, compiled from verified source with this SHA-256, for the
        pack written at exit.  Like CPython, nothing is kept under ``-B`` /
        ``PYTHONDONTWRITEBYTECODE``."""
        if sys.dont_write_bytecode:
            return
        key = self._mac_key()
        if key is None:
            return
        slot = slot_id(url, sha256)
        try:
            data = marshal.dumps(code)
        except (ValueError, TypeError, RecursionError) as exc:  # e.g. too deeply nested
            log.debug("not caching the bytecode of %s: %s", url, exc)
            return
        digest = hashlib.sha256(slot).digest()
        with self._lock:
            self._compiled[digest] = (_mac(key, slot, data), data)
            self._bad.discard(digest)
            self._dirty = True

    def flush(self) -> None:
        """Write the pack if this process compiled anything new, merged with
        what other processes wrote meanwhile.  Best effort: a cache that
        cannot be written is only a slower cache."""
        if sys.dont_write_bytecode or not self._dirty:
            return
        live = self._live()
        on_disk = self._read_pack()
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

    def _packed_entries(self) -> dict[bytes, Entry]:
        """The live entries of the pack on disk, read at the first lookup."""
        if self._packed is None:
            packed = self._read_pack()
            with self._lock:
                if self._packed is None:
                    self._packed = packed
        return self._packed

    def _read_pack(self) -> dict[bytes, Entry]:
        if not _is_ours(self.path):
            return {}  # planted by someone else: not worth even decoding
        blob = read_regular_file(self.path, MAX_PACK_BYTES + 1)
        if blob is None or len(blob) > MAX_PACK_BYTES:
            return {}  # none, or planted to exhaust memory: ignored, not truncated
        return _decode(blob, self._live())

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


def _mac(key: bytes, slot: bytes, data: bytes) -> bytes:
    return hmac.digest(key, slot + b"\0" + data, "sha256")  # one-shot: the fast path


def _encode(entries: Iterable[tuple[bytes, Entry]]) -> bytes:
    parts = [PACK_MAGIC]
    for digest, (mac, data) in entries:
        parts += [digest, mac, len(data).to_bytes(8, "big"), data]
    return b"".join(parts)


def _decode(blob: bytes, live: set[bytes]) -> dict[bytes, Entry]:
    """The entries of a pack whose slot digest is in *live*; a damaged tail
    is dropped, since every entry is checked against its MAC before use anyway."""
    if not blob.startswith(PACK_MAGIC):
        return {}
    view = memoryview(blob)
    entries: dict[bytes, Entry] = {}
    offset, end = len(PACK_MAGIC), len(blob)
    while offset + _HEADER <= end:
        digest = blob[offset : offset + 32]
        mac = blob[offset + 32 : offset + 64]
        size = int.from_bytes(blob[offset + 64 : offset + _HEADER], "big")
        offset += _HEADER
        if size > end - offset:
            break
        if digest in live:
            entries[digest] = (mac, bytes(view[offset : offset + size]))
        offset += size
    return entries


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


# -- the key ---------------------------------------------------------------------


class _UnsafeKeyError(Exception):
    pass


def load_or_create_key(path: Path, *, create: bool = True) -> bytes | None:
    """The MAC key at *path*, made on first use if *create*; None (bytecode
    cache off, with a warning) if the file is not a private regular file of
    this user in a directory only this user can write."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    except _UnsafeKeyError as exc:
        log.warning("not using the bytecode cache: %s; delete it to make a new key", exc)
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            log.warning(
                "not using the bytecode cache: %s is a symbolic link; delete it to make a new key",
                path,
            )
        else:
            log.debug("cache: cannot read %s: %s; bytecode cache off", path, exc)
        return None
    try:
        _create_key(path)
        return _read_key(path)
    except (OSError, _UnsafeKeyError) as exc:
        log.debug("cache: cannot make the bytecode key %s: %s; bytecode cache off", path, exc)
        return None


def _read_key(path: Path) -> bytes:
    fd = os.open(path, SAFE_READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _UnsafeKeyError(f"{path} is not a regular file")
        if info.st_uid != os.getuid():
            raise _UnsafeKeyError(f"{path} belongs to user id {info.st_uid}, not to this user")
        if info.st_mode & 0o077:
            raise _UnsafeKeyError(
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}; others could read or "
                "replace it (it must be 0600)"
            )
        blob = os.read(fd, len(KEY_MAGIC) + _KEY_BYTES + 1)
    finally:
        os.close(fd)
    directory = os.stat(path.parent)
    if not is_private(directory):
        raise _UnsafeKeyError(
            f"{path.parent} can be written by others (mode "
            f"{stat.S_IMODE(directory.st_mode):04o}, owner {directory.st_uid}), who could "
            "swap files in it"
        )
    if len(blob) != len(KEY_MAGIC) + _KEY_BYTES or not blob.startswith(KEY_MAGIC):
        raise _UnsafeKeyError(f"{path} is not a bytecode key written by secure_urlimport")
    return blob[len(KEY_MAGIC) :]


def _create_key(path: Path) -> None:
    """Write a new key under a temporary name, then link it into place: two
    processes racing both end up reading the one that got there first, and
    nobody ever reads a half-written key."""
    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(KEY_MAGIC + secrets.token_bytes(_KEY_BYTES))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
