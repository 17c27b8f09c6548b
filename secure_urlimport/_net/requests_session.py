"""The requests/urllib3 side of the transport: imported on first use, and the
one recipe for a session.

requests and urllib3 cost tens of milliseconds to import, so nothing here is
imported until the first download (or :func:`preload`).  The session a
:class:`~secure_urlimport._net.transport.RequestsFetcher` makes per origin ignores
the environment (no ``~/.netrc``, no CA override), never asks for compressed
bodies, leaves redirects to ``download.py``, and hands every socket it opens
to the current download's watchdog (``deadline.py``).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config import Config
from .deadline import current_watchdog

if TYPE_CHECKING:
    import requests
    from requests.adapters import HTTPAdapter

__all__ = ["RequestsParts", "new_session", "preload", "requests_parts"]

#: Keep-alive connections kept per origin (parallel downloads share them).
POOL_SIZE = 16


class RequestsParts(NamedTuple):
    """The parts of requests/urllib3 the transport uses, imported on first use."""

    session: Callable[[], requests.Session]
    adapter: Callable[..., HTTPAdapter]
    environ_proxies: Callable[[str], dict[str, str]]
    ssl_error: type[Exception]
    proxy_error: type[Exception]
    timeouts: tuple[type[Exception], ...]
    errors: tuple[type[Exception], ...]


@functools.cache
def requests_parts() -> RequestsParts:
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
            # download.py follows redirects itself, after checking them; even with
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
    return RequestsParts(
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
    requests_parts()


def new_session(config: Config, verify: str | bool) -> requests.Session:
    """A session for one origin of a tree configured by *config*, checking
    certificates against *verify* (a CA file, or True for the default store)."""
    parts = requests_parts()
    session = parts.session()
    session.trust_env = False
    session.verify = verify
    session.headers["User-Agent"] = _user_agent()
    session.headers.update(config.headers)
    if config.auth is not None:
        session.headers["Authorization"] = _basic_auth(*config.auth)
    # Always identity, whatever headers= says: never inflate (decompression bombs).
    session.headers["Accept-Encoding"] = "identity"
    session.mount("https://", parts.adapter(pool_connections=1, pool_maxsize=POOL_SIZE))
    return session


@functools.cache
def _user_agent() -> str:
    from importlib import metadata  # needed once, when a session is made

    try:
        return f"secure-urlimport/{metadata.version('secure_urlimport')}"
    except metadata.PackageNotFoundError:
        return "secure-urlimport/0+unknown"  # running from a source checkout


def _basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
