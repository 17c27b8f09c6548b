"""Which of a tree's modules to download ahead of their import, and how.

When a package starts executing, its modules that are neither verified, nor
cached, nor in a bundle are put on the tree's :class:`~.._net.prefetch.Prefetcher`.
Nothing is verified here: the chain of byte sources (``sources.py``)
takes the prefetched bytes from their future and offers them like a download.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from .._format.manifest import FileEntry, Manifest
from .._format.paths import url_in_tree
from .._net.prefetch import Prefetcher
from ..errors import SecureImportError
from .bundle import ReleaseBundle
from .context import TreeContext
from .sources import Store, download_limit

__all__ = ["TreePrefetch"]

log = logging.getLogger("secure_urlimport")


class TreePrefetch:
    """Starts background downloads of a directory's modules, once per directory."""

    def __init__(
        self,
        tree: TreeContext,
        *,
        bundle: ReleaseBundle,
        store: Store,
        prefetcher: Prefetcher,
    ) -> None:
        self.tree = tree
        self.bundle = bundle
        self.store = store
        self.prefetcher = prefetcher
        self._dirs: set[tuple[str, bool]] = set()

    def prefetch(
        self,
        manifest_of: Callable[[], Manifest],
        directory: str,
        *,
        recursive: bool,
        skip: str = "",
    ) -> None:
        """See :meth:`RemoteTree.prefetch`; *manifest_of* gives the current manifest."""
        if self.tree.config.parallel_downloads < 1:
            return
        key = (directory, recursive)
        if key in self._dirs:
            return
        self._dirs.add(key)
        try:
            manifest = manifest_of()
        except SecureImportError:
            return
        if manifest.shards:
            # A sharded tree is big, and its modules come one by one: fetching a
            # package's siblings ahead would make a single import cost the
            # whole package (issue #14: cost follows use).
            return
        if self.bundle.get(manifest, download=False) is not None:
            return  # every module is at hand already
        wanted = [e for e in self._prefetchable(manifest, directory, recursive) if e.path != skip]
        if not wanted or self.bundle.get(manifest, download=True) is not None:
            return  # nothing to fetch, or every module is in the bundle
        jobs = [(e.sha256, functools.partial(self._download_for_cache, e)) for e in wanted]
        started = self.prefetcher.start(jobs)
        if started:
            log.debug("prefetching %d module(s) of %s/%s", started, self.tree.url, directory)

    def _prefetchable(self, manifest: Manifest, directory: str, recursive: bool) -> list[FileEntry]:
        budget = self.tree.config.max_file_bytes
        found = []
        # From the index: a package deep in a big tree does not scan every path.
        for path in manifest.directories.files_below(directory, recursive=recursive):
            entry = manifest.files[path]
            if not path.endswith(".py") or path in self.store or entry.size > budget:
                continue
            if self.prefetcher.scheduled(entry.sha256):
                continue
            if self.store.on_disk(entry):
                continue
            budget -= entry.size
            found.append(entry)
        return found

    def _download_for_cache(self, entry: FileEntry) -> bytes:
        """Runs on a prefetch thread: download, and file in the cache if the digest matches."""
        url = url_in_tree(self.tree.sources.active, entry.path)
        data = self.tree.fetcher.fetch(url, max_bytes=download_limit(entry, self.tree.config))
        self.store.file_prefetched(entry, data)
        return data
