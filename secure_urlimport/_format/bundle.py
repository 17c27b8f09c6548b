"""The bundle: every module of a tree in one file, so a cold import is one download.

``secure-urlimport.bundle`` sits beside the manifest and holds the bytes of
every ``.py`` file the manifest lists, concatenated in path order.  It has no
header and is not signed itself: the signed manifest already gives each
member's path, size and SHA-256, which fixes where each member starts, and
every member is verified (size, SHA-256, Ed25519) before it is used, exactly
like a file downloaded on its own.  A missing, stale or tampered bundle
therefore costs only speed: the client falls back to one download per file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from .manifest import FileEntry
from .paths import BUNDLE_NAME

__all__ = ["BUNDLE_NAME", "Bundle", "build_bundle", "bundle_members"]


def bundle_members(files: Mapping[str, FileEntry]) -> list[FileEntry]:
    """The entries a bundle holds, in the order it holds them."""
    return [files[path] for path in sorted(files) if path.endswith(".py")]


def build_bundle(members: Iterable[FileEntry], contents: Mapping[str, bytes]) -> bytes:
    """The bundle of *members*, given each one's bytes by path (for the signer)."""
    return b"".join(contents[entry.path] for entry in members)


class Bundle:
    """A downloaded bundle, cut into members by the sizes the manifest signs.

    Nothing here is trusted: :meth:`member` hands out bytes that the caller
    verifies against the member's manifest entry.
    """

    def __init__(self, data: bytes, members: Iterable[FileEntry]) -> None:
        self.data = data
        self._spans: dict[str, tuple[int, int]] = {}
        self._digests: dict[str, str] = {}
        offset = 0
        for entry in members:
            self._spans[entry.path] = (offset, offset + entry.size)
            self._digests[entry.path] = entry.sha256
            offset += entry.size
        self.size = offset

    def __repr__(self) -> str:
        return f"<Bundle {len(self._spans)} members, {len(self.data)} bytes>"

    @property
    def complete(self) -> bool:
        """True if the data is exactly as long as the members' signed sizes."""
        return len(self.data) == self.size

    def first_difference(self) -> str | None:
        """Where the data stops holding the members' signed bytes, or None if it
        holds exactly them (for the gate; clients verify each member anyway)."""
        if not self.complete:
            return f"it is {len(self.data)} bytes, not {self.size}"
        for path, (start, end) in self._spans.items():
            if hashlib.sha256(self.data[start:end]).hexdigest() != self._digests[path]:
                return f"from {path} on"
        return None

    def __contains__(self, path: object) -> bool:
        return path in self._spans

    def member(self, path: str) -> bytes:
        start, end = self._spans[path]
        return self.data[start:end]
