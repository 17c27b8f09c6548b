"""The fetcher contract: every request a tree makes, declared in one place.

A tree never asks a fetcher what it can do: it calls these four methods and
nothing else (after python-tuf ngclient's ``FetcherInterface``).  The real
one is :class:`~secure_urlimport._net.transport.RequestsFetcher`; the attack suite's
``RepositorySimulator`` implements the same contract in memory, so a test can
stage a 304 Not Modified or a stale CDN edge without a socket.

Nothing a fetcher returns is trusted: the tree verifies every byte against the
pinned keys.  A fetcher only has to respect ``max_bytes`` and raise
:class:`~secure_urlimport.errors.DownloadError` (or a subclass) on failure.

A fetcher with no cache between it and the origin (a local mirror, a test
double) may implement :meth:`Fetcher.fetch_fresh` as :meth:`Fetcher.fetch`,
and :meth:`Fetcher.fetch_if_changed` as ``(self.fetch(url, max_bytes=...), None)``:
without an ETag the tree keeps no copy to revalidate.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FETCHER_METHODS", "Fetcher", "missing_fetcher_methods"]

#: What a fetcher passed as ``fetcher=`` must have (checked when it is pinned).
FETCHER_METHODS = ("fetch", "fetch_fresh", "fetch_if_changed", "close")


class Fetcher(Protocol):
    """Downloads bytes; the only I/O a tree needs."""

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body of *url*; raises DownloadError beyond *max_bytes*."""
        ...

    def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
        """Like :meth:`fetch`, but past every cache on the way (a CDN edge, a
        proxy): the tree asks once more this way when a download does not
        verify, in case a cache still holds the previous release's copy."""
        ...

    def fetch_if_changed(
        self, url: str, *, max_bytes: int, etag: str | None, fresh: bool = False
    ) -> tuple[bytes | None, str | None]:
        """``(body, etag)``, or ``(None, etag)`` if the server answers 304 Not
        Modified to ``If-None-Match: etag`` (the copy the tree holds is current);
        *etag* None asks unconditionally; *fresh* goes past caches as
        :meth:`fetch_fresh` does.  The returned etag is None if the server
        gave none fit to send back."""
        ...

    def close(self) -> None:
        """Release connections; the fetcher must not be used afterwards."""
        ...


def missing_fetcher_methods(fetcher: object) -> list[str]:
    """The methods of the contract *fetcher* lacks (empty if it has them all)."""
    return [name for name in FETCHER_METHODS if not callable(getattr(fetcher, name, None))]
