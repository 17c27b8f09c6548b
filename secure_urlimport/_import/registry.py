"""The import system's state in one object: pins, trees, warnings and the path hook.

State lives here, keyed by URL, rather than in finder objects:
``importlib.invalidate_caches()`` discards every URL finder in
``sys.path_importer_cache``, and the trust decisions must survive that.

- A *pin* (``trust()``) says: trees at or below this URL prefix must be signed
  by these keys.  Nothing is fetched until an import needs it.
- A *tree* is one signed tree (one manifest).  ``install()`` creates one and a
  meta-path :class:`~secure_urlimport._import.finder.Importer` for it; the path hook
  creates one for each pinned ``https://`` entry on ``sys.path``.

``api`` makes one :class:`Registry` and wraps it.  Finders get it by reference
(it is their :class:`~secure_urlimport._import.finder.Owner`), so neither this module
nor the finders import ``api``.  Tests start afresh with :meth:`Registry.reset`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import forksafe
from .._client.remote import RemoteTree, normalize_url
from .._format.keys import TrustedKeys
from ..config import Config
from ..errors import SecureImportError
from . import metadata_guard
from .excepthook import install_excepthooks, remove_excepthooks
from .finder import (
    FailingPathFinder,
    Importer,
    NullPathFinder,
    RemotePathFinder,
    meta_path_insert_index,
)

if TYPE_CHECKING:
    from .._net.fetcher import Fetcher

__all__ = ["Pin", "Registry", "UnpinnedURLWarning"]

log = logging.getLogger("secure_urlimport")

PathEntryFinder = RemotePathFinder | NullPathFinder | FailingPathFinder
PathHook = Callable[[str], PathEntryFinder]


class UnpinnedURLWarning(UserWarning):
    """An ``https://`` entry on ``sys.path`` has no pinned key, so it is ignored."""


@dataclass
class Pin:
    """The keys and options pinned for one URL prefix, and the trees made under it.

    Either the signing keys (*trusted*, ``pubkey=``) or the root keys
    (*root_pin*, ``root=``) are pinned, never both.
    """

    trusted: TrustedKeys | None
    config: Config
    fetcher: Fetcher | None = None
    trees: list[RemoteTree] = field(default_factory=list)
    #: Mirrors of the pinned URL, tried in turn when it fails (mirrors.py).
    mirrors: tuple[str, ...] = ()
    #: The pinned root keys (``root=``); None when *trusted* is pinned.
    root_pin: TrustedKeys | None = None

    def new_tree(self, url: str, mirrors: tuple[str, ...]) -> RemoteTree:
        """A tree at *url* trusting what this pin trusts."""
        return RemoteTree(
            url, self.trusted, self.config, self.get_fetcher(), mirrors, root_pin=self.root_pin
        )

    def mirrors_of(self, prefix: str, url: str) -> tuple[str, ...]:
        """The mirror URLs of *url*, a URL at or under the pinned *prefix*."""
        return tuple(mirror + url[len(prefix) :] for mirror in self.mirrors)

    def get_fetcher(self) -> Fetcher:
        """The pinned fetcher, made from the config on first use."""
        if self.fetcher is None:
            from .._net.transport import RequestsFetcher

            self.fetcher = RequestsFetcher(self.config)
        return self.fetcher

    def same_as(self, other: Pin) -> bool:
        """Would *other* (a new, unused pin) install the same tree as this one?"""
        return (
            self.trusted == other.trusted
            and self.root_pin == other.root_pin
            and self.config == other.config
            and (other.fetcher in (None, self.fetcher) and self.mirrors == other.mirrors)
        )


