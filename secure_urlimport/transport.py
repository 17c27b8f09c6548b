"""The network boundary: the one place that talks HTTPS.

The verification core does no I/O: it is handed a :class:`Fetcher` (the
contract is in ``fetcher.py``), so tests can play a hostile server.
:class:`RequestsFetcher` is the real one.  Its failures are DownloadErrors;
requests/urllib3 exceptions never escape, and header values (credentials) never
reach messages, logs or reprs.  requests is imported on first use, to keep
``import secure_urlimport`` cheap.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from .cache import is_sane_etag
from .config import Config
from .deadline import Watchdog, current_watchdog
from .errors import (
    ConfigurationError,
    DownloadError,
    DownloadTimeoutError,
    HTTPStatusError,
    InsecureURLError,
    RedirectError,
    ResponseTooLargeError,
    TLSError,
    redact,
    shown,
)
from .fetcher import Fetcher  # the contract, re-exported: ``from .transport import Fetcher``
from .responses import Origin as _Origin
from .responses import declared_length, redirect_target, status_text
from .responses import https_problem as _https_problem
from .responses import origin as _origin
from .responses import root_cause as _root_cause

if TYPE_CHECKING:
    import requests
    from requests.adapters import HTTPAdapter

__all__ = ["Fetcher", "RequestsFetcher", "preload", "require_https"]

log = logging.getLogger("secure_urlimport")

_CHUNK = 65536
_POOL_SIZE = 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def require_https(url: str) -> str:
    """Return ``url`` unchanged, or raise InsecureURLError if it is not plain https."""
    problem = _https_problem(url)
    if problem is not None:
        shown = redact(url)
        raise InsecureURLError(
            f"refusing to fetch {shown!r}: {problem[0]}; code is only fetched over "
            f"https://, so {problem[1]}",
            path=shown,
        )
    return url


class _Net(NamedTuple):
    """The parts of requests/urllib3 this module uses, imported on first use."""

    session: Callable[[], requests.Session]
    adapter: Callable[..., HTTPAdapter]
    environ_proxies: Callable[[str], dict[str, str]]
    ssl_error: type[Exception]
    proxy_error: type[Exception]
    timeouts: tuple[type[Exception], ...]
    errors: tuple[type[Exception], ...]


@functools.cache
def _net() -> _Net:
    # Lazy: requests and urllib3 cost tens of milliseconds to import.
    from http.client import HTTPException

    import requests
    import urllib3
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPSConnection

    class WatchedConnection(HTTPSConnection):
        """Hands its socket to the current watchdog as soon as it exists (a
        proxy tunnel and the TLS handshake are read before any response), and
        again before waiting for headers (a reused keep-alive connection)."""

        def _new_conn(self) -> Any:
            # Watched from birth: a proxy's CONNECT reply is read before any
            # response, and a dripping proxy must not outlive the deadline.
            sock = super()._new_conn()
            watchdog = current_watchdog()
            if watchdog is not None:
                watchdog.watch(sock)
            return sock

        def getresponse(self) -> Any:  # urllib3's return type varies by version
            watchdog = current_watchdog()
            if watchdog is not None:
                watchdog.watch(self.sock)
            return super().getresponse()

    class Session(requests.Session):
        def get_redirect_target(self, resp: Any) -> None:
            # _Download follows redirects itself, after checking them; even with
            # allow_redirects=False requests would parse Location (to offer
            # ``response.next``), and raise a bare ValueError on "https://[".
            return None

    class WatchedPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = WatchedConnection

    def hook(manager: Any) -> Any:  # a urllib3 PoolManager or ProxyManager
        classes = getattr(manager, "pool_classes_by_scheme", None)
        # Only replace the stock pool: a SOCKS manager's own pool must stay.
        if isinstance(classes, dict) and classes.get("https") is urllib3.HTTPSConnectionPool:
            manager.pool_classes_by_scheme = {**classes, "https": WatchedPool}
        return manager

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            hook(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            return hook(super().proxy_manager_for(proxy, **kwargs))

    exc = requests.exceptions
    return _Net(
        session=Session,
        adapter=WatchedAdapter,
        environ_proxies=requests.utils.get_environ_proxies,
        ssl_error=exc.SSLError,
        proxy_error=exc.ProxyError,
        timeouts=(exc.Timeout, urllib3.exceptions.TimeoutError, TimeoutError),
        errors=(exc.RequestException, urllib3.exceptions.HTTPError, OSError, HTTPException),
    )


def preload() -> None:
    """Import requests and urllib3 now (they are otherwise imported on first use)."""
    _net()


@functools.cache
def _user_agent() -> str:
    from importlib import metadata  # needed once, when a session is made

    try:
        return f"secure-urlimport/{metadata.version('secure_urlimport')}"
    except metadata.PackageNotFoundError:
        return "secure-urlimport/0+unknown"  # running from a source checkout


class RequestsFetcher:
    """Fetches over HTTPS with requests, refusing anything a hostile server might try.

    * One keep-alive ``requests.Session`` per origin, made on first use.
    * ``trust_env`` is off, so ``~/.netrc`` credentials are never sent and the
      environment cannot swap the CA; proxies (``HTTPS_PROXY``, ``NO_PROXY``)
      are still honoured, looked up once per origin (or ``config.proxy``).
    * CA store: ``config.cafile`` if given -- ``REQUESTS_CA_BUNDLE`` cannot
      override it.  Without it, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``
      (read once, here) so machine-wide CA configuration keeps working; failing
      those, requests' default store (certifi).
    * ``config.headers`` go with every request.  One fetcher serves one trusted
      URL and only same-origin redirects are followed, so they only ever reach
      that origin.
    * ``config.timeout`` bounds each whole download -- connecting, TLS, headers,
      body and redirects -- not each read; inside an import step
      (deadline.import_step) all downloads from one source share it.  Not
      covered: the DNS lookup, which Python cannot interrupt.
    """

    def __init__(self, config: Config) -> None:
        if config.cafile is not None and not os.path.exists(config.cafile):
            raise ConfigurationError(f"cafile {config.cafile!r} does not exist")
        self.config = config
        env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.verify: str | bool = config.cafile or env_ca or True
        self._lock = threading.Lock()
        self._sessions: dict[_Origin, requests.Session] = {}
        self._env_proxies: dict[_Origin, dict[str, str]] = {}

    def __repr__(self) -> str:
        with self._lock:
            origins = sorted(f"https://{host}:{port}" for _, host, port in self._sessions)
        return f"RequestsFetcher(origins={origins!r})"

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        body, _ = self.fetch_if_changed(url, max_bytes=max_bytes, etag=None)
        assert body is not None  # only a conditional request can come back empty
        return body

    def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
        """Like :meth:`fetch`, but asks every cache on the way (a CDN edge, a
        proxy) to revalidate with the origin: ``Cache-Control: no-cache``."""
        body, _ = self.fetch_if_changed(url, max_bytes=max_bytes, etag=None, fresh=True)
        assert body is not None
        return body

    def fetch_if_changed(
        self, url: str, *, max_bytes: int, etag: str | None, fresh: bool = False
    ) -> tuple[bytes | None, str | None]:
        """``(body, etag)``, or ``(None, etag)`` if the server answers 304 Not
        Modified to ``If-None-Match: etag``; *fresh* asks caches to revalidate."""
        require_https(url)
        if etag is not None and not is_sane_etag(etag):
            etag = None  # from an edited cache: ask unconditionally
        log.debug("fetch %s%s", url, " (if changed)" if etag else "")
        started = time.monotonic()
        with Watchdog(self.config.timeout) as watchdog:
            download = _Download(self, url, max_bytes, watchdog, etag, fresh=fresh)
            body = download.run()
        elapsed_ms = (time.monotonic() - started) * 1000
        if body is None:
            log.debug("not modified: %s (%.0f ms)", url, elapsed_ms)
        else:
            log.debug("fetched %s (%d bytes, %.0f ms)", url, len(body), elapsed_ms)
        return body, download.etag

    def session(self, url: str) -> requests.Session:
        """The session for ``url``'s origin, made on first use."""
        origin = _origin(url)
        with self._lock:
            if origin not in self._sessions:
                self._sessions[origin] = self._new_session()
            return self._sessions[origin]

    def proxies_for(self, url: str) -> dict[str, str]:
        """``config.proxy`` if given, else what HTTPS_PROXY/NO_PROXY say for
        ``url``'s origin (read once per origin: scanning the environment cost
        a sixth of each small download)."""
        if self.config.proxy is not None:
            return {"https": self.config.proxy}
        origin = _origin(url)
        proxies = self._env_proxies.get(origin)
        if proxies is None:
            proxies = self._env_proxies[origin] = _net().environ_proxies(url)
        return proxies

    def _new_session(self) -> requests.Session:
        net = _net()
        session = net.session()
        session.trust_env = False
        session.verify = self.verify
        session.headers["User-Agent"] = _user_agent()
        session.headers.update(self.config.headers)
        if self.config.auth is not None:
            session.headers["Authorization"] = _basic_auth(*self.config.auth)
        # Always identity, whatever headers= says: never inflate (decompression bombs).
        session.headers["Accept-Encoding"] = "identity"
        session.mount("https://", net.adapter(pool_connections=1, pool_maxsize=_POOL_SIZE))
        return session


