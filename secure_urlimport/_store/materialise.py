"""Verified native files on disk, where the dynamic loader can read them.

An extension module loads only from a real file (``dlopen``), and finds its
libraries through ``$ORIGIN``-relative search paths (numpy's
``_multiarray_umath`` has ``RPATH $ORIGIN/../../numpy.libs``).  So the
verified bytes of a package's native files are written to a directory that
mirrors the tree's layout::

    <cache dir>/ext/<tree id>/<set digest>/numpy/_core/_multiarray_umath....so
                                          /numpy.libs/libscipy_openblas64_-....so

*set digest* hashes every (path, SHA-256, size) of the set, so a directory
is only ever filled with one set of bytes: a new release that changes none
of them reuses it, one that changes any gets a new directory.

Nothing here is trusted for being on disk.  Every directory from the cache
directory down and every file must be this user's and writable by nobody
else (:func:`~.privatedir.is_private`), directories and files must not be
symbolic links, and a file is used only when its SHA-256 is the signed one
(:meth:`NativeDir.holds`): checked before each load, not just when written.
Files are written under a fresh name with ``O_EXCL | O_NOFOLLOW`` and renamed
into place, read-only (0500).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigurationError
from .file_names import file_name_for
from .privatedir import is_private, make_private_dirs

__all__ = ["SUPPORTED", "NativeDir", "set_digest"]

#: Ownership checks need POSIX user ids, safe writes O_NOFOLLOW.
SUPPORTED = hasattr(os, "getuid") and hasattr(os, "O_NOFOLLOW")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
_CHUNK = 1 << 20
#: Read and execute for the owner only: never changed in place, only replaced.
FILE_MODE = 0o500


def set_digest(files: Iterable[tuple[str, str, int]]) -> str:
    """The name of the directory for the files ``(path, sha256, size)``."""
    lines = sorted(f"{path}\0{sha}\0{size}\n" for path, sha, size in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


class NativeDir:
    """The private directory holding one set of verified native files of a tree."""

    def __init__(self, cache_dir: Path, tree_url: str, digest: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / "ext" / file_name_for(tree_url) / digest
        self.url = tree_url

    def __repr__(self) -> str:
        return f"NativeDir({str(self.path)!r})"

    def file_path(self, relpath: str) -> Path:
        return self.path.joinpath(*relpath.split("/"))

    # -- checks ---------------------------------------------------------------

    def check(self, relpath: str) -> None:
        """Refuse (ConfigurationError) unless every existing directory from the
        cache directory down to *relpath* and the file itself (if present) is a
        real directory or regular file of this user that no one else can write."""
        try:
            info = os.lstat(self.cache_dir)
            if not stat.S_ISLNK(info.st_mode) or info.st_uid == os.getuid():
                # This user's symbolic link (a ~/.cache on another disk) is
                # followed, as privatedir.py does; another user's is refused.
                info = os.stat(self.cache_dir)
        except FileNotFoundError:
            return
        self._refuse_unless(self.cache_dir, info, directory=True)
        current = self.cache_dir
        parts = ["ext", *self.path.relative_to(self.cache_dir / "ext").parts, *relpath.split("/")]
        for depth, part in enumerate(parts):
            current = current / part
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                return  # made 0700 (or written 0500) by this process
            self._refuse_unless(current, info, directory=depth < len(parts) - 1)

    def _refuse_unless(self, path: Path, info: os.stat_result, *, directory: bool) -> None:
        kind = stat.S_ISDIR if directory else stat.S_ISREG
        if kind(info.st_mode) and is_private(info):
            return
        if stat.S_ISLNK(info.st_mode):
            problem = "it is a symbolic link"
        elif not kind(info.st_mode):
            problem = f"it is not a {'directory' if directory else 'regular file'}"
        elif info.st_uid != os.getuid():
            problem = f"it belongs to user id {info.st_uid}, not to this user ({os.getuid()})"
        else:
            problem = f"other users can write it (mode {stat.S_IMODE(info.st_mode):04o})"
        raise ConfigurationError(
            f"refusing to load compiled extension modules of {self.url} from {path}: "
            f"{problem}, so the code in it may not be what was verified; delete "
            f"{self.path} (it is rebuilt from the signed tree), or set "
            "SECURE_URLIMPORT_CACHE_DIR (or Config(cache_dir=...)) to a directory of "
            "your own",
            path=self.url,
        )

    def holds(self, relpath: str, sha256: str, size: int) -> bool:
        """Does the file at *relpath* hash to *sha256*?  (After :meth:`check`;
        False if it is missing, not a private regular file, or differs.)"""
        try:
            fd = os.open(self.file_path(relpath), _READ_FLAGS)
        except OSError:
            return False
        try:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) and is_private(info)) or info.st_size != size:
                return False
            digest = hashlib.sha256()
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
            return digest.hexdigest() == sha256
        finally:
            os.close(fd)

    # -- writing --------------------------------------------------------------

    def write(self, relpath: str, data: bytes) -> Path:
        """Put *data* (verified bytes) at *relpath*, replacing whatever is there."""
        self.check(relpath)
        target = self.file_path(relpath)
        make_private_dirs(target.parent)
        self.check(relpath)  # the directories just made, and any made meanwhile
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, _WRITE_FLAGS, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                os.fchmod(handle.fileno(), FILE_MODE)
            # A rename replaces a planted symbolic link itself, never its target.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target