class Registry:
    """Pins, trees, warnings, ``install()``ed prefixes and the path hook, under one lock.

    Its bound method ``path_hook`` is the callable it puts on ``sys.path_hooks``
    (bound methods of one object compare equal, so ``api.path_hook`` finds it).
    """

    def __init__(self) -> None:
        # The one lock of the import-system state: guards every field below and
        # the registry's edits of sys.meta_path, sys.path_hooks and
        # sys.path_importer_cache.  Also held while the path hook asks a tree
        # for its manifest, which may fetch it; install() fetches outside it.
        # Held while a path-hook refresh fetches a manifest: fork-safe, or a
        # child forked meanwhile would wait for it forever.
        self.lock = forksafe.RLock()
        self._pins: dict[str, Pin] = {}
        self._trees: dict[str, RemoteTree] = {}
        self._warned: set[str] = set()
        self._installed: set[str] = set()  # prefixes with a meta-path Importer (install())
        self._hook_requested = False
        self._invalidator = _CacheInvalidator(self)

    # -- what api and the tests ask ------------------------------------------------

    def tree(self, url: str) -> RemoteTree:
        """The tree made for the normalised *url*; KeyError if there is none."""
        with self.lock:
            return self._trees[url]

    def reset(self) -> None:
        """Forget every pin, tree and warning and take the path hook away (if no
        URL is left on ``sys.path`` or in a ``__path__``): a fresh start."""
        with self.lock:
            prefixes = list(self._pins)
        for prefix in prefixes:
            self.uninstall(prefix)
        self.remove_path_hook()
        with self.lock:
            self._warned.clear()

    def trust(self, prefix: str, pin: Pin) -> None:
        """Pin *pin* at *prefix*, replacing (and forgetting) what was pinned there."""
        with self.lock:
            forgotten = self._forget(prefix)
            self._pins[prefix] = pin
            _drop_path_cache(prefix)
        _save_bytecode(forgotten)

    def installed_importer(self, prefix: str, pin: Pin) -> Importer | None:
        """The importer already installed at *prefix* with the same keys and options."""
        with self.lock:
            current = self._pins.get(prefix)
            if current is None or not current.same_as(pin):
                return None
            return _importer_for(prefix)

    def install(self, prefix: str, pin: Pin, tree: RemoteTree) -> Importer:
        """Put a meta-path Importer for *tree* (verified, made from *pin*) in place.

        If another thread installed the same tree meanwhile, *tree* is closed
        and that importer returned.
        """
        with self.lock:
            existing = self.installed_importer(prefix, pin)
            if existing is not None:
                tree.close()
                return existing
            forgotten = self._forget(prefix)
            pin.trees.append(tree)
            self._pins[prefix] = pin
            self._trees[prefix] = tree
            _drop_path_cache(prefix)
            importer = Importer(tree, self)
            sys.meta_path.insert(meta_path_insert_index(), importer)
            self._installed.add(prefix)
            _add_hook(self.path_hook, self._invalidator)
        _save_bytecode(forgotten)
        return importer

    def uninstall(self, url: str) -> None:
        """Remove the importer, pin, path-finder cache entries and trees of *url*."""
        prefix = normalize_url(url)
        with self.lock:
            forgotten = self._forget(prefix)
            if not self._installed and not self._hook_requested:
                _remove_hook(self.path_hook, self._invalidator)
        _save_bytecode(forgotten)

    def install_path_hook(self) -> None:
        with self.lock:
            self._hook_requested = True
            _add_hook(self.path_hook, self._invalidator)

    def remove_path_hook(self) -> None:
        with self.lock:
            self._hook_requested = False
            # While install()ed trees remain, the hook stays to claim their
            # packages' __path__ URLs (so FileFinder never reads them as local
            # directories); other URL entries are then ignored.
            if not self._installed:
                _remove_hook(self.path_hook, self._invalidator)

    def url_entries_claimed(self) -> bool:
        """Is the path hook on ``sys.path_hooks`` (claiming every URL entry)?"""
        return self.path_hook in sys.path_hooks

    def mark_stale(self) -> None:
        """``importlib.invalidate_caches()``: every tree fetches its manifest again."""
        with self.lock:
            trees = list(self._trees.values())
        for tree in trees:
            tree.mark_stale()

    def path_hook(self, entry: str) -> PathEntryFinder:
        """The ``sys.path_hooks`` callable: claims every ``https://`` and ``http://`` entry."""
        if not _is_url(entry):
            raise ImportError("not a URL", path=str(entry))
        try:
            return self._finder_for(entry)
        except SecureImportError as exc:
            return FailingPathFinder(entry, exc)
        except Exception as exc:  # never let FileFinder have a URL entry
            return FailingPathFinder(entry, SecureImportError(f"cannot use {entry}: {exc!r}"))

    # -- internals (callers hold the lock) -------------------------------------------

    def _finder_for(self, entry: str) -> RemotePathFinder | NullPathFinder:
        try:
            url = normalize_url(entry)
        except SecureImportError as exc:
            self._warn_once(entry, f"{exc}; the sys.path entry {entry!r} is ignored")
            return NullPathFinder(entry)
        with self.lock:
            tree_url = _longest(url, self._trees)
            if tree_url is not None and (self._hook_requested or tree_url in self._installed):
                tree = self._trees[tree_url]
                directory = url[len(tree_url) + 1 :]
                if not directory or _tree_has_directory(tree, directory):
                    return RemotePathFinder(tree, directory)
            if not self._hook_requested:
                return NullPathFinder(entry)  # only install()ed packages' __path__ entries
            pin_url = _longest(url, self._pins)
            if pin_url is None:
                self._warn_once(
                    entry,
                    f"{entry} is on sys.path but no key is pinned for it, so nothing is "
                    f"imported from it; pin the publisher's root key with "
                    f"secure_urlimport.trust({url!r}, root='root.pub'), or its signing "
                    "key with pubkey='publisher.pub'",
                )
                return NullPathFinder(entry)
            pin = self._pins[pin_url]
            tree = pin.new_tree(url, pin.mirrors_of(pin_url, url))
            pin.trees.append(tree)
            self._trees[url] = tree
            return RemotePathFinder(tree, "")

    def _warn_once(self, entry: str, message: str) -> None:
        if entry not in self._warned:
            self._warned.add(entry)
            warnings.warn(message, UnpinnedURLWarning, stacklevel=2)

    def _forget(self, prefix: str) -> list[RemoteTree]:
        """Drop the pin at *prefix*, its trees, their importers and cached path
        finders; return the trees."""
        pin = self._pins.pop(prefix, None)
        if pin is None:
            return []
        sys.meta_path[:] = [
            f for f in sys.meta_path if not (isinstance(f, Importer) and f.tree in pin.trees)
        ]
        self._installed.discard(prefix)
        for tree in pin.trees:
            self._trees.pop(tree.url, None)
            _drop_path_cache(tree.url)
        _drop_path_cache(prefix)
        if pin.fetcher is not None:
            pin.fetcher.close()
        return list(pin.trees)


