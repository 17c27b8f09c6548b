"""The public entry points: ``install``, ``trust``, ``uninstall`` and the path hook.

State lives here, in a registry keyed by URL, rather than in finder objects:
``importlib.invalidate_caches()`` discards every URL finder in
``sys.path_importer_cache``, and the trust decisions must survive that.

- A *pin* (``trust()``) says: trees at or below this URL prefix must be signed
  by these keys.  Nothing is fetched until an import needs it.
- A *tree* is one signed tree (one manifest).  ``install()`` creates one and a
  meta-path :class:`Importer` for it; the path hook creates one for each pinned
  ``https://`` entry on ``sys.path``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import forksafe
from .config import Config
from .errors import ConfigurationError, SecureImportError
from .excepthook import install_excepthooks, remove_excepthooks
from .finder import (
    FailingPathFinder,
    Importer,
    NullPathFinder,
    RemotePathFinder,
    meta_path_insert_index,
)
from .keys import TrustedKeys
from .remote import RemoteTree, normalize_url

if TYPE_CHECKING:
    from .transport import Fetcher

__all__ = [
    "UnpinnedURLWarning",
    "install",
    "install_path_hook",
    "remove_path_hook",
    "trust",
    "uninstall",
]

log = logging.getLogger("secure_urlimport")


class UnpinnedURLWarning(UserWarning):
    """An ``https://`` entry on ``sys.path`` has no pinned key, so it is ignored."""


@dataclass
class _Pin:
    trusted: TrustedKeys
    config: Config
    fetcher: Fetcher | None = None
    trees: list[RemoteTree] = field(default_factory=list)
    #: Mirrors of the pinned URL, tried in turn when it fails (mirrors.py).
    mirrors: tuple[str, ...] = ()

    def mirrors_of(self, prefix: str, url: str) -> tuple[str, ...]:
        """The mirror URLs of *url*, a URL at or under the pinned *prefix*."""
        return tuple(mirror + url[len(prefix):] for mirror in self.mirrors)


# Held while a path-hook refresh fetches a manifest: fork-safe, or a child
# forked meanwhile would wait for it forever.
_lock = forksafe.RLock()
_pins: dict[str, _Pin] = {}
_trees: dict[str, RemoteTree] = {}
_warned: set[str] = set()
_installed: set[str] = set()  # prefixes with a meta-path Importer (install())
_hook_requested = False


