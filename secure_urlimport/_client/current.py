"""The current manifest of one tree: downloaded, judged, remembered.

The I/O half of the pair whose trust half is :class:`~.._trust.trusted_set.TrustedManifests`
(as python-tuf's ``Updater`` is to its ``TrustedMetadataSet``): download the
manifest with a length cap (or revalidate the cached copy with its ETag or
Last-Modified), hand the bytes and the stored rollback records to the trusted
set, and persist on success -- the records in the
:class:`~.._store.state.StateStore`, the bytes and validators in the file
cache.  Every trust decision (signatures, tree name, expiry, rollback floor,
never go back) is the trusted set's.

Within ``Config(max_age=...)`` of the last revalidation a process's first
fetch uses the cached manifest with no request, and when the fetch fails
because of the network or the server the cached one may stand in
(``offline_fallback``); both are ``warm.py``'s, and verify the cached copy here.

A tree pinned by its root keys (``root=``) first walks its root chain
(``root_walk.py``) from the same source as the manifest, and the trusted set
verifies the manifest against the signers the newest root names.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from .. import forksafe
from .._format.manifest import Manifest
from .._format.paths import MANIFEST_NAME
from .._format.root import Root
from .._net.deadline import import_step
from .._net.fetcher import Validators, revalidate
from .._store.state import StateStore
from .._trust.trusted_set import TrustedManifests, superseded_release
from .._trust.verify import ManifestMemo, TrustedState
from ..errors import ExpiredManifestError, RollbackError, SecureImportError
from .context import TreeContext
from .root_walk import RootOfTrust
from .warm import WarmStart

__all__ = ["CurrentManifest"]

log = logging.getLogger("secure_urlimport")


class CurrentManifest:
    """The verified manifest a tree uses now, fetched once and again when stale."""

    def __init__(self, tree: TreeContext, state: StateStore) -> None:
        self.tree = tree
        self.trusted_set = TrustedManifests(tree.trusted, name=tree.config.tree_name)
        self._state = state
        #: The root chain, for a tree pinned by its root keys; None with pubkey=.
        self.roots = (
            RootOfTrust(tree.url, tree.root_pin, tree.fetcher, state)
            if tree.root_pin is not None
            else None
        )
        #: The cached manifest within max_age, or when the server is down.
        self.warm = WarmStart(tree, state, self.roots, self._verify)
        # Guards the fields below and every call of trusted_set.accept; never
        # held during network I/O, because a thread waiting for it may hold
        # the global import lock.  Fork-safe (forksafe.py).
        self._lock = forksafe.Lock()
        #: Signature checks passed by earlier processes (set by the tree: memo.py).
        self.memo: ManifestMemo | None = None
        self._manifest: Manifest | None = None  # None: stale, fetch on next use
        self._failure: SecureImportError | None = None
        self._generation = 0  # bumped by mark_stale: older fetches are not current
        # Set while this thread fetches the manifest: imports made meanwhile
        # (requests' own lazy imports walk sys.path) must not recurse into us.
        self._fetching = threading.local()

    @property
    def last_good(self) -> Manifest | None:
        """The newest manifest that verified, even if a later refresh failed."""
        return self.trusted_set.newest

    def busy_in_this_thread(self) -> bool:
        """True while this thread is fetching this tree's manifest."""
        return bool(getattr(self._fetching, "active", False))

    def get(self, *, past_caches: bool = False) -> Manifest:
        """The verified manifest, fetched once and again after :meth:`mark_stale`
        or when it expires; *past_caches* fetches it now, asking every cache on
        the way to revalidate with the origin.

        A failure is remembered (and re-raised) until the next ``mark_stale``,
        so a dead server costs one request, not one per import statement.
        """
        with self._lock:
            current, failure, generation = self._manifest, self._failure, self._generation
        now = datetime.now(UTC)
        if current is not None and now < current.expires and not past_caches:
            return current
        if failure is not None and not past_caches:
            # A fresh traceback each time, or it would grow with every raise.
            raise failure.with_traceback(None)
        self._fetching.active = True
        try:
            # Without the lock: this downloads.
            manifest = self._load(now, past_caches)
        except SecureImportError as exc:
            with self._lock:
                if self._generation == generation:
                    self._failure = exc
            raise
        finally:
            self._fetching.active = False
        with self._lock:
            newest = self.roots.newest if self.roots is not None else None
            superseded = superseded_release(
                manifest, newest, url=f"{self.tree.url}/{MANIFEST_NAME}"
            )
            if superseded is not None:
                # Another thread trusted a newer root meanwhile, which no longer
                # lets this release's signers sign (a revoked key's release that
                # downloaded slowly): never make it the current one.
                if self._manifest is not None and now < self._manifest.expires:
                    return self._manifest
                raise superseded
            # Another thread may have accepted a newer release meanwhile: the
            # trusted set never goes back to an older one.
            manifest = self.trusted_set.accept(manifest, now=now)
            if self._generation == generation:
                self._manifest = manifest
        return manifest

    def mark_stale(self) -> None:
        """Fetch the manifest again on next use (``importlib.invalidate_caches``)."""
        with self._lock:
            self._manifest = None
            self._failure = None
            self._generation += 1

    def _load(self, now: datetime, past_caches: bool = False) -> Manifest:
        if self.trusted_set.newest is None and not past_caches:  # this process's first: a start
            fresh = self.warm.fresh(now)
            if fresh is not None:
                return fresh
        refused: list[SecureImportError] = []  # what the servers sent that did not verify
        # One bound per source for the conditional request and the no-cache retry.
        try:
            with import_step(self.tree.config.timeout):
                return self.tree.sources.first_success(
                    lambda base: self._load_from(base, now, refused, past_caches),
                    what=f"{self.tree.url}/{MANIFEST_NAME}",
                )
        except SecureImportError as exc:
            if refused or past_caches:  # never after a verification failure
                raise
            return self.warm.fallback(exc.with_traceback(None), now)

    def _load_from(
        self, base: str, now: datetime, refused: list[SecureImportError], past_caches: bool
    ) -> Manifest:
        url = f"{base}/{MANIFEST_NAME}"
        started = time.perf_counter()
        # The root chain first, from the same source: it says whose signature counts.
        root = self.roots.update(base, now=now) if self.roots is not None else None
        data, validators, from_cache = self._download(
            url, use_cache=not past_caches, fresh=past_caches
        )
        try:
            manifest = self._verify(data, now, url, root, past_caches=past_caches)
        except SecureImportError as exc:
            if from_cache:
                # The cached copy no longer verifies (edited, expired,
                # superseded): forget it and ask the server for the whole file.
                log.debug("cached manifest for %s does not verify; downloading it", url)
                self.tree.cache.discard_manifest(url)
            else:
                refused.append(exc)  # the server's answer: no offline start after it
                if past_caches or not isinstance(exc, RollbackError | ExpiredManifestError):
                    raise
            # Old or expired: perhaps a CDN edge or proxy holds a stale copy.
            data, validators, from_cache = self._download(url, use_cache=False, fresh=True)
            try:
                manifest = self._verify(data, now, url, root, past_caches=True)
            except SecureImportError as again:
                refused.append(again)
                raise
        self._state.record(
            self.tree.url, manifest.signers, TrustedState(manifest.version, manifest.digest)
        )
        # Kept even without validators: an offline start and max_age use it.
        if not from_cache and self.tree.config.file_cache:
            self.tree.cache.put_manifest(url, validators, data)
        self.warm.revalidated(base, manifest, now)
        log.debug(
            "verified manifest %s: version %d, %d files, %.1f ms%s",
            url,
            manifest.version,
            len(manifest.files),
            (time.perf_counter() - started) * 1e3,
            " (not modified since cached)" if from_cache else "",
        )
        return manifest

    def _download(
        self, url: str, *, use_cache: bool = True, fresh: bool = False
    ) -> tuple[bytes, Validators, bool]:
        """``(bytes, validators, from_cache)``: the server's manifest, or our
        cached copy when the server answers 304 Not Modified to its ETag or
        Last-Modified; *fresh* asks caches on the way to revalidate with the origin."""
        limit = self.tree.config.max_manifest_bytes
        cached = None
        if use_cache and self.tree.config.file_cache:
            cached = self.tree.cache.get_manifest(url, limit)
        data, validators = revalidate(
            self.tree.fetcher,
            url,
            max_bytes=limit,
            validators=cached[0] if cached else Validators(),
            fresh=fresh,
        )
        if data is None and cached is not None and cached[0]:
            return cached[1], validators, True
        if data is None:  # 304 to a request that was not conditional
            data = self.tree.fetcher.fetch(url, max_bytes=limit)
        return data, validators, False

    def _verify(
        self, data: bytes, now: datetime, url: str, root: Root | None, *, past_caches: bool = False
    ) -> Manifest:
        """The trusted set's verdict on *data*, with the records stored for this
        tree (and, pinned by root keys, the newest root); *past_caches*: *data*
        was asked for with ``Cache-Control: no-cache``."""
        try:
            stored = self._state.load(self.tree.url)
            return self.trusted_set.verify(
                data, now=now, stored=stored, url=url, root=root, memo=self.memo
            )
        except SecureImportError as exc:
            exc.path = url
            if past_caches and isinstance(exc, RollbackError):
                exc.msg = (
                    f"{exc.msg} (asked for again with Cache-Control: no-cache, with the same "
                    "result: a cache in front of the server, such as a CDN edge or proxy that "
                    "ignores no-cache, is serving an old release until its copy expires; "
                    "purge it there, or the server itself serves the old release)"
                )
                exc.args = (exc.msg,)
            log.debug("refused manifest %s: %s", url, exc)
            raise
