"""A tree's file entries, looked up in the shards of a format-2 manifest (issue #14).

:class:`ShardStore` holds one tree's shards by digest: from memory, the disk
cache (content-addressed, untrusted: checked against the pin again) or the
network (``{base}/secure-urlimport.shards/<sha256>``, each mirror in turn,
asked once more past the caches if the bytes do not match the pin).  Every
shard is checked by ``_trust/shards.py`` against the verified manifest that
pins it before an entry of it is used; a shard of the same digest kept from
an earlier release is checked against the new release's range again.

:class:`TreeIndex` answers what finders, loaders and resources ask of a
release -- the entry of a path, is this a directory, what is in it -- from
the manifest itself (format 1, or format 2 without shards) or from the few
shards the question touches: a single import reads the index and one shard.

No lock is held while downloading (a thread waiting for it could hold the
global import lock that the download's own lazy imports need): two threads
may both fetch a shard the first time, and the first verified copy is kept.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .. import forksafe
from .._format.dirindex import DirectoryIndex
from .._format.entry import FileEntry
from .._format.manifest import Manifest
from .._format.paths import url_in_tree
from .._format.shard import ShardRef, parse_shard_body
from .._net.deadline import import_step
from .._trust.shards import check_shard_digest, check_shard_range
from ..errors import ResponseTooLargeError, SecureImportError, TamperedFileError
from .context import TreeContext

__all__ = ["Shard", "ShardStore", "TreeIndex"]

log = logging.getLogger("secure_urlimport")


@dataclass(frozen=True)
class Shard:
    """The parsed entries of one shard whose bytes matched their pin."""

    entries: Mapping[str, FileEntry] = field(default_factory=dict)

    @cached_property
    def directories(self) -> DirectoryIndex:
        return DirectoryIndex(self.entries)


class ShardStore:
    """The shards of one tree, by digest: memory, then disk cache, then network."""

    def __init__(self, tree: TreeContext) -> None:
        self.tree = tree
        self._lock = forksafe.Lock()  # guards _by_digest only; never held while fetching
        self._by_digest: dict[str, Shard] = {}
        self._fetching = threading.local()
        #: How many shards this process downloaded (tests and benchmarks read it).
        self.downloads = 0

    def busy_in_this_thread(self) -> bool:
        """True while this thread downloads a shard (its lazy imports are not ours)."""
        return bool(getattr(self._fetching, "active", False))

    def get(self, manifest: Manifest, index: int) -> Shard:
        """Shard *index* of *manifest*, checked against its pin and range; raises if
        no source has it."""
        ref = manifest.shards[index]
        url = url_in_tree(self.tree.url, ref.path)
        with self._lock:
            shard = self._by_digest.get(ref.sha256)
        if shard is None:
            self._fetching.active = True
            try:
                shard = Shard(self._parsed(self._bytes(ref), url))
            finally:
                self._fetching.active = False
            with self._lock:
                shard = self._by_digest.setdefault(ref.sha256, shard)
        check_shard_range(shard.entries, manifest, index, url=url)
        return shard

    @staticmethod
    def _parsed(data: bytes, url: str) -> dict[str, FileEntry]:
        try:
            return parse_shard_body(data)
        except SecureImportError as exc:
            exc.path = url
            raise

    def _bytes(self, ref: ShardRef) -> bytes:
        """The pinned bytes of *ref*: the disk cache's copy if it matches, else a download."""
        cache = self.tree.cache if self.tree.config.file_cache else None
        if cache is not None:
            data = cache.get(ref.sha256, ref.size)
            if data is not None:
                try:
                    check_shard_digest(data, ref, url=ref.path)
                    log.debug("using the cached shard %s", ref.sha256)
                    return data
                except TamperedFileError:
                    log.warning("discarding the cached shard %s, which does not match", ref.sha256)
                    cache.discard(ref.sha256)
        with import_step(self.tree.config.timeout):
            data = self.tree.sources.first_success(
                lambda base: self._download(ref, url_in_tree(base, ref.path)),
                what=url_in_tree(self.tree.url, ref.path),
            )
        self.downloads += 1
        if cache is not None:
            cache.put(ref.sha256, data)
        return data

    def _download(self, ref: ShardRef, url: str) -> bytes:
        """The shard at *url* if it is the pinned one; asked once more past the
        caches if not (a stale CDN edge), then refused."""
        try:
            data = self.tree.fetcher.fetch(url, max_bytes=ref.size)
            check_shard_digest(data, ref, url=url)
            return data
        except (TamperedFileError, ResponseTooLargeError) as exc:
            log.debug("%s is not the pinned shard (%s); asking again past caches", url, exc)
        data = self.tree.fetcher.fetch_fresh(url, max_bytes=ref.size)
        try:
            check_shard_digest(data, ref, url=url)
        except SecureImportError as exc:
            exc.path = url
            raise
        log.debug("downloaded shard %s (%d bytes)", url, len(data))
        return data


