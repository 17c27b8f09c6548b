"""One trusted remote tree: its URL, pinned keys, verified manifest and verified bytes.

The keys pinned are the signing keys (``pubkey=``) or the root keys
(``root=``, whose chain ``root_walk.py`` walks before each manifest fetch).

This is where network meets verification, as a small facade over four parts:
the current manifest (``current.py``, whose trust rules are
``_trust/trusted_set.py``), the chain of byte sources that offer a file's bytes and
the one check and store they pass (``sources.py``), the bundle of the
release (``bundle.py``) and the prefetch (``prefetching.py``).  Finders
and loaders ask a :class:`RemoteTree` for the manifest and for file bytes;
everything it hands out has passed ``verify``.  Trees live in the registry
(``_import/registry.py``), not in finder objects, because ``importlib.invalidate_caches()``
throws URL path finders away.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence

from .._format.keys import TrustedKeys
from .._format.manifest import FileEntry, Manifest
from .._format.paths import url_in_tree
from .._net.fetcher import Fetcher
from .._net.mirrors import Mirrors
from .._net.prefetch import Prefetcher
from .._net.transport import require_https
from .._store.bytecode import BytecodeCache, slot_digests
from .._store.cache import FileCache
from .._store.memo import ManifestMemoFile
from .._store.privatedir import client_state_dir
from .._store.state import StateStore
from ..config import Config
from ..errors import ConfigurationError, NotInManifestError, SecureImportError
from .bundle import ReleaseBundle
from .context import TreeContext
from .current import CurrentManifest
from .prefetching import TreePrefetch
from .shards import ShardStore, TreeIndex
from .sources import ByteSources, Store

__all__ = ["RemoteTree", "normalize_url"]

log = logging.getLogger("secure_urlimport")


def normalize_url(url: str) -> str:
    """The canonical form of a tree URL: https only, lower-case host, no default
    port, no trailing slash; no ``.``/``..``/empty or escaped-slash segments, which
    would let a prefix pinned for one path reach another."""
    url = require_https(str(url))
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    segments = path.split("/")[1:]
    if (
        parts.query
        or parts.fragment
        or any(
            s in ("", ".", "..") or "%2e" in s.lower() or "%2f" in s.lower() or "%5c" in s.lower()
            for s in segments
        )
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
    """A signed tree at an https URL, verified against pinned keys (*trusted*)
    or against the keys its root chain names (*root_pin*: the root keys)."""

    def __init__(
        self,
        url: str,
        trusted: TrustedKeys | None,
        config: Config,
        fetcher: Fetcher | None = None,
        mirrors: Sequence[str] = (),
        *,
        root_pin: TrustedKeys | None = None,
    ) -> None:
        if (trusted is None) == (root_pin is None):
            raise ConfigurationError(
                "a tree is pinned by its signing keys (pubkey=) or by its root keys "
                "(root=): give exactly one"
            )
        self.url = normalize_url(url)
        #: Where the bytes come from: this URL, then any mirrors (mirrors.py).
        self.sources = Mirrors([self.url, *(normalize_url(m) for m in mirrors)])
        self.trusted = trusted
        self.root_pin = root_pin
        self.config = config
        if fetcher is None:
            from .._net.transport import RequestsFetcher

            fetcher = RequestsFetcher(config)
        self.fetcher = fetcher
        state_dir = client_state_dir(config, self.url)  # refused if others can write it
        #: This tree's client-state directory (the extension modules' copies live there).
        self.state_dir = state_dir
        # Each part keeps its own state; only `current` has a lock (see there).
        tree = TreeContext(
            self.url, trusted, config, fetcher, self.sources, FileCache(state_dir), root_pin
        )
        self.current = CurrentManifest(tree, StateStore(state_dir))
        self.bundle = ReleaseBundle(tree)
        #: The shards of sharded releases (format 2), by digest (shards.py).
        self.shards = ShardStore(tree)
        self._index: TreeIndex | None = None
        self.store = Store(config, tree.cache)
        self._prefetcher = Prefetcher(config.parallel_downloads)
        self.chain = ByteSources(
            tree, bundle=self.bundle, prefetcher=self._prefetcher, store=self.store
        )
        self.prefetching = TreePrefetch(
            tree, bundle=self.bundle, store=self.store, prefetcher=self._prefetcher
        )
        #: Compiled code of verified modules (bytecode.py); the loader's to use.
        # Only with the file cache: tracebacks and getsource() then read the
        # verified source from disk, never from the network.
        self.bytecode = BytecodeCache(
            state_dir, self.url, enabled=config.bytecode_cache and config.file_cache
        )
        self.bytecode.live_slots = lambda: slot_digests(
            (self.file_url(path), entry.sha256)
            for path, entry in self._live_entries()
            if path.endswith(".py")
        )
        self.bytecode.live_count = self._live_count
        self.memo = ManifestMemoFile(state_dir, self.url, self.bytecode.mac_key)
        self.current.memo = self.memo

    def __repr__(self) -> str:
        if self.root_pin is not None:
            return f"<RemoteTree {self.url} root={','.join(self.root_pin.keyids)}>"
        assert self.trusted is not None
        return f"<RemoteTree {self.url} keys={','.join(self.trusted.keyids)}>"

    # -- manifest (current.py) -------------------------------------------

    @property
    def last_good(self) -> Manifest | None:
        """The newest manifest that verified, even if a later refresh failed."""
        return self.current.last_good

    def busy_in_this_thread(self) -> bool:
        """True while this thread is fetching this tree's manifest or a shard."""
        return self.current.busy_in_this_thread() or self.shards.busy_in_this_thread()

    def manifest(self) -> Manifest:
        """The verified manifest, fetched once and again after :meth:`mark_stale`
        or when it expires; a failure is re-raised until ``mark_stale``."""
        return self.current.get()

    def mark_stale(self) -> None:
        """Fetch the manifest again on next use (``importlib.invalidate_caches``)."""
        self.current.mark_stale()

    def newer_release_past_caches(self, manifest: Manifest) -> bool:
        """After a file of *manifest* did not verify even past the caches: is
        there a newer release?  The manifest is fetched again past the caches
        (a cache may have served an old one while the file is new); a newer
        release becomes current.  Only while no file of this tree was read in
        this process, so that two releases are never mixed in one."""
        if self.store.used:
            return False
        try:
            newer = self.current.get(past_caches=True)
        except SecureImportError as exc:
            log.debug("no newer release of %s past the caches: %s", self.url, exc)
            return False
        if newer.version <= manifest.version:
            return False
        log.warning(
            "%s: the manifest a cache served (version %d) is older than the files; "
            "using version %d, fetched past the caches",
            self.url,
            manifest.version,
            newer.version,
        )
        return True

    # -- files (sources.py, prefetching.py) ----------------------------

    def file_url(self, relpath: str, base: str | None = None) -> str:
        """The URL of *relpath* in this tree (or at the mirror *base*)."""
        return url_in_tree(base or self.url, relpath)

    def index(self) -> TreeIndex:
        """The entries and directories of the current release (shards.py)."""
        return self.index_of(self.manifest())

    def index_of(self, manifest: Manifest) -> TreeIndex:
        """The index of *manifest* (a verified release of this tree), kept while current."""
        index = self._index
        if index is None or index.manifest is not manifest:
            index = self._index = TreeIndex(manifest, self.shards)
        return index

    def _live_entries(self) -> list[tuple[str, FileEntry]]:
        """The entries of the newest release at hand (for the bytecode cache)."""
        last = self.last_good
        if last is None:
            return []
        return [(entry.path, entry) for entry in self.index_of(last).loaded_entries()]

    def _live_count(self) -> int:
        last = self.last_good
        if last is None:
            return 0
        return sum(
            1 for entry in self.index_of(last).loaded_entries() if entry.path.endswith(".py")
        )

    def lookup(self, relpath: str) -> tuple[Manifest, FileEntry]:
        """The verified manifest and its entry for *relpath* (which may read a shard)."""
        manifest = self.manifest()
        entry = self.index_of(manifest).get(relpath)
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
        return self.chain.read_entry(manifest, entry)

    def prefetch(self, directory: str, *, recursive: bool, skip: str = "") -> None:
        """Start downloading the modules in *directory* (tree-relative, '' for
        the root) that are neither verified nor cached yet, except *skip*
        (the caller's own file, which it is about to download itself)."""
        self.prefetching.prefetch(self.manifest, directory, recursive=recursive, skip=skip)

    def relpath_of(self, location: str) -> str | None:
        """The tree path of a URL (or ``os.path.join``-built path) under this tree.

        The text after the tree URL is taken as it is; it is un-escaped only if
        it is exactly how :meth:`file_url` spells that path.
        """
        prefix = self.url + "/"
        if not location.startswith(prefix):
            return None
        rest = location[len(prefix) :]
        if "%" in rest:
            unquoted = urllib.parse.unquote(rest)
            if self.file_url(unquoted) == location:
                return unquoted
        return rest

    def save_caches(self) -> None:  # what this process added to the bytecode and memo
        self.bytecode.flush()
        self.memo.flush()

    def close(self) -> None:
        self.save_caches()
        self._prefetcher.close()
        self.fetcher.close()