def _new_pin(
    url: str | Sequence[str],
    pubkey: object,
    config: Config | None,
    fetcher: Fetcher | None,
    **options: object,
) -> tuple[str, _Pin]:
    """The normalised URL and a pin for it; keyword *options* override *config*.

    *url* may be a list: the first is the tree's URL, the others its mirrors.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ConfigurationError("give at least one https:// URL")
    primary, *mirrors = (normalize_url(u) for u in urls)
    cfg = (config if config is not None else Config()).replace(**options)
    trusted = TrustedKeys.from_arg(pubkey, cfg.threshold)
    return primary, _Pin(trusted, cfg, fetcher, mirrors=tuple(mirrors))


def trust(
    url: str | Sequence[str],
    pubkey: object,
    *,
    cafile: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
    threshold: int | None = None,
    name: str | None = None,
    auth: tuple[str, str] | None = None,
    proxy: str | None = None,
    client_cert: str | tuple[str, str] | None = None,
    config: Config | None = None,
    fetcher: Fetcher | None = None,
) -> None:
    """Pin *pubkey* for every tree at or below the https *url* prefix.

    With the path hook installed (``install_path_hook()``), ``https://``
    entries on ``sys.path`` under *url* become importable; each entry is the
    root of a signed tree.  Takes the same options as :func:`install`.
    """
    prefix, pin = _new_pin(url, pubkey, config, fetcher, cafile=cafile, headers=headers,
                           timeout=timeout, threshold=threshold, tree_name=name, auth=auth,
                           proxy=proxy, client_cert=client_cert)
    _fetcher_of(pin)  # a bad cafile or client_cert fails here, not inside an import
    _warm_transport()
    with _lock:
        forgotten = _forget(prefix)
        _pins[prefix] = pin
        _drop_path_cache(prefix)
    _save_bytecode(forgotten)


def install(
    url: str | Sequence[str],
    pubkey: object,
    *,
    cafile: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
    threshold: int | None = None,
    name: str | None = None,
    auth: tuple[str, str] | None = None,
    proxy: str | None = None,
    client_cert: str | tuple[str, str] | None = None,
    config: Config | None = None,
    fetcher: Fetcher | None = None,
) -> Importer:
    """Make the signed tree at *url* importable with ``import``; return its finder.

    The manifest is fetched and verified now, so a wrong key, URL or CA fails
    here rather than at the first import.  Options:

    - *url*: the tree's https URL, or a list of URLs: the tree and its mirrors,
      tried in turn (the first one that serves valid content is used; the
      first URL names the modules).
    - *pubkey*: a ``.pub`` path, its text, 32 raw bytes, an ``Ed25519PublicKey``,
      or a list of these (any listed key may sign; see *threshold*).
    - *cafile*: PEM CA bundle trusted instead of the default store.
    - *headers*: extra request headers (e.g. an ``Authorization`` token).
    - *timeout*: seconds for each whole download.
    - *threshold*: how many distinct pinned keys must sign (default 1).
    - *name*: the tree name the manifest must carry (``sign --name``); pin it
      when one key signs several trees.
    - *auth*: ``(user, password)`` for HTTP basic authentication.
    - *proxy*: ``http://host:port`` of a proxy to tunnel through, instead of
      ``HTTPS_PROXY``/``NO_PROXY`` from the environment.
    - *client_cert*: a PEM file with certificate and key, or a ``(cert, key)``
      pair, for servers that require mutual TLS.
    - *config*: a :class:`Config` for everything else; the keywords above win.
    - *fetcher*: the network interface (tests inject hostile servers here).

    Calling it again for the same URL returns the existing importer.
    """
    prefix, pin = _new_pin(url, pubkey, config, fetcher, cafile=cafile, headers=headers,
                           timeout=timeout, threshold=threshold, tree_name=name, auth=auth,
                           proxy=proxy, client_cert=client_cert)
    with _lock:
        existing = _installed_importer(prefix, pin)
    if existing is not None:
        return existing
    # Network I/O outside _lock: the path hook takes _lock while the import
    # system holds its global lock, and this thread may need that lock.
    tree = RemoteTree(prefix, pin.trusted, pin.config, _fetcher_of(pin), pin.mirrors)
    try:
        tree.manifest()  # fail now, before anything is installed
    except SecureImportError:
        tree.close()
        raise
    with _lock:
        existing = _installed_importer(prefix, pin)
        if existing is not None:
            tree.close()  # another thread installed the same tree meanwhile
            return existing
        forgotten = _forget(prefix)
        pin.trees.append(tree)
        _pins[prefix] = pin
        _trees[prefix] = tree
        _drop_path_cache(prefix)
        importer = Importer(tree)
        sys.meta_path.insert(meta_path_insert_index(), importer)
        _installed.add(prefix)
        _add_hook()
    _save_bytecode(forgotten)
    log.debug("installed %r", importer)
    return importer


def uninstall(url: str) -> None:
    """Remove the importer, pin, path-finder cache entries and state for *url*."""
    prefix = normalize_url(url)
    with _lock:
        forgotten = _forget(prefix)
        if not _installed and not _hook_requested:
            _remove_hook()
    _save_bytecode(forgotten)


def install_path_hook() -> None:
    """Make pinned ``https://`` entries on ``sys.path`` (and in ``__path__``) importable.

    Entries that are not pinned are claimed and ignored, with one warning each.
    """
    global _hook_requested
    _warm_transport()
    with _lock:
        _hook_requested = True
        _add_hook()


def remove_path_hook() -> None:
    """Undo :func:`install_path_hook` (``install()`` keeps its own finders)."""
    global _hook_requested
    with _lock:
        _hook_requested = False
        # While install()ed trees remain, the hook stays to claim their
        # packages' __path__ URLs (so FileFinder never reads them as local
        # directories); other URL entries are then ignored.
        if not _installed:
            _remove_hook()


# -- internals --------------------------------------------------------------


def _installed_importer(prefix: str, pin: _Pin) -> Importer | None:
    """The importer already installed for *prefix* with the same keys and options."""
    current = _pins.get(prefix)
    same = current is not None and current.trusted == pin.trusted and (
        current.config == pin.config and pin.fetcher in (None, current.fetcher)
        and current.mirrors == pin.mirrors
    )
    return _importer_for(prefix) if same else None


def _warm_transport() -> None:
    """Import requests now, not during the first manifest fetch inside ``find_spec``,
    where its own imports (and optional ones like chardet) would walk sys.path."""
    from .transport import preload

    preload()


def _fetcher_of(pin: _Pin) -> Fetcher:
    if pin.fetcher is None:
        from .transport import RequestsFetcher

        pin.fetcher = RequestsFetcher(pin.config)
    return pin.fetcher


def _importer_for(url: str) -> Importer | None:
    for finder in sys.meta_path:
        if isinstance(finder, Importer) and finder.url == url:
            return finder
    return None


def _forget(prefix: str) -> list[RemoteTree]:
    """Drop the pin at *prefix*, its trees, their importers and cached path
    finders; return the trees."""
    pin = _pins.pop(prefix, None)
    if pin is None:
        return []
    sys.meta_path[:] = [
        f for f in sys.meta_path if not (isinstance(f, Importer) and f.tree in pin.trees)
    ]
    _installed.discard(prefix)
    for tree in pin.trees:
        _trees.pop(tree.url, None)
        _drop_path_cache(tree.url)
    _drop_path_cache(prefix)
    if pin.fetcher is not None:
        pin.fetcher.close()
    return list(pin.trees)


def _save_bytecode(trees: list[RemoteTree]) -> None:
    """Write their bytecode now rather than at exit, so the next install()
    finds it; outside the lock, which imports may be waiting for."""
    for tree in trees:
        tree.bytecode.flush()


def _under(entry: str, prefix: str) -> bool:
    return entry == prefix or entry.startswith(prefix + "/")


def _drop_path_cache(prefix: str) -> None:
    """Forget cached finders (or cached ``None``) for entries under *prefix*."""
    for entry in list(sys.path_importer_cache):
        if _is_url(entry):
            try:
                if _under(normalize_url(entry), prefix):
                    del sys.path_importer_cache[entry]
            except SecureImportError:
                continue


def _longest(entry: str, candidates: dict[str, object]) -> str | None:
    matches = [p for p in candidates if _under(entry, p)]
    return max(matches, key=len) if matches else None


def _finder_for(entry: str) -> RemotePathFinder | NullPathFinder:
    try:
        url = normalize_url(entry)
    except SecureImportError as exc:
        _warn_once(entry, f"{exc}; the sys.path entry {entry!r} is ignored")
        return NullPathFinder(entry)
    with _lock:
        tree_url = _longest(url, _trees)  # type: ignore[arg-type]
        if tree_url is not None and (_hook_requested or tree_url in _installed):
            tree = _trees[tree_url]
            directory = url[len(tree_url) + 1:]
            if not directory or _tree_has_directory(tree, directory):
                return RemotePathFinder(tree, directory)
        if not _hook_requested:
            return NullPathFinder(entry)  # only install()ed packages' __path__ entries
        pin_url = _longest(url, _pins)  # type: ignore[arg-type]
        if pin_url is None:
            _warn_once(
                entry,
                f"{entry} is on sys.path but no key is pinned for it, so nothing is imported "
                f"from it; pin the publisher's key with "
                f"secure_urlimport.trust({url!r}, pubkey='publisher.pub')",
            )
            return NullPathFinder(entry)
        pin = _pins[pin_url]
        tree = RemoteTree(url, pin.trusted, pin.config, _fetcher_of(pin),
                          pin.mirrors_of(pin_url, url))
        pin.trees.append(tree)
        _trees[url] = tree
        return RemotePathFinder(tree, "")


def _tree_has_directory(tree: RemoteTree, directory: str) -> bool:
    try:
        return directory in tree.manifest().directories
    except SecureImportError:
        return True  # fail closed: the tree's finder will raise for its names


def _warn_once(entry: str, message: str) -> None:
    if entry not in _warned:
        _warned.add(entry)
        warnings.warn(message, UnpinnedURLWarning, stacklevel=2)


def path_hook(entry: str) -> RemotePathFinder | NullPathFinder | FailingPathFinder:
    """The ``sys.path_hooks`` callable: claims every ``https://`` and ``http://`` entry."""
    if not _is_url(entry):
        raise ImportError("not a URL", path=str(entry))
    try:
        return _finder_for(entry)
    except SecureImportError as exc:
        return FailingPathFinder(entry, exc)
    except Exception as exc:  # never let FileFinder have a URL entry
        return FailingPathFinder(entry, SecureImportError(f"cannot use {entry}: {exc!r}"))


