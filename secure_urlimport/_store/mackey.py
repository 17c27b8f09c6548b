"""The bytecode cache's MAC key: made once, used only while private to this user.

``<cache dir>/bytecode.key`` holds KEY_MAGIC and 32 random bytes, mode 0600.
A key file that others could read, that belongs to someone else, that lacks
KEY_MAGIC, that is a symbolic link or that sits in a directory others can
write turns the cache off (with a warning) instead of being trusted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from .cache import SAFE_READ_FLAGS
from .privatedir import is_private, make_private_dirs

__all__ = ["KEY_MAGIC", "KEY_NAME", "load_or_create_key"]

log = logging.getLogger("secure_urlimport")

KEY_NAME = "bytecode.key"
# A header no other cache file starts with, so a neighbour who can rename
# files in the cache directory cannot pass off one of ours as the key.
KEY_MAGIC = b"secure-urlimport bytecode key v1\n"
_KEY_BYTES = 32


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
