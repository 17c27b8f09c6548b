"""The directory structure of a manifest, answered from its sorted file paths.

Finders ask "is ``base`` a directory of the tree?" for every name they look
up, under the global import lock.  Materialising every directory as a string
costs the sum of all prefix lengths: quadratic in the depth (10,000 files
under a 500-level directory took 20 s).  Here the only structure is the list
of file paths in sorted order, which is built in O(n log n) comparisons (O(n)
for the sorted order ``sign`` writes) and holds one pointer per file.  Every
path below a directory ``d`` sorts in the half-open range ``[d + "/", d + "0")``
(``"0"`` is the code point after ``"/"``), so a question about ``d`` is one or
two binary searches, whatever the depth.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import TypeVar

__all__ = ["DirectoryIndex"]

_S = TypeVar("_S")


def _prefix(directory: str) -> str:
    return f"{directory}/" if directory else ""


def _after(prefix: str) -> str:
    """``"a/"`` -> ``"a0"``: strings that start with *prefix* sort below it, and every
    other string that sorts after *prefix* sorts at or after it."""
    return prefix[:-1] + "0"


class DirectoryIndex(AbstractSet[str]):
    """The directories of a set of ``/``-separated file paths (``""`` is the root).

    A read-only set: ``"pkg/data" in index`` costs two binary searches.
    Iterating lists every directory and is meant for tests and tools, not for
    the import path.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = sorted(paths)

    def _range(self, prefix: str, lo: int = 0) -> tuple[int, int]:
        """The slice of sorted paths that start with *prefix*."""
        if not prefix:
            return 0, len(self._paths)
        start = bisect.bisect_left(self._paths, prefix, lo)
        return start, bisect.bisect_left(self._paths, _after(prefix), start)

    def __contains__(self, directory: object) -> bool:
        if not isinstance(directory, str):
            return False
        if not directory:
            return True
        start, end = self._range(_prefix(directory))
        return start < end

    def files_below(self, directory: str, *, recursive: bool) -> Iterator[str]:
        """The file paths inside *directory*; with *recursive*, also in its subdirectories."""
        prefix = _prefix(directory)
        index, end = self._range(prefix)
        while index < end:
            path = self._paths[index]
            name, sep, _ = path[len(prefix) :].partition("/")
            if not sep or recursive:
                yield path
                index += 1
            else:  # skip the whole subdirectory in one search
                index = self._range(f"{prefix}{name}/", index)[1]

    def children(self, directory: str) -> list[str]:
        """Names directly inside *directory* (files and subdirectories), sorted."""
        prefix = _prefix(directory)
        names: set[str] = set()
        index, end = self._range(prefix)
        while index < end:
            name, sep, _ = self._paths[index][len(prefix) :].partition("/")
            names.add(name)
            # A subdirectory is skipped in one search, not walked file by file.
            index = self._range(f"{prefix}{name}/", index)[1] if sep else index + 1
        return sorted(names)

    def __iter__(self) -> Iterator[str]:
        pending = [""]
        while pending:
            directory = pending.pop()
            yield directory
            prefix = _prefix(directory)
            pending.extend(
                f"{prefix}{name}" for name in self.children(directory) if f"{prefix}{name}" in self
            )

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def _from_iterable(cls, it: Iterable[_S]) -> AbstractSet[_S]:
        # What the set operators (|, &, -) build: a plain set of directories,
        # not an index that would take them for file paths.
        return frozenset(it)

    def __repr__(self) -> str:
        return f"<DirectoryIndex of {len(self._paths)} file(s)>"
