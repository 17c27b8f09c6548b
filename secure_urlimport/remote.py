"""One trusted remote tree: its URL, pinned keys, verified manifest and verified bytes.

This is where network meets verification.  Finders and loaders ask a
:class:`RemoteTree` for the manifest and for file bytes; everything it hands
out has passed ``verify``.  Trees live in the registry (``api``), not in
finder objects, because ``importlib.invalidate_caches()`` throws URL path
finders away.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime

from . import forksafe
from .bundle import Bundle, bundle_members
from .bytecode import BytecodeCache, slot_digests
from .cache import FileCache
from .config import Config
from .deadline import budget_left, import_step, source_budget
from .errors import (
    ConfigurationError,
    ExpiredManifestError,
    NotInManifestError,
    RollbackError,
    SecureImportError,
    TamperedFileError,
)
from .keys import TrustedKeys
from .manifest import FileEntry, Manifest
from .mirrors import Mirrors
from .paths import BUNDLE_NAME, MANIFEST_NAME
from .prefetch import Prefetcher
from .privatedir import client_state_dir
from .state import StateStore
from .transport import Fetcher, require_https
from .verify import TrustedState, verify_file, verify_manifest

__all__ = ["RemoteTree", "normalize_url"]

log = logging.getLogger("secure_urlimport")


# What urllib.parse.quote() leaves as it is (with safe="/").
_NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9_.\-~/]*")


def normalize_url(url: str) -> str:
    """The canonical form of a tree URL: https only, lower-case host, no default
    port, no trailing slash; no ``.``/``..``/empty or escaped-slash segments, which
    would let a prefix pinned for one path reach another."""
    url = require_https(str(url))
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    segments = path.split("/")[1:]
    if parts.query or parts.fragment or any(
        s in ("", ".", "..") or "%2e" in s.lower() or "%2f" in s.lower() or "%5c" in s.lower()
        for s in segments
    ):
        raise ConfigurationError(
            f"tree URL {url!r} must be a plain path: no query, fragment, empty, '.', '..' "
            "or escaped-slash segments"
        )
    netloc = parts.netloc.lower()
    if netloc.endswith(":443"):
        netloc = netloc[: -len(":443")]
    return urllib.parse.urlunsplit(("https", netloc, path, "", ""))


class RemoteTree:
    """A signed tree at an https URL, verified against pinned keys."""

    def __init__(
        self,
        url: str,
        trusted: TrustedKeys,
        config: Config,
        fetcher: Fetcher | None = None,
        mirrors: Sequence[str] = (),
    ) -> None:
        self.url = normalize_url(url)
        #: Where the bytes come from: this URL, then any mirrors (mirrors.py).
        self.sources = Mirrors([self.url, *(normalize_url(m) for m in mirrors)])
        self.trusted = trusted
        self.config = config
        if fetcher is None:
            from .transport import RequestsFetcher

            fetcher = RequestsFetcher(config)
        self.fetcher = fetcher
        state_dir = client_state_dir(config, self.url)  # refused if others can write it
        self._state = StateStore(state_dir)
        # Guards the fields below; never held during network I/O, because a
        # thread waiting for it may hold the global import lock.
        self._lock = forksafe.Lock()
        self._manifest: Manifest | None = None  # None: stale, fetch on next use
        self._last_good: Manifest | None = None
        self._failure: SecureImportError | None = None
        self._generation = 0  # bumped by mark_stale: older fetches are not current
        # Set while this thread fetches the manifest: imports made meanwhile
        # (requests' own lazy imports walk sys.path) must not recurse into us.
        self._fetching = threading.local()
        # path -> (the manifest entry it was verified against, its bytes)
        self._verified: dict[str, tuple[FileEntry, bytes]] = {}
        self._cache = FileCache(state_dir)
        #: Compiled code of verified modules (bytecode.py); the loader's to use.
        # Only with the file cache: tracebacks and getsource() then read the
        # verified source from disk, never from the network.
        self.bytecode = BytecodeCache(state_dir, self.url,
                                      enabled=config.bytecode_cache and config.file_cache)
        self.bytecode.live_slots = lambda: slot_digests(
            (self.file_url(path), entry.sha256)
            for path, entry in (self._last_good.files.items() if self._last_good else ())
            if path.endswith(".py")
        )
        self._prefetcher = Prefetcher(config.parallel_downloads)
        self._prefetched_dirs: set[tuple[str, bool]] = set()
        # (manifest digest, its bundle or None, whether that answer is final)
        self._bundle_state: tuple[str, Bundle | None, bool] | None = None

    def __repr__(self) -> str:
        return f"<RemoteTree {self.url} keys={','.join(self.trusted.keyids)}>"

    # -- manifest -----------------------------------------------------------

    @property
    def last_good(self) -> Manifest | None:
        """The newest manifest that verified, even if a later refresh failed."""
        return self._last_good

    def busy_in_this_thread(self) -> bool:
        """True while this thread is fetching this tree's manifest."""
        return bool(getattr(self._fetching, "active", False))

    def manifest(self) -> Manifest:
        """The verified manifest, fetched once and again after :meth:`mark_stale`
        or when it expires.

        A failure is remembered (and re-raised) until the next ``mark_stale``,
        so a dead server costs one request, not one per import statement.
        """
        with self._lock:
            current, failure, generation = self._manifest, self._failure, self._generation
        now = datetime.now(UTC)
        if current is not None and now < current.expires:
            return current
        if failure is not None:
            # A fresh traceback each time, or it would grow with every raise.
            raise failure.with_traceback(None)
        self._fetching.active = True
        try:
            manifest = self._load_manifest(now)
        except SecureImportError as exc:
            with self._lock:
                if self._generation == generation:
                    self._failure = exc
            raise
        finally:
            self._fetching.active = False
        with self._lock:
            newest = self._last_good
            if newest is not None and newest.version > manifest.version and now < newest.expires:
                # Another thread accepted a newer release while this one
                # verified an older one: never go back to it.
                manifest = newest
            if self._generation == generation:
                self._manifest = manifest
            if newest is None or manifest.version >= newest.version:
                self._last_good = manifest
        return manifest

    def mark_stale(self) -> None:
        """Fetch the manifest again on next use (``importlib.invalidate_caches``)."""
        with self._lock:
            self._manifest = None
            self._failure = None
            self._generation += 1

    def _rollback_floor(self) -> TrustedState | None:
        """The newest release seen: recorded for a pinned key, or in this process."""
        records = self._state.load(self.url)
        seen = [records[k] for k in self.trusted.keys if k in records]
        if self._last_good is not None:
            seen.append(TrustedState(self._last_good.version, self._last_good.digest))
        return max(seen, key=lambda state: state.version, default=None)

    def _load_manifest(self, now: datetime) -> Manifest:
        # One bound per source for the conditional request and the no-cache retry.
        with import_step(self.config.timeout):
            return self.sources.first_success(
                lambda base: self._load_manifest_from(base, now),
                what=f"{self.url}/{MANIFEST_NAME}",
            )

    def _load_manifest_from(self, base: str, now: datetime) -> Manifest:
        url = f"{base}/{MANIFEST_NAME}"
        started = time.perf_counter()
        data, etag, from_cache = self._download_manifest(url)
        try:
            manifest = self._verify_manifest(data, now, url)
        except SecureImportError as exc:
            if from_cache:
                # The cached copy no longer verifies (edited, expired,
                # superseded): forget it and ask the server for the whole file.
                log.debug("cached manifest for %s does not verify; downloading it", url)
                self._cache.discard_manifest(url)
            elif not (isinstance(exc, RollbackError | ExpiredManifestError)
                      and hasattr(self.fetcher, "fetch_if_changed")):
                raise
            # Old or expired: perhaps a CDN edge or proxy holds a stale copy.
            data, etag, from_cache = self._download_manifest(url, use_cache=False, fresh=True)
            manifest = self._verify_manifest(data, now, url)
        self._state.record(
            self.url, manifest.signers, TrustedState(manifest.version, manifest.digest)
        )
        if etag is not None and not from_cache and self.config.file_cache:
            self._cache.put_manifest(url, etag, data)
        log.debug(
            "verified manifest %s: version %d, %d files, %.1f ms%s",
            url, manifest.version, len(manifest.files), (time.perf_counter() - started) * 1e3,
            " (not modified since cached)" if from_cache else "",
        )
        return manifest

    def _download_manifest(
        self, url: str, *, use_cache: bool = True, fresh: bool = False
    ) -> tuple[bytes, str | None, bool]:
        """``(bytes, etag, from_cache)``: the server's manifest, or our cached
        copy when the server answers 304 Not Modified to its ETag; *fresh* asks
        caches on the way to revalidate with the origin."""
        limit = self.config.max_manifest_bytes
        conditional = getattr(self.fetcher, "fetch_if_changed", None)
        cached = None
        if use_cache and self.config.file_cache and conditional is not None:
            cached = self._cache.get_manifest(url, limit)
        if conditional is None:
            return self.fetcher.fetch(url, max_bytes=limit), None, False
        data, etag = conditional(url, max_bytes=limit, etag=cached[0] if cached else None,
                                 fresh=fresh)
        if data is None and cached is not None:
            return cached[1], etag, True
        if data is None:  # 304 to a request that was not conditional
            data = self.fetcher.fetch(url, max_bytes=limit)
        return data, etag, False

    def _verify_manifest(self, data: bytes, now: datetime, url: str) -> Manifest:
        try:
            return verify_manifest(
                data, self.trusted, now=now, previous=self._rollback_floor(), url=url,
                name=self.config.tree_name, known=self._last_good,
            )
        except SecureImportError as exc:
            exc.path = url
            log.debug("refused manifest %s: %s", url, exc)
            raise

    # -- files --------------------------------------------------------------

    def file_url(self, relpath: str, base: str | None = None) -> str:
        """The URL of *relpath* in this tree (or at the mirror *base*)."""
        base = base or self.url
        if not relpath:
            return base
        if _NEEDS_NO_QUOTING.fullmatch(relpath):  # the usual case, without quote()'s cost
            return f"{base}/{relpath}"
        return f"{base}/{urllib.parse.quote(relpath)}"

    def lookup(self, relpath: str) -> tuple[Manifest, FileEntry]:
        """The verified manifest and its entry for *relpath*."""
        manifest = self.manifest()
        entry = manifest.files.get(relpath)
        if entry is None:
            url = self.file_url(relpath)
            raise NotInManifestError(
                f"{url} is not in the signed manifest of {self.url}; "
                "sign the tree again after adding the file",
                path=url,
            )
        return manifest, entry

    def read(self, relpath: str) -> bytes:
        """The bytes of *relpath*, verified against the manifest before they are
        returned, whether they come from memory, a prefetch, the disk cache or
        a download."""
        return self.read_entry(*self.lookup(relpath))

    def read_entry(self, manifest: Manifest, entry: FileEntry) -> bytes:
        """The verified bytes of *entry* of *manifest* (see :meth:`read`)."""
        relpath = entry.path
        url = self.file_url(relpath)
        hit = self._verified.get(relpath)
        if hit is not None and hit[0] == entry:
            return hit[1]
        # Cheapest first: the bundle if already at hand, the file's cached
        # copy, then the bundle from the server, then the file on its own --
        # all within one timeout per source (deadline.import_step).
        with import_step(self.config.timeout):
            data = self._from_bundle(entry, manifest, url, download=False)
            if data is None:
                data = self._cached_copy(entry, manifest, url)
            if data is None:
                data = self._from_bundle(entry, manifest, url, download=True)
            if data is None:
                data = self._download_verified(entry, manifest)
                if self.config.file_cache:
                    self._cache.put(entry.sha256, data)
        self._verified[relpath] = (entry, data)
        return data

    def _verify(self, entry: FileEntry, data: bytes, manifest: Manifest, url: str) -> None:
        try:
            verify_file(entry, data, manifest, self.trusted, url=url)
        except SecureImportError as exc:
            exc.path = url
            log.debug("refused %s: %s", url, exc)
            raise
        log.debug("verified %s (%d bytes)", url, len(data))

    def _from_bundle(
        self, entry: FileEntry, manifest: Manifest, url: str, *, download: bool
    ) -> bytes | None:
        """*entry*'s bytes from the tree's bundle, if it has one and they verify."""
        bundle = self._bundle(manifest, download=download)
        if bundle is None or entry.path not in bundle or entry.size > self.config.max_file_bytes:
            return None  # (an oversized file is refused by the download that follows)
        data = bundle.member(entry.path)
        try:
            verify_file(entry, data, manifest, self.trusted, url=url)
        except SecureImportError as exc:
            # Stale or tampered: only speed is lost.  Stop using it.
            log.warning("the bundle of %s does not match its manifest (%s); downloading "
                        "files one by one (re-publish the bundle with the manifest)",
                        self.url, exc)
            self._bundle_state = (manifest.digest, None, True)
            self._cache.discard_bundle(manifest.digest)
            return None
        log.debug("verified %s (from the bundle)", url)
        return data

    def _bundle(self, manifest: Manifest, *, download: bool) -> Bundle | None:
        """The bundle of this release, from memory or the disk cache, or with
        *download* from the server (tried once per release); None if there is
        none to use."""
        digest = manifest.digest
        state = self._bundle_state
        if state is not None and state[0] == digest and (state[2] or not download):
            return state[1]
        members = bundle_members(manifest.files)
        size = sum(entry.size for entry in members)
        if not members or size > self.config.max_bundle_bytes:
            self._bundle_state = (digest, None, True)
            return None
        if state is None or state[0] != digest:  # first look: the disk cache only
            data = self._cache.get_bundle(digest, size) if self.config.file_cache else None
            if data is not None:
                log.debug("using the cached bundle of %s", self.url)
            cached = Bundle(data, members) if data is not None else None
            self._bundle_state = (digest, cached, cached is not None)
            if cached is not None or not download:
                return cached
        bundle = self._download_bundle(digest, members, size)
        self._bundle_state = (digest, bundle, True)
        return bundle

    def _download_bundle(
        self, digest: str, members: list[FileEntry], size: int
    ) -> Bundle | None:
        url = self.file_url(BUNDLE_NAME, self.sources.active)
        try:
            with source_budget(self.sources.active):  # shares the file's bound
                data = self.fetcher.fetch(url, max_bytes=size)
        except SecureImportError as exc:
            log.debug("no usable bundle at %s (%s); downloading files one by one", url, exc)
            return None
        bundle = Bundle(data, members)
        if not bundle.complete:
            log.warning("the bundle at %s is %d bytes, not the %d its manifest implies; "
                        "downloading files one by one", url, len(data), size)
            return None
        if self.config.file_cache:
            self._cache.put_bundle(digest, data)
        log.debug("downloaded the bundle of %s: %d modules, %d bytes",
                  self.url, len(members), size)
        return bundle

    def _cached_copy(self, entry: FileEntry, manifest: Manifest, url: str) -> bytes | None:
        """The disk cache's copy of *entry*, if there is one and it verifies."""
        if not self.config.file_cache:
            return None
        data = self._cache.get(entry.sha256, self._limit(entry))
        if data is None:
            return None
        try:
            verify_file(entry, data, manifest, self.trusted, url=url)
        except SecureImportError as exc:
            # The cache is untrusted input: a bad copy is dropped, never run.
            log.warning("discarding the cached copy of %s, which does not verify: %s", url, exc)
            self._cache.discard(entry.sha256)
            return None
        log.debug("verified cached copy of %s", url)
        return data

    def _limit(self, entry: FileEntry) -> int:
        return min(entry.size, self.config.max_file_bytes)

    def _download_verified(self, entry: FileEntry, manifest: Manifest) -> bytes:
        """Download *entry* and verify it, from each mirror in turn if need be."""
        future = self._prefetcher.take(entry.sha256)

        def attempt(base: str) -> bytes:
            nonlocal future
            url = self.file_url(entry.path, base)
            data = self._prefetched_or_downloaded(future, entry, url)
            future = None  # a prefetch serves one attempt only
            try:
                self._verify(entry, data, manifest, url)
            except TamperedFileError:
                fresh = getattr(self.fetcher, "fetch_fresh", None)
                if fresh is None:
                    raise
                # Perhaps a CDN edge or proxy still holds the previous release's
                # copy: ask once more, past the caches, and verify that.
                log.debug("%s does not match the manifest; asking again past caches", url)
                data = fresh(url, max_bytes=self._limit(entry))
                self._verify(entry, data, manifest, url)
            return data

        return self.sources.first_success(attempt, what=self.file_url(entry.path))

    def _prefetched_or_downloaded(
        self, future: Future[bytes] | None, entry: FileEntry, url: str
    ) -> bytes:
        if future is not None:
            try:
                return future.result(timeout=budget_left(self.config.timeout * 2))
            except SecureImportError as exc:
                # The download's own error (already past its deadline): asking
                # a failing server again would only double the wait.
                raise exc.with_traceback(None) from None
            except Exception as exc:  # not a download error: try once more here
                log.debug("prefetch of %s failed (%r); downloading it again", url, exc)
        return self.fetcher.fetch(url, max_bytes=self._limit(entry))

    def prefetch(self, directory: str, *, recursive: bool, skip: str = "") -> None:
        """Start downloading the modules in *directory* (tree-relative, '' for
        the root) that are neither verified nor cached yet, except *skip*
        (the caller's own file, which it is about to download itself)."""
        if self.config.parallel_downloads < 1:
            return
        key = (directory, recursive)
        if key in self._prefetched_dirs:
            return
        self._prefetched_dirs.add(key)
        try:
            manifest = self.manifest()
        except SecureImportError:
            return
        if self._bundle(manifest, download=False) is not None:
            return  # every module is at hand already
        wanted = [e for e in self._prefetchable(manifest, directory, recursive) if e.path != skip]
        if not wanted or self._bundle(manifest, download=True) is not None:
            return  # nothing to fetch, or every module is in the bundle
        jobs = [(e.sha256, functools.partial(self._download_for_cache, e)) for e in wanted]
        started = self._prefetcher.start(jobs)
        if started:
            log.debug("prefetching %d module(s) of %s/%s", started, self.url, directory)

    def _prefetchable(
        self, manifest: Manifest, directory: str, recursive: bool
    ) -> list[FileEntry]:
        budget = self.config.max_file_bytes
        found = []
        # From the index: a package deep in a big tree does not scan every path.
        for path in manifest.directories.files_below(directory, recursive=recursive):
            entry = manifest.files[path]
            if not path.endswith(".py") or path in self._verified or entry.size > budget:
                continue
            if self._prefetcher.scheduled(entry.sha256):
                continue
            if self.config.file_cache and self._cache.has(entry.sha256):
                continue
            budget -= entry.size
            found.append(entry)
        return found

    def _download_for_cache(self, entry: FileEntry) -> bytes:
        """Runs on a prefetch thread: download, and cache if the digest matches."""
        url = self.file_url(entry.path, self.sources.active)
        data = self.fetcher.fetch(url, max_bytes=self._limit(entry))
        if self.config.file_cache and hashlib.sha256(data).hexdigest() == entry.sha256:
            self._cache.put(entry.sha256, data)
        return data

    def relpath_of(self, location: str) -> str | None:
        """The tree path of a URL (or ``os.path.join``-built path) under this tree.

        The text after the tree URL is taken as it is; it is un-escaped only if
        it is exactly how :meth:`file_url` spells that path.
        """
        prefix = self.url + "/"
        if not location.startswith(prefix):
            return None
        rest = location[len(prefix):]
        if "%" in rest:
            unquoted = urllib.parse.unquote(rest)
            if self.file_url(unquoted) == location:
                return unquoted
        return rest

    def close(self) -> None:
        self.bytecode.flush()
        self._prefetcher.close()
        self.fetcher.close()
