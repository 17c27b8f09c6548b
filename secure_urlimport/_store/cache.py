"""The on-disk cache: downloaded files by SHA-256, and the last manifest per URL.

Everything here is untrusted input.  The cache only saves downloads: a file
read back is verified against the signed manifest (size, SHA-256 and the
Ed25519 signatures) exactly like a fresh download before anything compiles
it, and a cached manifest is verified again like a downloaded one.  An edited,
truncated or swapped entry is therefore discarded and downloaded again, never
run.  That is also why writes are not fsynced: a torn write is just a miss.

Layout under ``<cache dir>``::

    files/ab/cdef...        the bytes whose SHA-256 is abcdef...
    bundles/<digest>        the bundle of the release whose manifest body has that SHA-256
    manifests/<url hash>    {"url": ..., "etag": ..., "last_modified": ...} + NUL + the
                            manifest bytes (last accepted from that URL, with the
                            server's validators; either may be null)

Every operation is best effort: an unreadable or read-only cache is logged
and otherwise ignored, so a full disk never fails an import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_atomically
from .file_names import file_name_for
from .privatedir import make_private_dirs

__all__ = [
    "SAFE_READ_FLAGS",
    "FileCache",
    "Validators",
    "is_sane_etag",
    "is_sane_last_modified",
    "read_regular_file",
]

log = logging.getLogger("secure_urlimport")

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: The longest ETag and Last-Modified value sent back (an HTTP-date is 29 characters).
MAX_ETAG_CHARS = 200
MAX_LAST_MODIFIED_CHARS = 64


@dataclass(frozen=True)
class Validators:
    """What a server said identifies the copy it sent, to revalidate it with:
    its ``ETag`` (sent back as ``If-None-Match``) and its ``Last-Modified``
    (sent back as ``If-Modified-Since``).  Both are server-chosen strings: one
    that is not short printable ASCII is dropped here, so a Validators is
    always fit to send back."""

    etag: str | None = None
    last_modified: str | None = None

    def __post_init__(self) -> None:
        if not is_sane_etag(self.etag):
            object.__setattr__(self, "etag", None)
        if not is_sane_last_modified(self.last_modified):
            object.__setattr__(self, "last_modified", None)

    def __bool__(self) -> bool:
        """True if there is anything to revalidate with."""
        return self.etag is not None or self.last_modified is not None


class FileCache:
    """Content-addressed bytes and per-URL manifests under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._files = self.directory / "files"
        self._manifests = self.directory / "manifests"

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r})"

    # -- files --------------------------------------------------------------

    def _file_path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):  # the manifest parser checks this too
            raise ValueError(f"not a SHA-256 hex digest: {sha256[:80]!r}")
        return self._files / sha256[:2] / sha256[2:]

    def get(self, sha256: str, max_bytes: int) -> bytes | None:
        """The cached bytes filed under *sha256*, unverified, or None.

        At most max_bytes + 1 bytes: an oversized copy fails verification."""
        return read_regular_file(self._file_path(sha256), max_bytes + 1)

    def has(self, sha256: str) -> bool:
        try:
            return self._file_path(sha256).is_file()
        except OSError:  # e.g. a directory this user cannot enter
            return False

    def put(self, sha256: str, data: bytes) -> None:
        """File *data* under *sha256*, which the caller has checked it hashes to."""
        if not self.has(sha256):
            _write_atomically(self._file_path(sha256), data)

    def discard(self, sha256: str) -> None:
        """Remove a cached file that failed verification."""
        with contextlib.suppress(OSError):
            self._file_path(sha256).unlink()

    # -- bundles ------------------------------------------------------------

    def _bundle_path(self, manifest_digest: str) -> Path:
        if not _SHA256.fullmatch(manifest_digest):
            raise ValueError(f"not a SHA-256 hex digest: {manifest_digest[:80]!r}")
        return self.directory / "bundles" / manifest_digest

    def get_bundle(self, manifest_digest: str, size: int) -> bytes | None:
        """The cached bundle of the release with this manifest digest, unverified."""
        data = read_regular_file(self._bundle_path(manifest_digest), size + 1)
        return data if data is not None and len(data) == size else None

    def put_bundle(self, manifest_digest: str, data: bytes) -> None:
        _write_atomically(self._bundle_path(manifest_digest), data)

    def discard_bundle(self, manifest_digest: str) -> None:
        with contextlib.suppress(OSError):
            self._bundle_path(manifest_digest).unlink()

    # -- manifests ----------------------------------------------------------

    def _manifest_path(self, url: str) -> Path:
        return self._manifests / file_name_for(url)

    def get_manifest(self, url: str, max_bytes: int) -> tuple[Validators, bytes] | None:
        """The validators and bytes of the manifest last accepted from *url*, or
        None.  Unverified: the caller verifies the bytes like a download."""
        path = self._manifest_path(url)
        blob = read_regular_file(path, max_bytes + 4096)
        if blob is None:
            return None
        try:
            header, sep, data = blob.partition(b"\0")
            meta = json.loads(header)
            if not sep or not isinstance(meta, dict) or meta["url"] != url:
                raise ValueError("malformed entry")
            # Insane values (an edited cache) are dropped: then asked unconditionally.
            validators = Validators(meta.get("etag"), meta.get("last_modified"))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            log.debug("cache: ignoring manifest entry %s: %s", path, exc)
            return None
        return validators, data

    def put_manifest(self, url: str, validators: Validators, data: bytes) -> None:
        """Keep *data*, a manifest that verified, with the validators it came with."""
        meta = {"url": url, "etag": validators.etag, "last_modified": validators.last_modified}
        _write_atomically(self._manifest_path(url), json.dumps(meta).encode("utf-8") + b"\0" + data)

    def discard_manifest(self, url: str) -> None:
        with contextlib.suppress(OSError):
            self._manifest_path(url).unlink()


def is_sane_etag(value: object) -> bool:
    """True for an ETag fit to send back in If-None-Match: short printable ASCII."""
    return _short_printable_ascii(value, MAX_ETAG_CHARS)


def is_sane_last_modified(value: object) -> bool:
    """True for a Last-Modified value fit to send back in If-Modified-Since:
    short printable ASCII (it is the server's own; it is only ever sent back)."""
    return _short_printable_ascii(value, MAX_LAST_MODIFIED_CHARS)


def _short_printable_ascii(value: object, limit: int) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isascii()
        and value.isprintable()
    )


# Never block on a FIFO or device planted in the cache, never follow a symlink.
SAFE_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)


def read_regular_file(path: Path, limit: int) -> bytes | None:
    """Up to *limit* bytes of the regular file at *path*, or None (missing,
    unreadable, or not a regular file)."""
    try:
        fd = os.open(path, SAFE_READ_FLAGS | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.debug("cache: cannot open %s: %s", path, exc)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            log.debug("cache: ignoring %s, which is not a regular file", path)
            return None
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the file object closes it now
            # Not read(limit): that allocates *limit* bytes up front.
            return handle.read(min(limit, info.st_size + 1))
    except OSError as exc:
        log.debug("cache: cannot read %s: %s", path, exc)
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    """Best effort: a cache that cannot be written is only a slower cache."""
    try:
        make_private_dirs(path.parent)
        write_atomically(path, data, durable=False, mode=None)
    except OSError as exc:
        log.debug("cache: cannot write %s: %s", path, exc)