class _CacheInvalidator:
    """A meta-path entry that finds nothing and passes ``invalidate_caches()`` on.

    ``importlib.invalidate_caches()`` calls every meta-path finder's
    ``invalidate_caches``, but ``PathFinder`` *drops* URL path finders from
    ``sys.path_importer_cache`` instead of calling theirs, so path-hook trees
    would never hear of it.
    """

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        return None

    def invalidate_caches(self) -> None:
        with _lock:
            trees = list(_trees.values())
        for tree in trees:
            tree.mark_stale()

    def __repr__(self) -> str:
        return "<secure_urlimport cache invalidator>"


_invalidator = _CacheInvalidator()


def _add_hook() -> None:
    install_excepthooks()
    if _invalidator not in sys.meta_path:
        sys.meta_path.append(_invalidator)
    if path_hook not in sys.path_hooks:
        # First: the standard FileFinder hook would accept the URL as a
        # relative directory name.
        sys.path_hooks.insert(0, path_hook)
    for entry in list(sys.path_importer_cache):
        # Entries seen before the hook existed are cached as None forever, or
        # as a FileFinder reading './https:/host/...' from disk: drop both.
        if _is_url(entry):
            del sys.path_importer_cache[entry]


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


def _remove_hook() -> None:
    remove_excepthooks()
    while _invalidator in sys.meta_path:
        sys.meta_path.remove(_invalidator)
    if _urls_still_referenced():
        # Without the hook, FileFinder would take those URLs for local
        # directories ('./https:/host/pkg/'); it stays, claiming them, and
        # (nothing being pinned or requested) finds nothing.
        log.debug("path hook kept: URLs remain on sys.path or in a package __path__")
    else:
        while path_hook in sys.path_hooks:
            sys.path_hooks.remove(path_hook)
    for entry, finder in list(sys.path_importer_cache.items()):
        if isinstance(finder, RemotePathFinder | NullPathFinder | FailingPathFinder):
            del sys.path_importer_cache[entry]
