"""What every part of one tree shares: where it is, whom it trusts, how it fetches.

One frozen value made by :class:`~.remote.RemoteTree` and handed to each part
(current manifest, byte sources, bundle, prefetch), instead of each part
taking and storing the same six arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._format.keys import TrustedKeys
from .._net.fetcher import Fetcher
from .._net.mirrors import Mirrors
from .._store.cache import FileCache
from ..config import Config

__all__ = ["TreeContext"]


@dataclass(frozen=True)
class TreeContext:
    #: The tree's identity: its first URL, whichever mirror serves the bytes.
    url: str
    #: The pinned signing keys (``pubkey=``); None when a root names them.
    trusted: TrustedKeys | None
    config: Config
    fetcher: Fetcher
    #: Where the bytes come from: the URL, then any mirrors.
    sources: Mirrors
    #: The untrusted disk cache: nothing read from it is used unverified.
    cache: FileCache
    #: The pinned root keys (``root=``); None with ``pubkey=``.  Exactly one
    #: of the two is set.  Files are verified against the keys their release
    #: was verified against (``Manifest.signing_keys``), never these.
    root_pin: TrustedKeys | None = None
