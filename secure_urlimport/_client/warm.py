"""Starting from the cached manifest: within ``max_age``, and offline.

Two ways a tree uses the manifest it cached instead of one the server just
confirmed, both decided here and both only with the file cache on:

- **A freshness window** (``Config(max_age=SECONDS)``): a process's first
  manifest fetch makes no request if the server confirmed the cached
  manifest less than ``max_age`` seconds ago by this machine's clock (the
  record is ``StateStore.load_revalidated``; a clock that went backwards
  counts as stale).  Later fetches in the same process
  (``importlib.invalidate_caches()``, expiry) ask the server as always.
- **Offline start** (``Config(offline_fallback=True)``, the default): when
  the fetch fails because of the network or the server
  (``failures.is_outage``: never a 4xx, never a verification failure), the
  newest cached manifest of any of the tree's sources, with one
  :class:`~secure_urlimport.errors.OfflineFallbackWarning`; else the
  download error itself.

Either way the cached copy is untrusted disk state: it is verified again
exactly as a download (signatures, tree name, expiry, rollback floor) by
the caller's *verify*, and, for a tree pinned by its root keys, against the
stored root, which must verify and must not have expired.  Nothing here
ever lets an expired or unverifiable manifest through; what it allows is
what freezing the tree at that release would allow, until its expiry.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from datetime import datetime

from .._format.manifest import Manifest
from .._format.paths import MANIFEST_NAME
from .._format.root import Root
from .._format.signedfile import format_time
from .._net.failures import is_outage
from .._store.state import Revalidated, StateStore
from ..errors import OfflineFallbackWarning, SecureImportError
from .context import TreeContext
from .root_walk import RootOfTrust

__all__ = ["WarmStart"]

log = logging.getLogger("secure_urlimport")

#: ``verify(data, now, url, root)``: the manifest in *data* if it passes every rule.
Verify = Callable[[bytes, datetime, str, "Root | None"], Manifest]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WarmStart:
    """The cached manifest of one tree, used within max_age or when offline."""

    def __init__(
        self, tree: TreeContext, state: StateStore, roots: RootOfTrust | None, verify: Verify
    ) -> None:
        self.tree = tree
        self._state = state
        self._roots = roots
        self._verify = verify

    def revalidated(self, base: str, manifest: Manifest, now: datetime) -> None:
        """The server at *base* just confirmed *manifest* (a 200 or a 304)."""
        if self.tree.config.max_age > 0 and self.tree.config.file_cache:
            record = Revalidated(now.timestamp(), base, manifest.digest)
            self._state.record_revalidated(self.tree.url, record)

    def fresh(self, now: datetime) -> Manifest | None:
        """The cached manifest, verified, if the server confirmed it within
        ``max_age``; None (ask the server) otherwise."""
        config = self.tree.config
        if config.max_age <= 0 or not config.file_cache:
            return None
        record = self._state.load_revalidated(self.tree.url)
        if record is None or record.source not in self.tree.sources.urls:
            return None
        age = now.timestamp() - record.at
        if not 0 <= age < config.max_age:  # in the future: the clock went back
            log.debug("manifest of %s last revalidated %.0f s ago: asking", self.tree.url, age)
            return None
        manifest = self._cached(record.source, now)
        if manifest is None or manifest.digest != record.digest:
            return None
        log.debug(
            "manifest of %s revalidated %.1f s ago (max_age %g s): no request",
            self.tree.url,
            age,
            config.max_age,
        )
        return manifest

    def fallback(self, error: SecureImportError, now: datetime) -> Manifest:
        """The newest cached manifest that verifies, in place of a fetch that
        failed with *error*; raises *error* if it was not an outage or there
        is no such manifest."""
        config = self.tree.config
        if not (config.offline_fallback and config.file_cache and is_outage(error)):
            raise error
        cached = (self._cached(base, now) for base in self.tree.sources.urls)
        found = [manifest for manifest in cached if manifest is not None]
        if not found:
            raise error
        manifest = max(found, key=lambda m: m.version)
        warnings.warn(
            f"secure_urlimport: cannot fetch the manifest of {self.tree.url} ({error}); "
            f"using the cached release, version {manifest.version}, verified again, "
            f"which expires {format_time(manifest.expires)} (Config(offline_fallback=False) "
            "fails instead)",
            OfflineFallbackWarning,
            stacklevel=_caller_outside_package(),
        )
        return manifest

    def _cached(self, base: str, now: datetime) -> Manifest | None:
        """The manifest cached from *base*, verified again; None if none verifies."""
        url = f"{base}/{MANIFEST_NAME}"
        cached = self.tree.cache.get_manifest(url, self.tree.config.max_manifest_bytes)
        if cached is None:
            return None
        root = None
        if self._roots is not None:
            root = self._roots.without_walk(now=now)
            if root is None:
                return None
        try:
            return self._verify(cached[1], now, url, root)
        except SecureImportError as exc:
            log.debug("cached manifest %s cannot be used without a request: %s", url, exc)
            return None


def _caller_outside_package() -> int:
    """The stacklevel that names the first frame outside this package and
    the import system: the ``import`` statement or the ``install()`` call,
    as for a warning raised by a module imported from local disk."""
    frame = sys._getframe(1)
    level = 1  # our caller, fallback(), is warn()'s stacklevel 1
    while frame.f_back is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PACKAGE_DIR) or _import_system(name)):
            break
        frame = frame.f_back
        if not _import_system(frame.f_code.co_filename):
            level += 1  # warn() does not count the import system's frames
    return level


def _import_system(filename: str) -> bool:
    """warnings' own test for the frames it skips (``_is_internal_frame``)."""
    return "importlib" in filename and "_bootstrap" in filename
