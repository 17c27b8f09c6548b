"""Finders: the meta-path :class:`Importer` and the ``https://`` path-entry finder.

Both answer ``find_spec`` from the verified manifest alone (no download of
code happens while the global import lock is held) and hand out the same
:class:`~secure_urlimport._import.loader.VerifiedLoader`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib.machinery import ModuleSpec, NamespaceLoader
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Protocol

from .._client.remote import RemoteTree
from .._format.manifest import Manifest
from .._format.paths import STDLIB_NAMES, is_module_name
from ..errors import SecureImportError
from .extensions import module_suffixes
from .loader import locate, make_spec

if TYPE_CHECKING:
    from importlib.metadata import Distribution, DistributionFinder

__all__ = ["Importer", "NullPathFinder", "Owner", "RemotePathFinder"]

log = logging.getLogger("secure_urlimport")


def _refusable(fullname: str) -> bool:
    """Names no remote tree may serve: malformed, or the standard library's."""
    if not is_module_name(fullname):
        log.debug("refusing module name %r: not an ASCII dotted name", fullname)
        return True
    return fullname.partition(".")[0] in STDLIB_NAMES


def lookup(tree: RemoteTree, fullname: str, base: str, *, exclusive: bool) -> ModuleSpec | None:
    """The spec for *fullname* at tree path *base*, or None if the tree has no such module.

    Runs under the global import lock.  No I/O while the manifest is fresh;
    after ``importlib.invalidate_caches()`` (or expiry) the first lookup
    fetches it again — one request, as ``FileFinder`` re-lists its directory —
    so moved, added and removed modules are seen exactly as locally.  If the
    manifest cannot be had, fail closed for names the tree owned (and for
    everything when *exclusive*: the parent package is wholly ours).
    """
    if tree.busy_in_this_thread():
        # An import made by our own manifest download: not ours to answer.
        return None
    try:
        manifest = tree.manifest()
    except SecureImportError as exc:
        last = tree.last_good
        if exclusive or last is None or _owned(tree, last, base):
            raise exc.for_module(fullname) from None
        return None
    try:
        return make_spec(tree, tree.index_of(manifest), fullname, base)
    except SecureImportError as exc:  # a shard that cannot be had: fail closed
        raise exc.for_module(fullname) from None


def _owned(tree: RemoteTree, last: Manifest, base: str) -> bool:
    """Did the last good release have a module at *base*?  (True if that cannot
    be told without a shard that cannot be had: fail closed.)"""
    try:
        return locate(tree.index_of(last), base) is not None
    except SecureImportError:
        return True


def _is_namespace(spec: ModuleSpec) -> bool:
    return spec.loader is None or isinstance(spec.loader, NamespaceLoader)


def _not_found(fullname: str, tree: RemoteTree) -> ModuleNotFoundError:
    # Raised, not returned as None: otherwise PathFinder would read the URL in
    # the package's __path__ as a local relative directory ('./https:/host/pkg/').
    return ModuleNotFoundError(
        f"No module named {fullname!r} (not in the signed manifest of {tree.url})",
        name=fullname,
    )


class Owner(Protocol):
    """What an :class:`Importer` asks of the registry that installed it.

    Passed in (the registry), so that this module never imports ``api``.
    """

    def url_entries_claimed(self) -> bool:
        """Is the path hook on ``sys.path_hooks``, claiming every URL entry?"""
        ...

    def uninstall(self, url: str) -> None:
        """Remove the importer and pin of *url* (``secure_urlimport.uninstall``)."""
        ...


