"""A CDN tier for the tests: an nginx ``proxy_cache`` edge in front of an nginx origin.

Not a test module: ``tests/conftest.py`` wraps :func:`start_edge` in the
``edge`` fixture.  Both servers are tests/nginx.py's: TLS on loopback with the
test CA, each in its own scratch directory.  The edge talks TLS to the origin
and verifies its certificate (``proxy_ssl_verify``), keeps 200s for
``ttl`` whatever the origin's ``Cache-Control`` says (the worst case: a CDN
with its own TTL), serves stale copies when the origin fails, and collapses
concurrent misses (``proxy_cache_lock``).

Real CDNs differ on a client's ``Cache-Control: no-cache``: some revalidate
with the origin, many ignore it and serve their copy until the TTL.  With
``honours_no_cache`` the edge revalidates on it (``proxy_cache_bypass``, and the
answer replaces the cached copy); without, it ignores it.

Two levers play what a CDN's control panel does:

- :meth:`Edge.refresh` fetches one path from the origin into the edge's cache
  (a purge followed by a request), so a test can make exactly the manifest,
  or exactly one file, new at the edge while the rest stays old;
- :meth:`Edge.switch_pop` reloads the edge with another point of presence's
  cache (the cache key is prefixed with the POP's name): one URL, several
  edges, as a consumer moved by anycast or DNS from a fresh POP to a stale one sees.

Every request the edge answers is logged with its ``X-Cache-Status``
(:meth:`Edge.cache_statuses`).
"""

from __future__ import annotations

import os
import signal
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nginx import Nginx, start_nginx

__all__ = ["REFRESH_HEADER", "Edge", "start_edge"]

#: A request header only the harness sends: fetch from the origin, past the edge's copy.
REFRESH_HEADER = "X-Edge-Refresh"
_RELOAD_SECONDS = 20.0


def _edge_template(
    *,
    cache: Path,
    access_log: Path,
    origin_port: int,
    cafile: str,
    certfile: str,
    keyfile: str,
    honours_no_cache: bool,
    ttl: str,
    pop: str,
) -> str:
    """The edge's http-level cache zone and log format, and its server block
    (``{port}`` is left for start_nginx)."""
    bypass = "$edge_refresh $edge_client_no_cache" if honours_no_cache else "$edge_refresh"
    return f"""
    proxy_cache_path {cache} levels=1:2 keys_zone=edge:1m max_size=64m inactive=1h
                     use_temp_path=off;
    log_format edge '"$request" $status cache=$upstream_cache_status pop=$edge_pop '
                    'cache_control="$http_cache_control" etag_asked="$http_if_none_match"';
    map $http_cache_control $edge_client_no_cache {{
        ~*no-cache 1;
        default    "";
    }}
    map $http_x_edge_refresh $edge_refresh {{
        ""      "";
        default 1;
    }}
    server {{
        listen 127.0.0.1:{{port}} ssl;
        server_name 127.0.0.1 localhost;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        access_log {access_log} edge;
        set $edge_pop {pop};
        location / {{
            proxy_pass https://127.0.0.1:{origin_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header {REFRESH_HEADER} "";
            proxy_ssl_trusted_certificate {cafile};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_cache edge;
            proxy_cache_key "$edge_pop$request_uri";
            proxy_cache_revalidate on;
            proxy_cache_valid 200 {ttl};
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            proxy_cache_lock on;
            proxy_cache_bypass {bypass};
            add_header X-Cache-Status $upstream_cache_status always;
            add_header X-Edge-Pop $edge_pop always;
        }}
    }}
"""


@dataclass
class Edge:
    """An edge nginx and the origin nginx behind it."""

    origin: Nginx
    server: Nginx
    cafile: str
    pop: str
    honours_no_cache: bool

    @property
    def url(self) -> str:
        """The URL consumers use: the edge's."""
        return self.server.url

    def _get(self, path: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        context = ssl.create_default_context(cafile=self.cafile)
        request = urllib.request.Request(f"{self.url}/{path}", headers=headers)
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.read(), dict(response.headers)

    def get(self, path: str) -> tuple[bytes, str]:
        """What a plain client gets at *path*: the body and its ``X-Cache-Status``."""
        body, headers = self._get(path, {})
        return body, headers.get("X-Cache-Status", "")

    def refresh(self, *paths: str) -> None:
        """Fetch *paths* from the origin into the edge's cache, whatever their TTL."""
        for path in paths:
            self._get(path, {REFRESH_HEADER: "1"})

    def prime(self, *paths: str) -> None:
        """Have the edge cache *paths* as the origin serves them now (a first request)."""
        for path in paths:
            _, status = self.get(path)
            assert status in ("MISS", "HIT"), (path, status)

    def switch_pop(self, pop: str) -> None:
        """Reload the edge as the point of presence *pop*: each POP has its own
        copies (the cache key starts with its name); the URL stays the same."""
        old = f"set $edge_pop {self.pop};"
        text = self.server.config_text
        assert text.count(old) == 1
        self.server.config_text = text.replace(old, f"set $edge_pop {pop};")
        (self.server.directory / "nginx.conf").write_text(self.server.config_text)
        os.kill(self.server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + _RELOAD_SECONDS
        seen = 0
        while seen < 3:  # three new connections in a row: the old workers are gone
            assert time.monotonic() < deadline, self.server.logs()
            _, headers = self._probe()
            seen = seen + 1 if headers.get("X-Edge-Pop") == pop else 0
            time.sleep(0.05)
        self.pop = pop

    def _probe(self) -> tuple[bytes, dict[str, str]]:
        # A path no tree has: a 404, never cached (only 200s are).
        try:
            return self._get(".edge-probe", {})
        except urllib.error.HTTPError as exc:
            return b"", dict(exc.headers)

    def cache_statuses(self, path: str) -> list[str]:
        """The ``X-Cache-Status`` of every request for *path* the edge logged so far.

        nginx logs a request just after its answer is sent, so the log is read
        until it stops growing (at most 2 s).
        """
        needle = f'"GET /{path} HTTP/'
        lines = self.server.requests_seen()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = self.server.requests_seen()
            if again == lines:
                break
            lines = again
        return [line.split(" cache=", 1)[1].split(" ", 1)[0] for line in lines if needle in line]

    def stop(self) -> None:
        self.server.stop()
        self.origin.stop()


def start_edge(
    nginx: str,
    directory: Path,
    root: Path,
    *,
    cafile: str,
    certfile: str,
    keyfile: str,
    honours_no_cache: bool,
    ttl: str = "10m",
    pop: str = "pop-a",
) -> Edge:
    """Start an origin nginx serving *root* and an edge nginx caching it (see module doc)."""
    origin = start_nginx(nginx, directory / "origin", root, certfile=certfile, keyfile=keyfile)
    edge_dir = directory / "edge"
    edge_dir.mkdir(parents=True, exist_ok=True)
    try:
        template = _edge_template(
            cache=edge_dir / "cache",
            access_log=edge_dir / "access.log",
            origin_port=origin.port,
            cafile=cafile,
            certfile=certfile,
            keyfile=keyfile,
            honours_no_cache=honours_no_cache,
            ttl=ttl,
            pop=pop,
        )
        server = start_nginx(
            nginx, edge_dir, certfile=certfile, keyfile=keyfile, server_template=template
        )
    except BaseException:
        origin.stop()
        raise
    return Edge(origin, server, cafile, pop, honours_no_cache)
