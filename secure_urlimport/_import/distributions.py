"""``importlib.metadata`` for signed trees: distributions read from verified bytes only.

``importlib.metadata`` asks every ``sys.meta_path`` finder that has
``find_distributions``.  An ``install()``ed tree answers through its
:class:`~secure_urlimport._import.finder.Importer`; a pinned ``https://``
entry on ``sys.path`` through its path-entry finder, asked in ``sys.path``
order (``metadata_guard.py``).

Which ``*.dist-info`` (and ``*.egg-info``) directories exist comes from the
verified manifest (or its shards), and every byte of their files from
``RemoteTree.read``: a file the manifest does not list does not exist (as a
missing local file: ``read_text`` returns None), one that does not match it
raises ``TamperedFileError`` like a module would.

The standard finder must not read URL entries from local disk: see
``metadata_guard.py``.
"""

from __future__ import annotations

import copy
import io
import os
import posixpath
import re
from collections.abc import Iterator
from importlib.metadata import Distribution

from .._client.remote import RemoteTree
from ..errors import SecureImportError
from .resources import RemoteTraversable

__all__ = ["RemoteDistribution", "RemotePath", "find_distributions", "normalize"]

_INFO_SUFFIXES = (".dist-info", ".egg-info")


def normalize(name: str) -> str:
    """The name as ``importlib.metadata.Prepared.normalize`` spells it (PEP 503,
    then dashes as underscores): the key on which distributions are matched."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _name_of(info_name: str) -> str:
    """The normalised distribution name of ``Foo_Bar-1.0.dist-info``, as ``Lookup`` reads it."""
    return normalize(info_name.lower().rpartition(".")[0].partition("-")[0])


class RemotePath(RemoteTraversable):
    """A file or directory of a distribution: a :class:`RemoteTraversable` (as
    ``zipfile.Path`` is for a distribution in a zip) with the rest of what
    ``importlib.metadata`` asks of one (``SimplePath``): ``parent`` and
    ``exists()``, which from 3.12 ``files()`` filters on."""

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self._tree, self._relpath.rpartition("/")[0])

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def _child(self, name: str) -> RemotePath:
        return RemotePath(self._tree, f"{self._relpath}/{name}" if self._relpath else name)


class RemoteDistribution(Distribution):
    """One ``*.dist-info`` (or ``*.egg-info``) of a signed tree.

    *info* is its tree path (``"markdown-3.5.dist-info"``); *is_file* is True
    for an old-style ``.egg-info`` file, whose text is ``read_text("")``.
    """

    def __init__(self, tree: RemoteTree, info: str, *, is_file: bool = False) -> None:
        self.tree = tree
        self.info = info
        self._is_file = is_file

    def __repr__(self) -> str:
        return f"<RemoteDistribution {self.tree.file_url(self.info)}>"

    @property
    def url(self) -> str:
        return self.tree.file_url(self.info)

    def read_text(self, filename: str | os.PathLike[str]) -> str | None:
        """The verified text of *filename* in the distribution's info directory.

        None if the signed manifest does not list it (an unsigned file added on
        the server does not exist, as a missing local file); raises the
        library's error if it is listed but the bytes do not verify, or the
        manifest cannot be had.
        """
        name = os.fspath(filename)
        if self._is_file:
            relpath = self.info if name == "" else None
        else:
            relpath = posixpath.normpath(f"{self.info}/{name}") if name else None
        if relpath is None or not (relpath == self.info or relpath.startswith(f"{self.info}/")):
            return None  # outside the info directory: not one of its files
        try:
            if self.tree.index().get(relpath) is None:
                return None
            data = self.tree.read(relpath)
        except SecureImportError as exc:
            raise _for_metadata(exc, self) from None
        # As Path.read_text(encoding="utf-8"): universal newlines.
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()

    # typeshed's SimplePath differs between Python versions; RemotePath has
    # what each of them asks for.
    def locate_file(self, path: str | os.PathLike[str]) -> RemotePath:  # type: ignore[override]
        """A read-only Traversable of a file that ``files()`` lists, relative to the
        directory holding the info directory (as ``PathDistribution``'s); its
        reads are verified.  A path outside the tree is never a file of it."""
        parent = self.info.rpartition("/")[0]
        relpath = posixpath.normpath(posixpath.join(parent, os.fspath(path)))
        if relpath == ".":
            relpath = ""
        return RemotePath(self.tree, relpath)

    @property
    def _normalized_name(self) -> str:
        # As PathDistribution's: from the directory name, so that
        # entry_points() does not download every METADATA to deduplicate.
        return _name_of(self.info.rpartition("/")[2])


def _for_metadata(exc: SecureImportError, dist: RemoteDistribution) -> SecureImportError:
    """A copy of *exc* that says which distribution's metadata it refused."""
    renamed = copy.copy(exc)
    renamed.msg = f"cannot read the metadata of {dist.url}: {exc.msg}"
    renamed.args = (renamed.msg,)
    return renamed


def find_distributions(
    tree: RemoteTree, directory: str, name: str | None
) -> Iterator[Distribution]:
    """The distributions in *directory* of *tree* (``""``: its root), all of them
    or those whose normalised name is *name*'s; sorted by directory name."""
    if tree.busy_in_this_thread():
        return  # asked by our own manifest download: not ours to answer
    wanted = None if name is None else normalize(name)
    for child in _listing(tree, directory, wanted):
        if not child.lower().endswith(_INFO_SUFFIXES):
            continue
        if wanted is not None and _name_of(child) != wanted:
            continue
        path = f"{directory}/{child}" if directory else child
        index = tree.index()
        if index.is_dir(path):
            yield RemoteDistribution(tree, path)
        elif child.lower().endswith(".egg-info") and index.is_file(path):
            yield RemoteDistribution(tree, path, is_file=True)


def _listing(tree: RemoteTree, directory: str, wanted: str | None) -> list[str]:
    """The names in *directory* of the current release.  If the manifest cannot
    be had, fail closed unless the last good release had no distribution named
    *wanted* (as imports do for names the tree never owned)."""
    try:
        return tree.index().children(directory)
    except SecureImportError:
        last = tree.last_good
        if wanted is None or last is None:
            raise
        names = tree.index_of(last).children(directory)  # a shard it cannot have: raises
        if any(_name_of(n) == wanted for n in names if n.lower().endswith(_INFO_SUFFIXES)):
            raise
        return []
