"""The fetcher contract: every request a tree makes, declared in one place.

A tree never asks a fetcher what it can do: it calls these four methods and
nothing else (after python-tuf ngclient's ``FetcherInterface``), plus one
optional fifth, :meth:`Fetcher.fetch_if_modified`, if the fetcher has it.  The
real one is :class:`~secure_urlimport._net.transport.RequestsFetcher`; the
attack suite's ``RepositorySimulator`` implements the four required methods in
memory, so a test can stage a 304 Not Modified or a stale CDN edge without a
socket.

Nothing a fetcher returns is trusted: the tree verifies every byte against the
pinned keys.  A fetcher only has to respect ``max_bytes`` and raise
:class:`~secure_urlimport.errors.DownloadError` (or a subclass) on failure.

A fetcher with no cache between it and the origin (a local mirror, a test
double) may implement :meth:`Fetcher.fetch_fresh` as :meth:`Fetcher.fetch`,
and :meth:`Fetcher.fetch_if_changed` as ``(self.fetch(url, max_bytes=...), None)``:
without a validator the tree asks for the whole manifest each time.

:meth:`Fetcher.fetch_if_modified` (optional, added after the first four)
revalidates with ``Last-Modified`` as well as the ``ETag``, for servers that
send no ETag (Python's ``http.server``, some object stores).  A fetcher
without it is asked :meth:`Fetcher.fetch_if_changed` with the ETag alone
(:func:`revalidate`).
"""

from __future__ import annotations

from typing import Protocol

from .._store.cache import Validators

__all__ = [
    "FETCHER_METHODS",
    "OPTIONAL_FETCHER_METHODS",
    "Fetcher",
    "Validators",
    "missing_fetcher_methods",
    "revalidate",
]

#: What a fetcher passed as ``fetcher=`` must have (checked when it is pinned).
FETCHER_METHODS = ("fetch", "fetch_fresh", "fetch_if_changed", "close")
#: What it may have; if it has the attribute, it must be callable.
OPTIONAL_FETCHER_METHODS = ("fetch_if_modified",)


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

    # Optional (not declared here, so that a four-method fetcher still
    # matches the protocol):
    #
    #   def fetch_if_modified(self, url: str, *, max_bytes: int,
    #                         validators: Validators, fresh: bool = False
    #                         ) -> tuple[bytes | None, Validators]:
    #
    # ``(body, validators)``, or ``(None, validators)`` if the server answers
    # 304 Not Modified to ``If-None-Match: validators.etag`` and/or
    # ``If-Modified-Since: validators.last_modified`` (each sent if not None;
    # empty validators ask unconditionally).  The validators returned are
    # the response's ``ETag`` and ``Last-Modified``.


def missing_fetcher_methods(fetcher: object) -> list[str]:
    """The methods of the contract *fetcher* lacks (empty if it has them all),
    and any optional one it has that is not callable."""
    missing = [name for name in FETCHER_METHODS if not callable(getattr(fetcher, name, None))]
    return missing + [
        name
        for name in OPTIONAL_FETCHER_METHODS
        if getattr(fetcher, name, None) is not None and not callable(getattr(fetcher, name))
    ]


def revalidate(
    fetcher: Fetcher, url: str, *, max_bytes: int, validators: Validators, fresh: bool = False
) -> tuple[bytes | None, Validators]:
    """``(body, validators)``, or ``(None, validators)`` when the server says the
    copy *validators* describe is current: with the fetcher's
    ``fetch_if_modified`` if it has one, else its ``fetch_if_changed`` and
    the ETag alone."""
    conditional = getattr(fetcher, "fetch_if_modified", None)
    if conditional is not None:
        body, given = conditional(url, max_bytes=max_bytes, validators=validators, fresh=fresh)
        # A user's fetcher may hand back anything: keep only what is fit to send back.
        given = given if isinstance(given, Validators) else Validators()
        return body, Validators(given.etag, given.last_modified)
    body, etag = fetcher.fetch_if_changed(
        url, max_bytes=max_bytes, etag=validators.etag, fresh=fresh
    )
    return body, Validators(etag=etag)
