"""Finders: the meta-path :class:`Importer` and the ``https://`` path-entry finder.

Both answer ``find_spec`` from the verified manifest alone (no download of
code happens while the global import lock is held) and hand out the same
:class:`~secure_urlimport.loader.VerifiedLoader`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType, TracebackType

from .errors import SecureImportError
from .loader import STDLIB_NAMES, make_spec
from .manifest import Manifest
from .paths import is_module_name
from .remote import RemoteTree

__all__ = ["Importer", "NullPathFinder", "RemotePathFinder"]

log = logging.getLogger("secure_urlimport")


def _refusable(fullname: str) -> bool:
    """Names no remote tree may serve: malformed, or the standard library's."""
    if not is_module_name(fullname):
        log.debug("refusing module name %r: not an ASCII dotted name", fullname)
        return True
    return fullname.partition(".")[0] in STDLIB_NAMES


def _owns(manifest: Manifest, base: str) -> bool:
    files = manifest.files
    return f"{base}.py" in files or f"{base}/__init__.py" in files or base in manifest.directories


def _manifest_or_raise(tree: RemoteTree, fullname: str, base: str) -> Manifest | None:
    """The tree's manifest; if it cannot be had, raise for names the tree owned.

    Fail closed but scoped: a name the last good manifest listed must not fall
    through to a same-named module elsewhere; other names are not ours.
    """
    try:
        return tree.manifest()
    except SecureImportError as exc:
        last = tree.last_good
        if last is None or _owns(last, base):
            raise exc.for_module(fullname) from None
        return None


class Importer:
    """A ``sys.meta_path`` finder serving one signed tree.  Returned by ``install()``.

    Use ``.uninstall()``, or ``with install(...):`` to remove it again.
    """

    def __init__(self, tree: RemoteTree) -> None:
        self.tree = tree

    @property
    def url(self) -> str:
        return self.tree.url

    def __repr__(self) -> str:
        return f"<secure_urlimport.Importer {self.tree.url}>"

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if _refusable(fullname):
            return None
        parent, _, _ = fullname.rpartition(".")
        base = fullname.replace(".", "/")
        if parent and not self._is_our_package(parent, path):
            return None
        manifest = _manifest_or_raise(self.tree, fullname, base)
        if manifest is None:
            return None
        spec = make_spec(self.tree, fullname, base)
        if spec is None and parent and self._only_our_locations(path):
            # The parent package is wholly ours: the module does not exist.  Stop
            # here, or PathFinder would read the URL in __path__ as a local
            # relative directory ('./https:/host/pkg/') and import from disk.
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not in the signed manifest of "
                f"{self.tree.url})",
                name=fullname,
            )
        if spec is not None:
            log.debug("found %s in %s", fullname, self.tree.url)
        return spec

    def _is_our_package(self, parent: str, path: Sequence[str] | None) -> bool:
        return path is not None and self.tree.file_url(parent.replace(".", "/")) in path

    def _only_our_locations(self, path: Sequence[str] | None) -> bool:
        prefix = self.tree.url + "/"
        return path is not None and all(str(p).startswith(prefix) for p in path)

    def invalidate_caches(self) -> None:
        self.tree.mark_stale()

    def uninstall(self) -> None:
        from .api import uninstall

        uninstall(self.tree.url)

    def __enter__(self) -> Importer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()


class RemotePathFinder:
    """The path-entry finder for an ``https://`` entry of a pinned tree.

    *directory* is the entry's path inside the tree (``""`` for the tree root,
    ``"pkg"`` for a package's ``__path__`` entry).
    """

    def __init__(self, tree: RemoteTree, directory: str) -> None:
        self.tree = tree
        self.directory = directory

    def __repr__(self) -> str:
        return f"<RemotePathFinder {self.tree.file_url(self.directory)}>"

    def _base(self, fullname: str) -> str:
        tail = fullname.rpartition(".")[2]
        return f"{self.directory}/{tail}" if self.directory else tail

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> ModuleSpec | None:
        if _refusable(fullname):
            return None
        base = self._base(fullname)
        if _manifest_or_raise(self.tree, fullname, base) is None:
            return None
        return make_spec(self.tree, fullname, base)

    def invalidate_caches(self) -> None:
        self.tree.mark_stale()

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        """What ``pkgutil.iter_modules`` lists: (name, is_package) pairs."""
        manifest = self.tree.manifest()
        found: dict[str, bool] = {}
        for name in manifest.children(self.directory):
            path = f"{self.directory}/{name}" if self.directory else name
            if f"{path}/__init__.py" in manifest.files:
                found[name] = True  # a package wins over a same-named module
            elif name.endswith(".py") and name != "__init__.py" and path in manifest.files:
                found.setdefault(name[:-3], False)
        for name, is_package in sorted(found.items()):
            if name.isidentifier():
                yield prefix + name, is_package


class NullPathFinder:
    """Claims an ``https://`` (or ``http://``) entry that is not pinned, and finds nothing.

    Claiming it matters: if no hook claimed the entry, the standard
    ``FileFinder`` would treat ``https://host/pkg`` as the relative local
    directory ``./https:/host/pkg`` and import files from disk.
    """

    def __init__(self, entry: str) -> None:
        self.entry = entry

    def __repr__(self) -> str:
        return f"<NullPathFinder {self.entry} (not pinned)>"

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> None:
        return None

    def invalidate_caches(self) -> None:
        return None

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        return iter(())


def meta_path_insert_index() -> int:
    """Where an Importer goes: just before the standard PathFinder.

    Before it, so a stray local directory named like a remote package cannot
    win; after the builtin and frozen importers, so the standard library does.
    """
    from importlib.machinery import PathFinder

    for index, finder in enumerate(sys.meta_path):
        if finder is PathFinder:
            return index
    return len(sys.meta_path)
