"""The public entry points: ``install``, ``trust``, ``uninstall`` and the path hook.

They wrap one :class:`~secure_urlimport._import.registry.Registry`, :data:`registry`,
which holds the state (pins, trees, warnings, the path hook); see registry.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Unpack

from ._client.remote import normalize_url
from ._format.keys import PubKeyArg, TrustedKeys
from ._import.finder import Importer
from ._import.registry import Pin, Registry, UnpinnedURLWarning
from ._net.fetcher import missing_fetcher_methods
from .errors import ConfigurationError, SecureImportError
from .options import Options, check_options, config_of

__all__ = [
    "UnpinnedURLWarning",
    "install",
    "install_path_hook",
    "remove_path_hook",
    "trust",
    "uninstall",
]

log = logging.getLogger("secure_urlimport")

#: The import-system state of this process.  Tests start afresh with
#: ``registry.reset()``.
registry = Registry()

#: The ``sys.path_hooks`` callable: claims every ``https://`` and ``http://`` entry.
path_hook = registry.path_hook


def _new_pin(
    function: str, url: str | Sequence[str], pubkey: PubKeyArg | None, options: Options
) -> tuple[str, Pin]:
    """The normalised URL and a pin for it; keyword *options* override their *config*.

    *url* may be a list: the first is the tree's URL, the others its mirrors.
    """
    check_options(function, options)
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ConfigurationError("give at least one https:// URL")
    primary, *mirrors = (normalize_url(u) for u in urls)
    cfg = config_of(options)
    trusted, root_pin = _keys_pinned(function, pubkey, options, cfg.threshold)
    fetcher = options.get("fetcher")
    if fetcher is not None:
        _check_fetcher(function, fetcher)
    return primary, Pin(trusted, cfg, fetcher, mirrors=tuple(mirrors), root_pin=root_pin)


def _keys_pinned(
    function: str, pubkey: PubKeyArg | None, options: Options, threshold: int
) -> tuple[TrustedKeys | None, TrustedKeys | None]:
    """``(signing keys, None)`` for ``pubkey=``, ``(None, root keys)`` for ``root=``."""
    root = options.get("root")
    root_threshold = options.get("root_threshold")
    if (pubkey is None) == (root is None):
        raise ConfigurationError(
            f"{function}() needs exactly one of pubkey= and root=: root='root.pub' pins "
            "the publisher's root key (its roots then name the signing keys, which "
            "rotate without a change here); pubkey='publisher.pub' pins the signing key"
        )
    if root is None:
        if root_threshold is not None:
            raise ConfigurationError(
                f"{function}(root_threshold=...) goes with root=; with pubkey= use threshold="
            )
        return TrustedKeys.from_arg(pubkey, threshold), None  # type: ignore[arg-type]
    if options.get("threshold") is not None:
        raise ConfigurationError(
            f"{function}(root=..., threshold=...): with root= the root says how many of "
            "its signers must sign; drop threshold= (root_threshold= sets how many "
            "pinned root keys must sign)"
        )
    return None, TrustedKeys.from_arg(root, 1 if root_threshold is None else root_threshold)


def _check_fetcher(function: str, fetcher: object) -> None:
    # Checked once here: the tree calls all four methods without probing, so a
    # fetcher written for the old two-method protocol would otherwise fail
    # with an AttributeError deep inside an import.
    missing = missing_fetcher_methods(fetcher)
    if missing:
        raise ConfigurationError(
            f"{function}(fetcher=...): {type(fetcher).__name__} lacks {', '.join(missing)} of "
            "the Fetcher contract (fetch, fetch_fresh, fetch_if_changed, close, and "
            "optionally fetch_if_modified); a fetcher with no cache in front of it may "
            "define fetch_fresh as fetch and fetch_if_changed as (fetch(...), None): see "
            "secure_urlimport.Fetcher"
        )


def trust(
    url: str | Sequence[str], pubkey: PubKeyArg | None = None, **options: Unpack[Options]
) -> None:
    """Pin *pubkey* (or, ``root=``, the root keys) for every tree at or below
    the https *url* prefix.

    With the path hook installed (``install_path_hook()``), ``https://``
    entries on ``sys.path`` under *url* become importable; each entry is the
    root of a signed tree.  Takes the same options as :func:`install`.
    """
    prefix, pin = _new_pin("trust", url, pubkey, options)
    pin.get_fetcher()  # a bad cafile or client_cert fails here, not inside an import
    _warm_transport()
    registry.trust(prefix, pin)


def install(
    url: str | Sequence[str], pubkey: PubKeyArg | None = None, **options: Unpack[Options]
) -> Importer:
    """Make the signed tree at *url* importable with ``import``; return its finder.

    The manifest is fetched and verified now, so a wrong key, URL or CA fails
    here rather than at the first import.  Options:

    - *url*: the tree's https URL, or a list of URLs: the tree and its mirrors,
      tried in turn (the first one that serves valid content is used; the
      first URL names the modules).
    - *pubkey*: a ``.pub`` path, its text, 32 raw bytes, an ``Ed25519PublicKey``,
      or a list of these (any listed key may sign; see *threshold*).
    - *root*: instead of *pubkey*, the publisher's root key(s), accepted in
      the same forms.  Before each manifest fetch the tree's root chain
      (``secure-urlimport.root.1``, ``.2``, …) is walked from the newest root
      trusted (kept with the rollback state) to the newest published, and the
      manifest is verified against the signing keys that root lists: keys
      rotate and are revoked with ``secure-urlimport root update``, with no
      change here.  Exactly one of *pubkey* and *root*.
    - *root_threshold*: how many distinct pinned root keys must sign (default 1).
    - *cafile*: PEM CA bundle trusted instead of the default store.
    - *headers*: extra request headers (e.g. an ``Authorization`` token).
    - *timeout*: seconds for each whole download.
    - *threshold*: how many distinct pinned keys must sign (default 1); with
      *pubkey* only (a root sets its own).
    - *name*: the tree name the manifest must carry (``sign --name``); pin it
      when one key signs several trees.
    - *auth*: ``(user, password)`` for HTTP basic authentication.
    - *proxy*: ``http://host:port`` of a proxy to tunnel through, instead of
      ``HTTPS_PROXY``/``NO_PROXY`` from the environment.
    - *client_cert*: a PEM file with certificate and key, or a ``(cert, key)``
      pair, for servers that require mutual TLS.
    - *max_age*: seconds after the last successful revalidation of the
      manifest within which a new process uses the cached one (verified
      again) without any request; new releases and revocations are seen up
      to that much later (default 0: revalidate on every start).
    - *config*: a :class:`Config` for everything else; the keywords above win.
    - *fetcher*: the network interface (tests inject hostile servers here).

    Calling it again for the same URL returns the existing importer.
    """
    prefix, pin = _new_pin("install", url, pubkey, options)
    existing = registry.installed_importer(prefix, pin)
    if existing is not None:
        return existing
    # Network I/O outside the registry's lock: the path hook takes it while the
    # import system holds its global lock, and this thread may need that lock.
    tree = pin.new_tree(prefix, pin.mirrors)
    try:
        tree.manifest()  # fail now, before anything is installed
    except SecureImportError:
        tree.close()
        raise
    importer = registry.install(prefix, pin, tree)
    log.debug("installed %r", importer)
    return importer


def uninstall(url: str) -> None:
    """Remove the importer, pin, path-finder cache entries and state for *url*."""
    registry.uninstall(url)


def install_path_hook() -> None:
    """Make pinned ``https://`` entries on ``sys.path`` (and in ``__path__``) importable.

    Entries that are not pinned are claimed and ignored, with one warning each.
    """
    _warm_transport()
    registry.install_path_hook()


def remove_path_hook() -> None:
    """Undo :func:`install_path_hook` (``install()`` keeps its own finders)."""
    registry.remove_path_hook()


def _warm_transport() -> None:
    """Import requests now, not during the first manifest fetch inside ``find_spec``,
    where its own imports (and optional ones like chardet) would walk sys.path."""
    from ._net.transport import preload

    preload()
