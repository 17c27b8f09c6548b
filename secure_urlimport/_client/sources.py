"""One chain of byte sources for a tree's files: offers in, verified bytes out.

For one manifest entry, cheapest first::

    memory          bytes this process verified for this very entry (the store)
    bundle          the release's bundle, if already at hand
    disk cache      the copy filed under the entry's SHA-256
    bundle          the release's bundle, downloaded now (once per release)
    network         a prefetched or fresh download, from each mirror in turn,
                    asked once more past the caches if it does not verify

Each source only *offers* untrusted bytes (an :class:`Offer`) with a
``reject`` callback that says what to do when they do not verify: a bad
bundle member disables the bundle for that release, a bad cached copy is
discarded, a bad download is asked for once more past CDN caches (then the
mirror fails, and :meth:`~.._net.mirrors.Mirrors.first_success` asks the next one).
:meth:`ByteSources._first_verified` is the one place that verifies, and
:class:`Store` the one place that keeps what passed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from .._format.manifest import FileEntry, Manifest
from .._format.paths import url_in_tree
from .._net.deadline import budget_left, import_step
from .._net.prefetch import Prefetcher
from .._store.cache import FileCache
from .._trust.verify import release_keys, verify_file
from ..config import Config
from ..errors import ResponseTooLargeError, SecureImportError, TamperedFileError
from .bundle import ReleaseBundle
from .context import TreeContext

__all__ = ["ByteSources", "Offer", "Store", "download_limit"]

log = logging.getLogger("secure_urlimport")


def download_limit(entry: FileEntry, config: Config) -> int:
    """How many bytes to accept for *entry*: its signed size, within max_file_bytes."""
    return min(entry.size, config.max_file_bytes)


@dataclass(frozen=True)
class Offer:
    """Untrusted bytes a source offers for one entry."""

    data: bytes
    #: The URL named in messages: the tree's, or the mirror's that served them.
    url: str
    source: Literal["bundle", "cache", "network"]
    #: Called with the reason when the bytes do not verify: drops the copy (the
    #: chain then asks the next source) or raises (the chain stops).
    reject: Callable[[SecureImportError], None]


class Store:
    """Where verified bytes are kept: memory, and the disk cache for downloads."""

    def __init__(self, config: Config, cache: FileCache) -> None:
        self.config = config
        self._cache = cache
        # path -> (the manifest entry it was verified against, its bytes)
        self._verified: dict[str, tuple[FileEntry, bytes]] = {}
        # Paths verified, then let go of (forget): still "used".
        self._forgotten: set[str] = set()

    def __contains__(self, path: object) -> bool:
        return path in self._verified

    @property
    def used(self) -> bool:
        """Whether any file was verified in this process."""
        return bool(self._verified or self._forgotten)

    def forget(self, entry: FileEntry) -> None:
        """Drop the bytes kept for *entry*, which the caller has put elsewhere
        (an extension module's 28 MB library, written to disk)."""
        hit = self._verified.get(entry.path)
        if hit is not None and hit[0] == entry:
            del self._verified[entry.path]
            self._forgotten.add(entry.path)

    def recall(self, entry: FileEntry) -> bytes | None:
        """The bytes verified for exactly *entry* in this process, or None."""
        hit = self._verified.get(entry.path)
        return hit[1] if hit is not None and hit[0] == entry else None

    def keep(self, entry: FileEntry, offer: Offer) -> None:
        """Keep *offer*, which verified against *entry*.  Only downloads go to
        the disk cache: a bundle member's bundle is cached already."""
        if offer.source == "network" and self.config.file_cache:
            self._cache.put(entry.sha256, offer.data)
        self._verified[entry.path] = (entry, offer.data)

    def on_disk(self, entry: FileEntry) -> bool:
        return self.config.file_cache and self._cache.has(entry.sha256)

    def file_prefetched(self, entry: FileEntry, data: bytes) -> None:
        """File a prefetched download not verified yet, if it hashes to *entry*'s
        digest: the disk cache is content-addressed and untrusted, so the copy
        is verified like any other when it is read back."""
        if self.config.file_cache and hashlib.sha256(data).hexdigest() == entry.sha256:
            self._cache.put(entry.sha256, data)


class ByteSources:
    """The chain of sources of one tree's files, and the one check on what they offer."""

    def __init__(
        self,
        tree: TreeContext,
        *,
        bundle: ReleaseBundle,
        prefetcher: Prefetcher,
        store: Store,
    ) -> None:
        self.tree = tree
        self.bundle = bundle
        self.store = store
        self._prefetcher = prefetcher

    def read_entry(self, manifest: Manifest, entry: FileEntry) -> bytes:
        """The verified bytes of *entry* of *manifest*, from the first source
        whose offer verifies; raises if no mirror's download does."""
        kept = self.store.recall(entry)
        if kept is not None:
            return kept
        url = url_in_tree(self.tree.url, entry.path)
        # Every source within one timeout per source (deadline.import_step).
        with import_step(self.tree.config.timeout):
            offer = self._first_verified(self._at_hand(entry, manifest, url), entry, manifest)
            if offer is None:
                offer = self._downloaded(entry, manifest)
        self.store.keep(entry, offer)
        return offer.data

    def _first_verified(
        self, offers: Iterator[Offer], entry: FileEntry, manifest: Manifest
    ) -> Offer | None:
        """The first of *offers* that is exactly the file the manifest signs at
        *entry* (the one place bytes are verified); None if none is."""
        for offer in offers:
            try:
                keys = release_keys(manifest, url=offer.url)
                verify_file(entry, offer.data, manifest, keys, url=offer.url)
            except SecureImportError as exc:
                offer.reject(exc)
                continue
            if offer.source == "bundle":
                log.debug("verified %s (from the bundle)", offer.url)
            elif offer.source == "cache":
                log.debug("verified cached copy of %s", offer.url)
            else:
                log.debug("verified %s (%d bytes)", offer.url, len(offer.data))
            return offer
        return None

    # -- the sources at hand, cheapest first: no request unless the bundle is missing

    def _at_hand(self, entry: FileEntry, manifest: Manifest, url: str) -> Iterator[Offer]:
        yield from self._from_bundle(entry, manifest, url, download=False)
        yield from self._cached_copy(entry, url)
        yield from self._from_bundle(entry, manifest, url, download=True)

    def _from_bundle(
        self, entry: FileEntry, manifest: Manifest, url: str, *, download: bool
    ) -> Iterator[Offer]:
        """*entry*'s member of the release's bundle, if it has one."""
        bundle = self.bundle.get(manifest, download=download)
        if (
            bundle is None
            or entry.path not in bundle
            or entry.size > self.tree.config.max_file_bytes
        ):
            return  # (an oversized file is refused by the download that follows)

        def reject(exc: SecureImportError) -> None:
            # Stale or tampered: only speed is lost.  Stop using it.
            log.warning(
                "the bundle of %s does not match its manifest (%s); downloading "
                "files one by one (re-publish the bundle with the manifest)",
                self.tree.url,
                exc,
            )
            self.bundle.disable(manifest)

        yield Offer(bundle.member(entry.path), url, "bundle", reject)

    def _cached_copy(self, entry: FileEntry, url: str) -> Iterator[Offer]:
        """The disk cache's copy of *entry*, if there is one."""
        if not self.tree.config.file_cache:
            return
        data = self.tree.cache.get(entry.sha256, download_limit(entry, self.tree.config))
        if data is None:
            return

        def reject(exc: SecureImportError) -> None:
            # The cache is untrusted input: a bad copy is dropped, never run.
            log.warning("discarding the cached copy of %s, which does not verify: %s", url, exc)
            self.tree.cache.discard(entry.sha256)

        yield Offer(data, url, "cache", reject)

    # -- the network: each mirror in turn

    def _downloaded(self, entry: FileEntry, manifest: Manifest) -> Offer:
        """A download of *entry* that verifies, from each mirror in turn if need be."""
        future = self._prefetcher.take(entry.sha256)

        def attempt(base: str) -> Offer:
            nonlocal future
            offers = self._from_network(entry, url_in_tree(base, entry.path), future)
            future = None  # a prefetch serves one attempt only
            offer = self._first_verified(offers, entry, manifest)
            assert offer is not None  # the last offer's reject raises
            return offer

        return self.tree.sources.first_success(attempt, what=url_in_tree(self.tree.url, entry.path))

    def _from_network(
        self, entry: FileEntry, url: str, future: Future[bytes] | None
    ) -> Iterator[Offer]:
        """The download of *entry* at *url* (prefetched, or made now); if that
        does not match its digest, the same asked for past the caches."""
        last_try = False

        def reject(exc: SecureImportError) -> None:
            exc.path = url
            log.debug("refused %s: %s", url, exc)
            if not isinstance(exc, TamperedFileError):
                raise exc
            if last_try:
                raise _past_caches(exc)
            # Perhaps a CDN edge or proxy still holds the previous release's
            # copy: ask once more, past the caches, and verify that.
            log.debug("%s does not match the manifest; asking again past caches", url)

        limit = download_limit(entry, self.tree.config)
        try:
            yield Offer(self._prefetched_or_downloaded(future, entry, url), url, "network", reject)
        except ResponseTooLargeError as exc:
            if limit < entry.size:
                raise  # over max_file_bytes: as large past the caches
            # Longer than the manifest signs: as likely a cache's copy of the
            # previous release as one that differs in its bytes.
            log.debug("refused %s: %s; asking again past caches", url, exc)
        last_try = True
        yield Offer(self.tree.fetcher.fetch_fresh(url, max_bytes=limit), url, "network", reject)

    def _prefetched_or_downloaded(
        self, future: Future[bytes] | None, entry: FileEntry, url: str
    ) -> bytes:
        if future is not None:
            try:
                return future.result(timeout=budget_left(self.tree.config.timeout * 2))
            except SecureImportError as exc:
                # The download's own error (already past its deadline): asking
                # a failing server again would only double the wait.
                raise exc.with_traceback(None) from None
            except Exception as exc:  # not a download error: try once more here
                log.debug("prefetch of %s failed (%r); downloading it again", url, exc)
        return self.tree.fetcher.fetch(url, max_bytes=download_limit(entry, self.tree.config))


def _past_caches(exc: TamperedFileError) -> TamperedFileError:
    """*exc*, saying that the file was asked for past the caches too."""
    exc.msg = (
        f"{exc.msg} (asked for again with Cache-Control: no-cache, with the same result; "
        "if a CDN or proxy that ignores no-cache is in front of the server, it may still "
        "serve another release's copy until its cache expires: purge it)"
    )
    exc.args = (exc.msg,)
    return exc