def _basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


_E = TypeVar("_E", bound=DownloadError)


class _Download:
    """One fetch: the URL asked for, where redirects have led, and one deadline."""

    def __init__(
        self,
        fetcher: RequestsFetcher,
        url: str,
        max_bytes: int,
        watchdog: Watchdog,
        etag: str | None = None,
        *,
        fresh: bool = False,
    ) -> None:
        self.fetcher = fetcher
        self.url = self.current = url
        self.max_bytes = max_bytes
        self.watchdog = watchdog
        self.etag = etag  # sent as If-None-Match; then the one the server gave
        self.headers = {"If-None-Match": etag} if etag else {}
        if fresh:
            self.headers.update({"Cache-Control": "no-cache", "Pragma": "no-cache"})

    def run(self) -> bytes | None:
        """GET the URL, following at most max_redirects same-origin redirects;
        None if the server says the copy we hold (``etag``) is current."""
        limit = self.fetcher.config.max_redirects
        for hop in range(limit + 1):
            response = self._get()
            try:
                if response.status_code == 304 and self.etag is not None:
                    return None
                target = self._redirect_target(response)
                if target is None:
                    body = self._body(response)
                    self.etag = _etag_of(response)
                    return body
            finally:
                response.close()  # on error this drops the connection mid-body
            log.debug("redirect %d: %s -> %s", hop + 1, self.current, shown(target))
            self.current = target
        raise self._error(RedirectError, f"more than {limit} redirects (a loop?); fix the server")

    def _error(self, cls: type[_E], problem: str) -> _E:
        return cls(f"cannot download {self.current}: {problem}", path=self.url)

    def _get(self) -> requests.Response:
        net, fetcher = _net(), self.fetcher
        remaining = self.watchdog.remaining()
        try:
            if remaining <= 0:
                raise TimeoutError  # spent on earlier redirects; translated below
            response = fetcher.session(self.current).get(
                self.current,
                headers=self.headers or None,
                stream=True,
                allow_redirects=False,
                timeout=(remaining, remaining),
                verify=fetcher.verify,
                cert=fetcher.config.client_cert,
                proxies=fetcher.proxies_for(self.current),
            )
        except net.errors as exc:
            raise self._translate(exc) from None
        # In case the connection hook is missing (e.g. SOCKS): watch the body at least.
        self.watchdog.watch(getattr(getattr(response.raw, "connection", None), "sock", None))
        return response

    def _redirect_target(self, response: requests.Response) -> str | None:
        """The same-origin URL to go to next, or None if this is not a redirect."""
        if response.status_code not in _REDIRECTS:
            return None
        location = response.headers.get("Location")
        if not location:
            raise self._status_error(response.status_code)
        target, problem = redirect_target(self.current, location)
        if target is None:
            raise self._error(RedirectError, problem)
        return target

    def _body(self, response: requests.Response) -> bytes:
        if response.status_code != 200:
            raise self._status_error(response.status_code)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise self._error(
                DownloadError,
                f"served with Content-Encoding {shown(encoding, 40)}; the server must serve "
                "files uncompressed (they are never inflated)",
            )
        declared = self._declared_length(response)
        limit = f"over the limit of {self.max_bytes} bytes"
        if declared is not None and declared > self.max_bytes:
            raise self._error(ResponseTooLargeError, f"it announces {declared} bytes, {limit}")
        body = bytearray()
        try:
            self._read_capped(response, body)
        except _net().errors as exc:
            raise self._translate(exc, received=len(body)) from None
        if self.watchdog.fired:  # a body without length "ends" cleanly when cut
            raise self._timeout()
        if len(body) > self.max_bytes:
            raise self._error(ResponseTooLargeError, f"its body is larger, {limit}")
        if declared is not None and len(body) != declared:
            raise self._error(
                DownloadError,
                f"truncated: received {len(body)} of {declared} bytes "
                "(the server closed the connection early)",
            )
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

    def _declared_length(self, response: requests.Response) -> int | None:
        value = response.headers.get("Content-Length")
        # Under chunked framing Content-Length is ignored (RFC 9112, 6.3).
        if value is None or "Transfer-Encoding" in response.headers:
            return None
        length, problem = declared_length(value)
        if length is not None:
            return length
        if value.strip().isascii() and value.strip().isdigit():  # too long for any cap
            raise self._error(
                ResponseTooLargeError, f"{problem}, over the limit of {self.max_bytes} bytes"
            )
        raise self._error(DownloadError, problem)

    def _timeout(self) -> DownloadTimeoutError:
        seconds = self.fetcher.config.timeout
        # A step's budget (deadline.import_step) may have been spent by the
        # downloads before this one; say so, or "within 5 s" after 0.3 s misleads.
        spent = " (timeout= bounds all downloads from one source for one import)"
        return self._error(
            DownloadTimeoutError,
            f"did not finish within {seconds:g} s{spent if self.watchdog.budgeted else ''}; "
            "raise timeout= or check the server",
        )

    def _status_error(self, status: int) -> HTTPStatusError:
        error = self._error(HTTPStatusError, status_text(status))
        error.status = status
        return error

    def _translate(self, exc: Exception, received: int | None = None) -> DownloadError:
        """The error to raise instead of a requests/urllib3/socket one."""
        net = _net()
        if self.watchdog.fired or self.watchdog.remaining() <= 0 or isinstance(exc, net.timeouts):
            return self._timeout()
        cause = _root_cause(exc)
        if received is not None:
            return self._error(DownloadError, f"broke off after {received} bytes: {cause}")
        if isinstance(exc, net.proxy_error):
            proxy = self.fetcher.proxies_for(self.current).get("https", "?")
            source = "proxy=" if self.fetcher.config.proxy else "HTTPS_PROXY"
            return self._error(
                DownloadError,
                f"the proxy {redact(proxy)} (from {source}) failed: {cause}; check that "
                "it runs and accepts the credentials, or set NO_PROXY for this host",
            )
        if isinstance(exc, net.ssl_error):
            return self._error(
                TLSError,
                f"TLS check failed for {urlsplit(self.current).hostname}: {cause}; pass "
                "cafile= with the CA that signed the server certificate, or check the "
                "hostname (or client_cert=, if the server requires one)",
            )
        return self._error(DownloadError, cause)


def _etag_of(response: requests.Response) -> str | None:
    """The response's ETag if it is a sane one to send back (ASCII, short)."""
    value = response.headers.get("ETag")
    return value if is_sane_etag(value) else None
