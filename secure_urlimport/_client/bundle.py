"""The bundle of the release a tree uses: from memory, the disk cache or the server.

One answer per release (per manifest digest): the bundle, or None when there
is none to use (no modules, over ``max_bundle_bytes``, missing, incomplete, or
disabled because a member did not verify).  Nothing here is trusted or
verified: the chain of byte sources (``sources.py``) offers the members,
and ``ByteSources._first_verified`` (sources.py) checks each one against its
manifest entry.
"""

from __future__ import annotations

import logging

from .._format.bundle import Bundle, bundle_members
from .._format.manifest import FileEntry, Manifest
from .._format.paths import BUNDLE_NAME, url_in_tree
from .._net.deadline import source_budget
from ..errors import SecureImportError
from .context import TreeContext

__all__ = ["ReleaseBundle"]

log = logging.getLogger("secure_urlimport")


class ReleaseBundle:
    """The bundle of one tree's current release, looked for at most once per release."""

    def __init__(self, tree: TreeContext) -> None:
        self.tree = tree
        # (manifest digest, its bundle or None, whether that answer is final)
        self._state: tuple[str, Bundle | None, bool] | None = None

    def get(self, manifest: Manifest, *, download: bool) -> Bundle | None:
        """The bundle of this release, from memory or the disk cache, or with
        *download* from the server (tried once per release); None if there is
        none to use."""
        digest = manifest.digest
        state = self._state
        if state is not None and state[0] == digest and (state[2] or not download):
            return state[1]
        members = bundle_members(manifest.files)
        size = sum(entry.size for entry in members)
        if not members or size > self.tree.config.max_bundle_bytes:
            self._state = (digest, None, True)
            return None
        if state is None or state[0] != digest:  # first look: the disk cache only
            data = self.tree.cache.get_bundle(digest, size) if self.tree.config.file_cache else None
            if data is not None:
                log.debug("using the cached bundle of %s", self.tree.url)
            cached = Bundle(data, members) if data is not None else None
            self._state = (digest, cached, cached is not None)
            if cached is not None or not download:
                return cached
        bundle = self._download(digest, members, size)
        self._state = (digest, bundle, True)
        return bundle

    def disable(self, manifest: Manifest) -> None:
        """Stop using the bundle of this release (a member did not verify) and
        drop its cached copy: only speed is lost."""
        self._state = (manifest.digest, None, True)
        self.tree.cache.discard_bundle(manifest.digest)

    def _download(self, digest: str, members: list[FileEntry], size: int) -> Bundle | None:
        url = url_in_tree(self.tree.sources.active, BUNDLE_NAME)
        try:
            with source_budget(self.tree.sources.active):  # shares the file's bound
                data = self.tree.fetcher.fetch(url, max_bytes=size)
        except SecureImportError as exc:
            log.debug("no usable bundle at %s (%s); downloading files one by one", url, exc)
            return None
        bundle = Bundle(data, members)
        if not bundle.complete:
            log.warning(
                "the bundle at %s is %d bytes, not the %d its manifest implies; "
                "downloading files one by one",
                url,
                len(data),
                size,
            )
            return None
        if self.tree.config.file_cache:
            self.tree.cache.put_bundle(digest, data)
        log.debug(
            "downloaded the bundle of %s: %d modules, %d bytes", self.tree.url, len(members), size
        )
        return bundle
