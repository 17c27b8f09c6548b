"""One download: the short I/O loop of a GET with its redirects, under one deadline.

Every decision about what the server answered is a pure function of
``responses.py`` (statuses, redirects, lengths) or ``failures.py`` (timeouts,
broken connections, proxy and TLS failures); this module sends the requests,
reads the body within its cap and turns a :class:`~.responses.Refusal` into
the DownloadError naming the URL.  requests/urllib3 exceptions never escape.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from .._store.cache import Validators
from ..config import Config
from ..errors import DownloadError, HTTPStatusError, shown
from .deadline import Watchdog
from .failures import broke_off, proxy_failed, root_cause, timed_out, tls_failed
from .requests_session import requests_parts
from .responses import (
    Refusal,
    body_refusal,
    expected_length,
    last_modified_validator,
    redirect,
    too_many_redirects,
)

if TYPE_CHECKING:
    import requests

__all__ = ["Connections", "Download"]

log = logging.getLogger("secure_urlimport")

_CHUNK = 65536


class Connections(Protocol):
    """What a download needs from its fetcher (a RequestsFetcher)."""

    config: Config
    verify: str | bool

    def session(self, url: str) -> requests.Session: ...

    def proxies_for(self, url: str) -> dict[str, str]: ...


class Download:
    """One fetch: the URL asked for, where redirects have led, and one deadline."""

    def __init__(
        self,
        connections: Connections,
        url: str,
        max_bytes: int,
        watchdog: Watchdog,
        validators: Validators | None = None,
        *,
        fresh: bool = False,
    ) -> None:
        self.connections = connections
        self.url = self.current = url
        self.max_bytes = max_bytes
        self.watchdog = watchdog
        # Sent as If-None-Match / If-Modified-Since; then the ones the server gave.
        self.validators = validators or Validators()
        self.headers = _conditional_headers(self.validators)
        if fresh:
            self.headers.update({"Cache-Control": "no-cache", "Pragma": "no-cache"})

    def run(self) -> bytes | None:
        """GET the URL, following at most max_redirects same-origin redirects;
        None if the server says the copy we hold (``validators``) is current."""
        limit = self.connections.config.max_redirects
        for hop in range(limit + 1):
            response = self._get()
            try:
                if response.status_code == 304 and self.validators:
                    return None
                where = redirect(
                    response.status_code, response.headers.get("Location"), self.current
                )
                if isinstance(where, Refusal):
                    raise self._error(where)
                if where is None:
                    body = self._body(response)
                    self.validators = _validators_of(response)
                    return body
            finally:
                response.close()  # on error this drops the connection mid-body
            log.debug("redirect %d: %s -> %s", hop + 1, self.current, shown(where))
            self.current = where
        raise self._error(too_many_redirects(limit))

    def _error(self, refusal: Refusal) -> DownloadError:
        error = refusal.error(f"cannot download {self.current}: {refusal.problem}", path=self.url)
        if isinstance(error, HTTPStatusError) and refusal.status is not None:
            error.status = refusal.status
        return error

    def _get(self) -> requests.Response:
        connections = self.connections
        remaining = self.watchdog.remaining()
        try:
            if remaining <= 0:
                raise TimeoutError  # spent on earlier redirects; translated below
            response = connections.session(self.current).get(
                self.current,
                headers=self.headers or None,
                stream=True,
                allow_redirects=False,
                timeout=(remaining, remaining),
                verify=connections.verify,
                cert=connections.config.client_cert,
                proxies=connections.proxies_for(self.current),
            )
        except requests_parts().errors as exc:
            raise self._translate(exc) from None
        # In case the connection hook is missing (e.g. SOCKS): watch the body at least.
        self.watchdog.watch(getattr(getattr(response.raw, "connection", None), "sock", None))
        return response

    def _body(self, response: requests.Response) -> bytes:
        declared = expected_length(response.status_code, response.headers, self.max_bytes)
        if isinstance(declared, Refusal):
            raise self._error(declared)
        body = bytearray()
        try:
            self._read_capped(response, body)
        except requests_parts().errors as exc:
            raise self._translate(exc, received=len(body)) from None
        if self.watchdog.fired:  # a body without length "ends" cleanly when cut
            raise self._timeout()
        refusal = body_refusal(len(body), declared, self.max_bytes)
        if refusal is not None:
            raise self._error(refusal)
        return bytes(body)

    def _read_capped(self, response: requests.Response, body: bytearray) -> None:
        """Read the raw, never decoded, body into ``body``; stop past max_bytes.

        ``read1`` (urllib3 2.x) returns after one ``recv``, so a slow body is
        checked against the deadline between reads; with ``read(n)``, which waits
        for all n bytes (urllib3 1.26), the watchdog's shutdown ends the wait.  Memory stays
        within max_bytes + 1.
        """
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        while len(body) <= self.max_bytes and not self.watchdog.fired:
            data = read(min(_CHUNK, self.max_bytes + 1 - len(body)), decode_content=False)
            if not data:
                return
            body += data

    def _timeout(self) -> DownloadError:
        seconds = self.connections.config.timeout
        return self._error(timed_out(seconds, budgeted=self.watchdog.budgeted))

    def _translate(self, exc: Exception, received: int | None = None) -> DownloadError:
        """The error to raise instead of a requests/urllib3/socket one."""
        parts = requests_parts()
        if self.watchdog.fired or self.watchdog.remaining() <= 0 or isinstance(exc, parts.timeouts):
            return self._timeout()
        cause = root_cause(exc)
        if received is not None:
            return self._error(broke_off(received, cause))
        if isinstance(exc, parts.proxy_error):
            proxy = self.connections.proxies_for(self.current).get("https", "?")
            from_option = bool(self.connections.config.proxy)
            return self._error(proxy_failed(proxy, from_option=from_option, cause=cause))
        if isinstance(exc, parts.ssl_error):
            return self._error(tls_failed(urlsplit(self.current).hostname, cause))
        return self._error(Refusal(DownloadError, cause))


def _conditional_headers(validators: Validators) -> dict[str, str]:
    """The headers that ask for the body only if it changed since *validators*.
    Both when both are known: a server that knows ETags decides by
    If-None-Match and ignores If-Modified-Since (RFC 9110, 13.2.2)."""
    headers = {}
    if validators.etag is not None:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified is not None:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def _validators_of(response: requests.Response) -> Validators:
    """The response's ETag and Last-Modified, each if it is sane to send back
    (and the Last-Modified only if it is older than the response by a second)."""
    headers = response.headers
    last_modified = last_modified_validator(headers.get("Last-Modified"), headers.get("Date"))
    return Validators(headers.get("ETag"), last_modified)