class Importer:
    """A ``sys.meta_path`` finder serving one signed tree.  Returned by ``install()``.

    Use ``.uninstall()``, or ``with install(...):`` to remove it again.
    """

    def __init__(self, tree: RemoteTree, owner: Owner) -> None:
        self.tree = tree
        self._owner = owner

    @property
    def url(self) -> str:
        return self.tree.url

    def __repr__(self) -> str:
        return f"<secure_urlimport.Importer {self.tree.url}>"

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        parent = fullname.rpartition(".")[0]
        exclusive = False
        if parent:
            if path is None or self.tree.file_url(parent.replace(".", "/")) not in path:
                return None  # not a submodule of one of our packages
            prefix = self.tree.url + "/"
            exclusive = all(str(entry).startswith(prefix) for entry in path)
        # With our path hook claiming URL entries, None is safe (and what
        # importlib.util.find_spec expects); without it, PathFinder would read
        # the package's URL as a local directory, so stop the search here.
        must_stop = exclusive and not self._owner.url_entries_claimed()
        if _refusable(fullname):
            if must_stop:
                raise _not_found(fullname, self.tree)
            return None
        spec = lookup(self.tree, fullname, fullname.replace(".", "/"), exclusive=exclusive)
        if spec is None and must_stop:
            raise _not_found(fullname, self.tree)
        if spec is not None and self._yields_to_a_module(spec, path, exclusive=exclusive):
            log.debug("%s: a module found after %s wins over its directory", fullname, self.url)
            return None
        if spec is not None:
            log.debug("found %s in %s", fullname, self.tree.url)
        return spec

    def _yields_to_a_module(
        self, spec: ModuleSpec, path: Sequence[str] | None, *, exclusive: bool
    ) -> bool:
        """Whether *spec*, a directory of this tree, must give way to a module
        or regular package that a finder after this one on sys.meta_path finds.

        A namespace directory is only one portion: as on sys.path, a real
        module (an installed package, say) wins over it rather than being
        hidden.  The first finder after us that finds the name decides;
        finding runs no module code, and one that raises would end the
        import there, so it counts as not finding one.  Not asked inside a
        package wholly ours, nor with a path holding URLs no hook claims:
        PathFinder would read those as local directories.
        """
        if (
            not _is_namespace(spec)
            or exclusive
            or (path is not None and not self._owner.url_entries_claimed())
        ):
            return False
        finders = list(sys.meta_path)
        after = next((i + 1 for i, finder in enumerate(finders) if finder is self), len(finders))
        for finder in finders[after:]:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            try:
                found = find_spec(spec.name, path, None)
            except Exception:  # a broken finder after us: it found nothing we must yield to
                return False
            if found is not None:
                return not _is_namespace(found)
        return False

    def invalidate_caches(self) -> None:
        self.tree.mark_stale()

    def find_distributions(
        self, context: DistributionFinder.Context | None = None
    ) -> Iterable[Distribution]:
        """``importlib.metadata``: the tree's distributions (verified metadata).

        ``install()`` puts the tree's root before ``sys.path``, so it answers
        searches of ``sys.path`` (the default), not an explicit other path,
        nor one holding the tree's URL (the path-entry finder answers that).
        """
        from . import metadata_guard
        from .distributions import find_distributions

        metadata_guard.ensure_guard()
        path = sys.path if context is None else context.path
        if path is not sys.path or self.tree.url in path:
            return ()
        return find_distributions(self.tree, "", None if context is None else context.name)

    def uninstall(self) -> None:
        self._owner.uninstall(self.tree.url)

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
        return lookup(self.tree, fullname, self._base(fullname), exclusive=False)

    def invalidate_caches(self) -> None:
        self.tree.mark_stale()

    def find_distributions(
        self, context: DistributionFinder.Context | None = None
    ) -> Iterable[Distribution]:
        """The distributions in this entry's directory (asked by metadata_guard.py)."""
        from .distributions import find_distributions

        return find_distributions(self.tree, self.directory, getattr(context, "name", None))

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        """What ``pkgutil.iter_modules`` lists: (name, is_package) pairs."""
        index = self.tree.index()
        suffixes = module_suffixes(self.tree)
        found: dict[str, bool] = {}
        for name in index.children(self.directory):
            path = f"{self.directory}/{name}" if self.directory else name
            if any(index.is_file(f"{path}/__init__{suffix}") for suffix in suffixes):
                found[name] = True  # a package wins over a same-named module
                continue
            stem = next((name[: -len(s)] for s in suffixes if name.endswith(s)), None)
            if stem is not None and stem != "__init__" and index.is_file(path):
                found.setdefault(stem, False)
        for name, is_package in sorted(found.items()):
            if is_module_name(name) and not (not self.directory and name in STDLIB_NAMES):
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

    def find_distributions(self, context: object = None) -> Iterable[Distribution]:
        return ()


class FailingPathFinder(NullPathFinder):
    """Claims a URL entry whose finder could not be set up; every lookup raises.

    A path hook that raises ``ImportError`` passes the entry on to the next
    hook — ``FileFinder``, which would import from ``./https:/host/...``.
    """

    def __init__(self, entry: str, error: SecureImportError) -> None:
        super().__init__(entry)
        self.error = error

    def __repr__(self) -> str:
        return f"<FailingPathFinder {self.entry}: {self.error}>"

    def find_spec(self, fullname: str, target: ModuleType | None = None) -> None:
        if _refusable(fullname):
            return None
        raise self.error.for_module(fullname)

    def find_distributions(self, context: object = None) -> Iterable[Distribution]:
        # As find_spec: fail closed for every name searched past this entry.
        raise self.error


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