class _CacheInvalidator:
    """A meta-path entry that finds nothing and passes ``invalidate_caches()`` on.

    ``importlib.invalidate_caches()`` calls every meta-path finder's
    ``invalidate_caches``, but ``PathFinder`` *drops* URL path finders from
    ``sys.path_importer_cache`` instead of calling theirs, so path-hook trees
    would never hear of it.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        return None

    def invalidate_caches(self) -> None:
        self._registry.mark_stale()

    def find_distributions(self, context: object = None) -> tuple[()]:
        """None itself; keeps PathFinder's, asked next, off disk for URLs."""
        metadata_guard.ensure_guard()
        return ()

    def __repr__(self) -> str:
        return "<secure_urlimport cache invalidator>"


def _add_hook(hook: PathHook, invalidator: _CacheInvalidator) -> None:
    """Put *hook* first on ``sys.path_hooks`` and *invalidator* on ``sys.meta_path``."""
    install_excepthooks()
    if invalidator not in sys.meta_path:
        # Before PathFinder: asked first by importlib.metadata (see find_distributions).
        sys.meta_path.insert(meta_path_insert_index(), invalidator)
    metadata_guard.use_hook(hook)
    if hook not in sys.path_hooks:
        # First: the standard FileFinder hook would accept the URL as a
        # relative directory name.
        sys.path_hooks.insert(0, hook)
    for entry in list(sys.path_importer_cache):
        # Entries seen before the hook existed are cached as None forever, or
        # as a FileFinder reading './https:/host/...' from disk: drop both.
        if _is_url(entry):
            del sys.path_importer_cache[entry]


def _remove_hook(hook: PathHook, invalidator: _CacheInvalidator) -> None:
    """Undo :func:`_add_hook`, keeping *hook* while URLs remain to be claimed."""
    remove_excepthooks()
    while invalidator in sys.meta_path:
        sys.meta_path.remove(invalidator)
    if _urls_still_referenced():
        # Without the hook, FileFinder would take those URLs for local
        # directories ('./https:/host/pkg/'); it stays, claiming them, and
        # (nothing being pinned or requested) finds nothing.
        log.debug("path hook kept: URLs remain on sys.path or in a package __path__")
    else:
        while hook in sys.path_hooks:
            sys.path_hooks.remove(hook)
        metadata_guard.use_hook(None)
    for entry, finder in list(sys.path_importer_cache.items()):
        if isinstance(finder, PathEntryFinder):
            del sys.path_importer_cache[entry]


def _save_bytecode(trees: list[RemoteTree]) -> None:
    """Write their bytecode and manifest memos now rather than at exit, so the
    next install() finds them; outside the lock, which imports may be waiting for."""
    for tree in trees:
        tree.save_caches()


def _importer_for(url: str) -> Importer | None:
    for finder in sys.meta_path:
        if isinstance(finder, Importer) and finder.url == url:
            return finder
    return None


def _under(entry: str, prefix: str) -> bool:
    return entry == prefix or entry.startswith(prefix + "/")


def _longest(entry: str, candidates: dict[str, Pin] | dict[str, RemoteTree]) -> str | None:
    matches = [p for p in candidates if _under(entry, p)]
    return max(matches, key=len) if matches else None


def _drop_path_cache(prefix: str) -> None:
    """Forget cached finders (or cached ``None``) for entries under *prefix*."""
    for entry in list(sys.path_importer_cache):
        if _is_url(entry):
            try:
                if _under(normalize_url(entry), prefix):
                    del sys.path_importer_cache[entry]
            except SecureImportError:
                continue


def _tree_has_directory(tree: RemoteTree, directory: str) -> bool:
    try:
        return tree.index().is_dir(directory)
    except SecureImportError:
        return True  # fail closed: the tree's finder will raise for its names


def _is_url(entry: object) -> bool:
    return isinstance(entry, str) and entry[:8].lower().startswith(("https://", "http://"))


def _urls_still_referenced() -> bool:
    """Is a URL on sys.path, or in the __path__ of an imported package?"""
    if any(_is_url(entry) for entry in sys.path):
        return True
    for module in list(sys.modules.values()):
        path = getattr(module, "__path__", None)
        if path is not None and any(_is_url(entry) for entry in list(path)):
            return True
    return False
