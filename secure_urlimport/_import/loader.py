"""The verifying loader shared by the meta-path finder and the path-entry finder.

Deliberately not an ``importlib.abc.SourceLoader``: that class asks
``get_data`` for ``__pycache__/*.pyc`` next to the source and would run a
server-supplied bytecode file without checking the source.  Here the only
bytes ever compiled are the verified source bytes, passed straight to
``compile()``.

An ``importlib.abc.InspectLoader`` instead, for its ``exec_module``: it runs
the code from importlib's own frames, as every stdlib loader does, and those
are the frames ``warnings`` skips for ``stacklevel`` and tracebacks drop.  A
frame of this file under the module body would take the blame for a
module-level ``warn(..., stacklevel=2)`` and show in every traceback of an
import.  So nothing here runs module code; ``get_code`` does what an import
needs first (prefetch, linecache).
"""

from __future__ import annotations

import errno
import importlib.abc
import importlib.util
import linecache
import sys
from importlib.machinery import ModuleSpec
from types import CodeType, ModuleType
from typing import TYPE_CHECKING

from .._client.remote import RemoteTree
from .._client.shards import TreeIndex
from .._format.manifest import FileEntry, Manifest
from .._net.deadline import import_step
from .._trust.verify import release_keys, signature_vouch, verify_file_signatures
from ..errors import (
    NotInManifestError,
    ResponseTooLargeError,
    SecureImportError,
    TamperedFileError,
)
from .extensions import enabled as extensions_enabled
from .extensions import extension_at, extension_spec, refuse_extension

if TYPE_CHECKING:
    from importlib.resources.abc import TraversableResources

__all__ = ["VerifiedLoader", "make_spec"]


class VerifiedLoader(importlib.abc.InspectLoader):
    """Loads one module of a :class:`RemoteTree` from verified bytes.

    One instance per module, like ``SourceFileLoader``: methods that take a
    module name accept any name, because ``runpy`` and ``linecache`` ask for
    ``__main__``.
    """

    def __init__(self, tree: RemoteTree, fullname: str, relpath: str, is_package: bool) -> None:
        self.tree = tree
        self.name = fullname
        self.relpath = relpath
        self.url = tree.file_url(relpath)
        self._is_package = is_package
        self._directory = relpath.rpartition("/")[0]

    def __repr__(self) -> str:
        return f"<VerifiedLoader {self.name!r} from {self.url}>"

    # -- the import protocol ------------------------------------------------

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    # -- InspectLoader ------------------------------------------------------

    def _source_bytes(self, fullname: str | None) -> bytes:
        try:
            return self.tree.read(self.relpath)
        except SecureImportError as exc:
            name = self.name if fullname in (None, "__main__") else fullname
            raise exc.for_module(name) from None

    def get_code(self, fullname: str | None = None) -> CodeType:
        """The module's code, for ``exec_module`` (inherited), ``runpy`` and the like.

        Compiled from its verified source, or loaded from the bytecode cache,
        which holds only code compiled here from source with the SHA-256 the
        verified manifest lists (bytecode.py).
        """
        # What a package's code imports is most likely its own modules, and a
        # plain module's its siblings: download those while this one runs
        # (once per directory: the tree remembers).  The bundle fetched for
        # the prefetch and this module's own file share one timeout per
        # source: one bound for the whole import.
        with import_step(self.tree.config.timeout):
            self.tree.prefetch(self._directory, recursive=self._is_package, skip=self.relpath)
            code = self._code(fullname)
        # A traceback or inspect.getsource() may have cached the previous
        # text of this URL; after a reload it must show the new one.  Then
        # register the loader, so linecache.getline(url, n) without module
        # globals (as the warnings formatter calls it) finds the source too.
        linecache.cache.pop(self.url, None)
        linecache.lazycache(self.url, {"__name__": self.name, "__loader__": self})
        return code

    def _code(self, fullname: str | None) -> CodeType:
        tree = self.tree
        try:
            manifest, entry = tree.lookup(self.relpath)
            if entry.size <= tree.config.max_file_bytes:
                code = self._cached_code(manifest, entry)
                if code is not None:
                    return code
            manifest, entry, source = self._read_entry(manifest, entry)
            keys = release_keys(manifest, url=self.url)
        except SecureImportError as exc:
            name = self.name if fullname in (None, "__main__") else fullname
            raise exc.for_module(name) from None
        code = compile(source, self.url, "exec", dont_inherit=True)
        tree.bytecode.put(self.url, entry.sha256, code, signature_vouch(entry, manifest, keys))
        return code

    def _cached_code(self, manifest: Manifest, entry: FileEntry) -> CodeType | None:
        """The cached code of *entry*, if any.  The cache stands in for reading
        and hashing the source; the signatures of this release, these keys and
        this threshold must still vouch for the entry: checked again unless the
        entry records a passed check of exactly these inputs (the vouch)."""
        tree = self.tree
        hit = tree.bytecode.get(self.url, entry.sha256)
        if hit is None:
            return None
        code, recorded = hit
        keys = release_keys(manifest, url=self.url)
        vouch = signature_vouch(entry, manifest, keys)
        if recorded != vouch:
            verify_file_signatures(entry, manifest, keys, url=self.url)
            tree.bytecode.vouch(self.url, entry.sha256, vouch)
        return code

    def _read_entry(
        self, manifest: Manifest, entry: FileEntry
    ) -> tuple[Manifest, FileEntry, bytes]:
        """The verified source of *entry*, or of its path in a newer release if
        a cache served an old manifest while the file is new: the file does not
        verify even past the caches, nothing of the tree ran in this process
        yet, and the manifest fetched past the caches is newer (remote.py)."""
        tree = self.tree
        try:
            return manifest, entry, tree.read_entry(manifest, entry)
        except (TamperedFileError, ResponseTooLargeError):
            if _ran_from(tree, besides=self.name) or not tree.newer_release_past_caches(manifest):
                raise
        manifest, entry = tree.lookup(self.relpath)
        return manifest, entry, tree.read_entry(manifest, entry)

    def get_source(self, fullname: str | None = None) -> str:
        return importlib.util.decode_source(self._source_bytes(fullname))

    def is_package(self, fullname: str | None = None) -> bool:
        return self._is_package

    def get_filename(self, fullname: str | None = None) -> str:
        return self.url

    # -- data and resources -------------------------------------------------

    def get_data(self, path: str) -> bytes:
        """Verified bytes of a file in the tree, by URL or ``os.path.join`` path.

        A path outside the tree or not in the signed manifest raises
        ``FileNotFoundError``, as ``get_data`` does for a missing local file.
        """
        relpath = self.tree.relpath_of(str(path))
        if relpath is None:
            raise FileNotFoundError(
                errno.ENOENT, f"not a file of the signed tree {self.tree.url}", str(path)
            )
        try:
            return self.tree.read(relpath)
        except NotInManifestError as exc:
            if self.tree.index().is_dir(relpath.rstrip("/")):
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path)) from None
            raise FileNotFoundError(errno.ENOENT, str(exc), str(path)) from None

    def get_resource_reader(self, fullname: str | None = None) -> TraversableResources:
        from .resources import RemoteResourceReader

        return RemoteResourceReader(self.tree, self._directory)


