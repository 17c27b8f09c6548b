"""One trusted remote tree: its URL, pinned keys, verified manifest and verified bytes.

This is where network meets verification.  Finders and loaders ask a
:class:`RemoteTree` for the manifest and for file bytes; everything it hands
out has passed ``verify``.  Trees live in the registry (``api``), not in
finder objects, because ``importlib.invalidate_caches()`` throws URL path
finders away.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from datetime import UTC, datetime

from .config import Config
from .errors import NotInManifestError, SecureImportError
from .keys import TrustedKeys
from .manifest import FileEntry, Manifest
from .paths import MANIFEST_NAME
from .state import StateStore
from .transport import Fetcher, require_https
from .verify import TrustedState, verify_file, verify_manifest

__all__ = ["RemoteTree", "normalize_url"]

log = logging.getLogger("secure_urlimport")


def normalize_url(url: str) -> str:
    """The canonical form of a tree URL: https only, lower-case host, no trailing slash."""
    url = require_https(str(url))
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        from .errors import ConfigurationError

        raise ConfigurationError(f"tree URL {url!r} must not have a query or fragment")
    return urllib.parse.urlunsplit(("https", parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


class RemoteTree:
    """A signed tree at an https URL, verified against pinned keys."""

    def __init__(
        self,
        url: str,
        trusted: TrustedKeys,
        config: Config,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.trusted = trusted
        self.config = config
        if fetcher is None:
            from .transport import RequestsFetcher

            fetcher = RequestsFetcher(config)
        self.fetcher = fetcher
        self._state = StateStore(config.state_dir())
        self._lock = threading.RLock()
        self._manifest: Manifest | None = None
        self._last_good: Manifest | None = None
        self._failure: SecureImportError | None = None
        # Verified bytes by SHA-256, and which manifest entry each path was
        # last verified against (entries carry the per-version signatures).
        self._blobs: dict[str, bytes] = {}
        self._checked: dict[str, FileEntry] = {}

    def __repr__(self) -> str:
        return f"<RemoteTree {self.url} keys={','.join(self.trusted.keyids)}>"

    # -- manifest -----------------------------------------------------------

    @property
    def last_good(self) -> Manifest | None:
        """The newest manifest that verified, even if a later refresh failed."""
        return self._last_good

    def manifest(self) -> Manifest:
        """The verified manifest, fetched once and again after :meth:`mark_stale`.

        A failure is remembered (and re-raised) until the next ``mark_stale``,
        so a dead server costs one request, not one per import statement.
        """
        with self._lock:
            if self._manifest is not None:
                return self._manifest
            if self._failure is not None:
                # A fresh traceback each time, or it would grow with every raise.
                raise self._failure.with_traceback(None)
            try:
                self._manifest = self._load_manifest()
            except SecureImportError as exc:
                self._failure = exc
                raise
            self._last_good = self._manifest
            live = {e.sha256 for e in self._manifest.files.values()}
            self._blobs = {sha: data for sha, data in self._blobs.items() if sha in live}
            return self._manifest

    def mark_stale(self) -> None:
        """Fetch the manifest again on next use (``importlib.invalidate_caches``)."""
        with self._lock:
            self._manifest = None
            self._failure = None

    def _load_manifest(self) -> Manifest:
        url = f"{self.url}/{MANIFEST_NAME}"
        started = time.perf_counter()
        data = self.fetcher.fetch(url, max_bytes=self.config.max_manifest_bytes)
        keyset = self.trusted.fingerprint()
        previous = self._state.load(self.url, keyset)
        try:
            manifest = verify_manifest(
                data, self.trusted, now=datetime.now(UTC), previous=previous, url=url
            )
        except SecureImportError as exc:
            exc.path = url
            log.debug("refused manifest %s: %s", url, exc)
            raise
        self._state.save(self.url, keyset, TrustedState(manifest.version, manifest.digest))
        log.debug(
            "verified manifest %s: version %d, %d files, %.1f ms",
            url, manifest.version, len(manifest.files), (time.perf_counter() - started) * 1e3,
        )
        return manifest

    # -- files --------------------------------------------------------------

    def file_url(self, relpath: str) -> str:
        return f"{self.url}/{urllib.parse.quote(relpath)}" if relpath else self.url

    def entry(self, relpath: str) -> FileEntry | None:
        return self.manifest().files.get(relpath)

    def read(self, relpath: str) -> bytes:
        """The bytes of *relpath*, downloaded once and verified against the manifest."""
        manifest = self.manifest()
        url = self.file_url(relpath)
        entry = manifest.files.get(relpath)
        if entry is None:
            raise NotInManifestError(
                f"{url} is not in the signed manifest of {self.url}; "
                "sign the tree again after adding the file",
                path=url,
            )
        if self._checked.get(relpath) == entry:
            return self._blobs[entry.sha256]
        data = self._blobs.get(entry.sha256)
        if data is None:
            limit = min(entry.size, self.config.max_file_bytes)
            data = self.fetcher.fetch(url, max_bytes=limit)
        try:
            verify_file(entry, data, manifest, self.trusted, url=url)
        except SecureImportError as exc:
            exc.path = url
            log.debug("refused %s: %s", url, exc)
            raise
        log.debug("verified %s (%d bytes)", url, len(data))
        self._blobs[entry.sha256] = data
        self._checked[relpath] = entry
        return data

    def relpath_of(self, location: str) -> str | None:
        """The tree path of a URL (or ``os.path.join``-built path) under this tree."""
        prefix = self.url + "/"
        if not location.startswith(prefix):
            return None
        rest = location[len(prefix):]
        return urllib.parse.unquote(rest) if "%" in rest else rest

    def close(self) -> None:
        self.fetcher.close()
