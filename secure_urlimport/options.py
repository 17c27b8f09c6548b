"""The keyword options ``install()`` and ``trust()`` share, declared once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from ._format.keys import PubKeyArg
from ._net.fetcher import Fetcher
from .config import Config

__all__ = ["Options", "check_options", "config_of"]


class Options(TypedDict, total=False):
    """The keyword arguments of :func:`~secure_urlimport.install` and
    :func:`~secure_urlimport.trust`.  Each may be left out; None (or leaving
    it out) keeps the value of *config*, else :class:`Config`'s default."""

    #: PEM CA bundle trusted instead of the default store.
    cafile: str | None
    #: Extra request headers (e.g. an ``Authorization`` token).
    headers: dict[str, str] | None
    #: Seconds for each whole download (default 30).
    timeout: float | None
    #: How many distinct pinned keys must sign (default 1); with ``pubkey=`` only
    #: (with ``root=`` the root says how many of its signers must sign).
    threshold: int | None
    #: The root keys to pin instead of the signing keys: what ``pubkey=``
    #: accepts (a ``.pub`` path, its text, raw bytes, a key, or a list).  The
    #: tree's root chain then names the signing keys, so they rotate and are
    #: revoked without any change here.  Exactly one of ``pubkey=`` and ``root=``.
    root: PubKeyArg | None
    #: How many distinct pinned root keys must have signed the first root
    #: trusted (default 1); with ``root=`` only.
    root_threshold: int | None
    #: The tree name the manifest must carry (``sign --name``).
    name: str | None
    #: ``(user, password)`` for HTTP basic authentication.
    auth: tuple[str, str] | None
    #: ``http://host:port`` of a proxy, instead of ``HTTPS_PROXY``/``NO_PROXY``.
    proxy: str | None
    #: A PEM file with certificate and key, or a ``(cert, key)`` pair (mutual TLS).
    client_cert: str | tuple[str, str] | None
    #: Seconds after the last revalidation of the manifest within which a new
    #: process makes no request for it (default 0: always revalidate).
    max_age: float | None
    #: A :class:`Config` for everything else; the keywords above win.
    config: Config | None
    #: The network interface (tests inject hostile servers here).
    fetcher: Fetcher | None


#: The keywords that go into the Config, and the Config field each sets.
_CONFIG_FIELDS = {
    "cafile": "cafile",
    "headers": "headers",
    "timeout": "timeout",
    "threshold": "threshold",
    "name": "tree_name",
    "auth": "auth",
    "proxy": "proxy",
    "client_cert": "client_cert",
    "max_age": "max_age",
}


def check_options(function: str, options: Mapping[str, object]) -> None:
    """Refuse a keyword :class:`Options` does not declare, as Python would."""
    for keyword in options:
        if keyword not in Options.__optional_keys__:
            raise TypeError(f"{function}() got an unexpected keyword argument {keyword!r}")


def config_of(options: Options) -> Config:
    """*config* (or the default Config) with the given keywords applied."""
    config = options.get("config")
    base = config if config is not None else Config()
    return base.replace(
        **{field: options.get(keyword) for keyword, field in _CONFIG_FIELDS.items()}
    )
