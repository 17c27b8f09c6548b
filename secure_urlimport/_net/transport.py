"""The network boundary: the one place that talks HTTPS.

The verification core does no I/O: it is handed a :class:`Fetcher` (the
contract is in ``fetcher.py``), so tests can play a hostile server.
:class:`RequestsFetcher` is the real one.  Its failures are DownloadErrors;
requests/urllib3 exceptions never escape, and header values (credentials) never
reach messages, logs or reprs.  requests is imported on first use, to keep
``import secure_urlimport`` cheap.

What a server's answer means is decided by pure functions (``responses.py``,
``failures.py``); one download's I/O loop is ``download.py``; the requests
session recipe is ``requests_session.py``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from .. import forksafe
from .._store.cache import Validators
from ..config import Config
from ..errors import ConfigurationError, InsecureURLError, redact
from .deadline import Watchdog
from .download import Download
from .fetcher import Fetcher  # the contract, re-exported: ``from .transport import Fetcher``
from .requests_session import new_session, preload, requests_parts
from .responses import Origin as _Origin
from .responses import https_problem as _https_problem
from .responses import origin as _origin

if TYPE_CHECKING:
    import requests

__all__ = ["Fetcher", "RequestsFetcher", "preload", "require_https"]

log = logging.getLogger("secure_urlimport")


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
        self._lock = forksafe.Lock()
        self._sessions: dict[_Origin, requests.Session] = {}
        self._env_proxies: dict[_Origin, dict[str, str]] = {}
        forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        # The parent's keep-alive TLS connections are not the child's to use:
        # two processes writing one TLS stream break it ("bad record MAC").
        # Dropped, never closed (forksafe.py); the child connects afresh.
        self._sessions = {}

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
        body, _ = self.fetch_if_modified(url, max_bytes=max_bytes, validators=Validators())
        assert body is not None  # only a conditional request can come back empty
        return body

    def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
        """Like :meth:`fetch`, but asks every cache on the way (a CDN edge, a
        proxy) to revalidate with the origin: ``Cache-Control: no-cache``."""
        body, _ = self.fetch_if_modified(
            url, max_bytes=max_bytes, validators=Validators(), fresh=True
        )
        assert body is not None
        return body

    def fetch_if_changed(
        self, url: str, *, max_bytes: int, etag: str | None, fresh: bool = False
    ) -> tuple[bytes | None, str | None]:
        """``(body, etag)``, or ``(None, etag)`` if the server answers 304 Not
        Modified to ``If-None-Match: etag``; *fresh* asks caches to revalidate."""
        body, validators = self.fetch_if_modified(
            url, max_bytes=max_bytes, validators=Validators(etag=etag), fresh=fresh
        )
        return body, validators.etag

    def fetch_if_modified(
        self, url: str, *, max_bytes: int, validators: Validators, fresh: bool = False
    ) -> tuple[bytes | None, Validators]:
        """``(body, validators)``, or ``(None, validators)`` if the server
        answers 304 Not Modified to ``If-None-Match``/``If-Modified-Since``
        (from *validators*, each if set); *fresh* asks caches to revalidate."""
        require_https(url)
        # A Validators holds only values fit to send back (it drops the others).
        validators = Validators(validators.etag, validators.last_modified)
        log.debug("fetch %s%s", url, " (if changed)" if validators else "")
        started = time.monotonic()
        with Watchdog(self.config.timeout) as watchdog:
            download = Download(self, url, max_bytes, watchdog, validators, fresh=fresh)
            body = download.run()
        elapsed_ms = (time.monotonic() - started) * 1000
        if body is None:
            log.debug("not modified: %s (%.0f ms)", url, elapsed_ms)
        else:
            log.debug("fetched %s (%d bytes, %.0f ms)", url, len(body), elapsed_ms)
        return body, download.validators

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
            proxies = self._env_proxies[origin] = requests_parts().environ_proxies(url)
        return proxies

    def _new_session(self) -> requests.Session:
        return new_session(self.config, self.verify)