def _after(prefix: str) -> str:
    return prefix[:-1] + "0"  # see dirindex.py: the first string past every prefix+...


class TreeIndex:
    """The entries and directories of one verified release (inline or sharded)."""

    def __init__(self, manifest: Manifest, store: ShardStore) -> None:
        self.manifest = manifest
        self._store = store
        self._firsts = [ref.first for ref in manifest.shards]
        self._shards: dict[int, Shard] = {}

    @property
    def sharded(self) -> bool:
        return bool(self.manifest.shards)

    def _shard(self, index: int) -> Shard:
        shard = self._shards.get(index)
        if shard is None:
            shard = self._shards[index] = self._store.get(self.manifest, index)
        return shard

    def get(self, path: str) -> FileEntry | None:
        """The entry of *path*, or None if the release has no such file."""
        if not self.sharded:
            return self.manifest.files.get(path)
        index = bisect.bisect_right(self._firsts, path) - 1
        return self._shard(index).entries.get(path) if index >= 0 else None

    def is_file(self, path: str) -> bool:
        return self.get(path) is not None

    def _covering(self, directory: str) -> range:
        """The shards whose ranges meet the paths below *directory*."""
        if not directory:
            return range(len(self._firsts))
        prefix = f"{directory}/"
        low = max(bisect.bisect_right(self._firsts, prefix) - 1, 0)
        return range(low, bisect.bisect_left(self._firsts, _after(prefix)))

    def is_dir(self, directory: str) -> bool:
        """Does a file of the release live below *directory* (``""``: the root)?"""
        if not self.sharded:
            return directory in self.manifest.directories
        if not directory:
            return True
        prefix = f"{directory}/"
        later = bisect.bisect_left(self._firsts, prefix)
        if later < len(self._firsts) and self._firsts[later] < _after(prefix):
            return True  # a shard's first path (a file of the tree) is below it
        return later > 0 and directory in self._shard(later - 1).directories

    def children(self, directory: str) -> list[str]:
        """Names directly inside *directory*, sorted (reads the shards it spans)."""
        if not self.sharded:
            return self.manifest.children(directory)
        names: set[str] = set()
        for index in self._covering(directory):
            names.update(self._shard(index).directories.children(directory))
        return sorted(names)

    def files_below(self, directory: str, *, recursive: bool) -> Iterator[str]:
        if not self.sharded:
            yield from self.manifest.directories.files_below(directory, recursive=recursive)
            return
        for index in self._covering(directory):
            yield from self._shard(index).directories.files_below(directory, recursive=recursive)

    def loaded_entries(self) -> Iterator[FileEntry]:
        """The entries at hand without a download: every one inline, else those
        of the shards read so far."""
        if not self.sharded:
            return iter(self.manifest.files.values())
        shards = list(self._shards.values())
        return itertools.chain.from_iterable(s.entries.values() for s in shards)
