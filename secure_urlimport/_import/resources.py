"""``importlib.resources`` support: a read-only Traversable over a signed tree.

What exists is answered from the verified manifest (or its shards); every byte read comes
from ``RemoteTree.read`` and so is verified.
"""

from __future__ import annotations

import errno
import io
import os
import urllib.parse
from collections.abc import Iterator
from importlib.resources.abc import Traversable, TraversableResources
from typing import IO, Any

from .._client.remote import RemoteTree

__all__ = ["RemoteResourceReader", "RemoteTraversable"]


class RemoteTraversable(Traversable):
    """A file or directory of a :class:`RemoteTree` (``""`` is the tree root)."""

    def __init__(self, tree: RemoteTree, relpath: str) -> None:
        self._tree = tree
        self._relpath = relpath

    def __repr__(self) -> str:
        return f"<RemoteTraversable {self._tree.file_url(self._relpath)}>"

    def __str__(self) -> str:
        return self._tree.file_url(self._relpath)

    @property
    def name(self) -> str:
        if self._relpath:
            return self._relpath.rpartition("/")[2]
        # The tree root: as_file() makes a directory of this name, so not "".
        parts = urllib.parse.urlsplit(self._tree.url)
        return parts.path.rpartition("/")[2] or parts.hostname or "tree"

    def is_dir(self) -> bool:
        return self._tree.index().is_dir(self._relpath)

    def is_file(self) -> bool:
        return self._tree.index().is_file(self._relpath)

    def iterdir(self) -> Iterator[RemoteTraversable]:
        if not self.is_dir():
            raise NotADirectoryError(str(self))
        for name in self._tree.index().children(self._relpath):
            yield self._child(name)

    def _child(self, name: str) -> RemoteTraversable:
        return RemoteTraversable(self._tree, f"{self._relpath}/{name}" if self._relpath else name)

    def joinpath(self, *descendants: str | os.PathLike[str]) -> RemoteTraversable:
        node = self
        for descendant in descendants:
            if os.fspath(descendant).startswith("/"):
                raise ValueError(f"absolute path {descendant!r} given to joinpath")
            for part in os.fspath(descendant).split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    # Traversables have no parent; refuse rather than escape the tree.
                    raise ValueError(f"'..' is not supported in {descendant!r}")
                node = node._child(part)
        return node

    def __truediv__(self, child: str | os.PathLike[str]) -> RemoteTraversable:
        return self.joinpath(child)

    def read_bytes(self) -> bytes:
        if not self.is_file():
            if self.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(self))
            raise FileNotFoundError(errno.ENOENT, "not a file of the signed tree", str(self))
        return self._tree.read(self._relpath)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        # Through open(): universal newlines, as Path.read_text() does.
        with self.open("r", encoding=encoding, errors=errors) as handle:
            return str(handle.read())

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"remote resources are read-only, mode {mode!r} not supported")
        data = io.BytesIO(self.read_bytes())
        if "b" in mode:
            return data
        if kwargs.get("encoding") is None:
            kwargs["encoding"] = "utf-8"
        return io.TextIOWrapper(data, *args, **kwargs)


class RemoteResourceReader(TraversableResources):
    """What ``loader.get_resource_reader()`` returns: the files of one directory."""

    def __init__(self, tree: RemoteTree, directory: str) -> None:
        self._root = RemoteTraversable(tree, directory)

    def files(self) -> RemoteTraversable:
        return self._root