def _ran_from(tree: RemoteTree, *, besides: str) -> bool:
    """Is a module of *tree* other than *besides* imported (or being imported)?"""
    for name, module in list(sys.modules.items()):
        loader = getattr(getattr(module, "__spec__", None), "loader", None)
        if name != besides and isinstance(loader, VerifiedLoader) and loader.tree is tree:
            return True
    return False


def locate(
    index: TreeIndex, base: str, *, extensions: bool = True
) -> tuple[str | None, bool] | None:
    """Where a module stored at tree path *base* (no suffix) is, as in ``FileFinder``:
    ``(base/__init__<ext>, True)`` > ``(base/__init__.py, True)`` > ``(base<ext>, False)``
    > ``(base.py, False)`` > ``(None, True)`` for a namespace directory; None if the
    release has none of them.  *<ext>*: this interpreter's extension suffixes
    (extensions.py), unless *extensions* is False."""
    for stem, is_package in ((f"{base}/__init__", True), (base, False)):
        if extensions and (extension := extension_at(index, stem)) is not None:
            return extension, is_package
        if index.is_file(f"{stem}.py"):
            return f"{stem}.py", is_package
    if index.is_dir(base):
        return None, True
    return None


def make_spec(tree: RemoteTree, index: TreeIndex, fullname: str, base: str) -> ModuleSpec | None:
    """The spec for *fullname* stored at tree path *base* in the release *index*, or None."""
    found = locate(index, base)
    if found is None:
        return None
    relpath, is_package = found
    if relpath is not None and not relpath.endswith(".py"):  # an extension module
        if extensions_enabled(tree):
            return extension_spec(tree, index, fullname, relpath, is_package=is_package)
        # Turned off: a source module or package is used as if the extension
        # were not there (a pure-Python fallback); nothing else may stand in.
        fallback = locate(index, base, extensions=False)
        if fallback is None or fallback[0] is None:
            raise refuse_extension(tree, fullname, relpath)
        relpath, is_package = fallback
    if relpath is not None:
        return _spec(tree, fullname, relpath, is_package=is_package)
    spec = ModuleSpec(fullname, None, is_package=True)
    spec.submodule_search_locations = [tree.file_url(base)]
    return spec


def _spec(tree: RemoteTree, fullname: str, relpath: str, *, is_package: bool) -> ModuleSpec:
    loader = VerifiedLoader(tree, fullname, relpath, is_package)
    spec = ModuleSpec(fullname, loader, origin=loader.url, is_package=is_package)
    # Gives the module a __file__; spec_from_file_location would prefix the cwd.
    spec.has_location = True
    if is_package:
        spec.submodule_search_locations = [tree.file_url(relpath.rpartition("/")[0])]
    return spec
