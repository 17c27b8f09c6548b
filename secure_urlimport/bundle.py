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

from collections.abc import Iterable, Mapping
from pathlib import Path

from .manifest import FileEntry
from .paths import BUNDLE_NAME

__all__ = ["BUNDLE_NAME", "Bundle", "build_bundle", "bundle_members"]


def bundle_members(files: Mapping[str, FileEntry]) -> list[FileEntry]:
    """The entries a bundle holds, in the order it holds them."""
    return [files[path] for path in sorted(files) if path.endswith(".py")]


def build_bundle(root: Path, members: Iterable[FileEntry]) -> bytes:
    """The bundle of the files under *root* (for the signer)."""
    return b"".join((root / entry.path).read_bytes() for entry in members)


class Bundle:
    """A downloaded bundle, cut into members by the sizes the manifest signs.

    Nothing here is trusted: :meth:`member` hands out bytes that the caller
    verifies against the member's manifest entry.
    """

    def __init__(self, data: bytes, members: Iterable[FileEntry]) -> None:
        self.data = data
        self._spans: dict[str, tuple[int, int]] = {}
        offset = 0
        for entry in members:
            self._spans[entry.path] = (offset, offset + entry.size)
            offset += entry.size
        self.size = offset

    def __repr__(self) -> str:
        return f"<Bundle {len(self._spans)} members, {len(self.data)} bytes>"

    @property
    def complete(self) -> bool:
        """True if the data is exactly as long as the members' signed sizes."""
        return len(self.data) == self.size

    def __contains__(self, path: object) -> bool:
        return path in self._spans

    def member(self, path: str) -> bytes:
        start, end = self._spans[path]
        return self.data[start:end]
