"""The HTTPS servers the trees are served from: nginx, or the project's TreeServer."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import nginx as harness
from tests.nginx import Nginx

from .common import BenchError, Workspace, log

# -- servers ------------------------------------------------------------------


@dataclass
class Server:
    description: str
    url: str
    requests_served: Callable[[], int]


#: The nginx settings a benchmark wants on top of the tests' harness (tests/nginx.py,
#: the one nginx launcher of the project): long keep-alive, sendfile, modern TLS.
NGINX_TUNING = (
    "sendfile on; keepalive_timeout 65s; keepalive_requests 1000000; ssl_protocols TLSv1.2 TLSv1.3;"
)


def nginx_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    text = (result.stderr or result.stdout).strip()
    return text.split(":", 1)[-1].strip() or "nginx"


def start_nginx(ws: Workspace, binary: str) -> tuple[Nginx, Server]:
    """Start nginx on a free loopback port; raise BenchError if it does not start."""
    try:
        nginx = harness.start_nginx(
            binary,
            ws.root / "nginx",
            ws.www,
            certfile=str(ws.certfile),
            keyfile=str(ws.keyfile),
            extra=NGINX_TUNING,
        )
    except harness.NginxError as exc:
        raise BenchError(str(exc)) from exc
    return nginx, Server(nginx_version(binary), nginx.url, lambda: count_lines(nginx.access_log))


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class _RequestCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if '"GET ' in record.getMessage():
            self.count += 1


@contextlib.contextmanager
def serve_builtin(ws: Workspace) -> Iterator[Server]:
    from secure_urlimport.cli.devserver import TreeServer

    counter = _RequestCounter()
    server_log = logging.getLogger("secure_urlimport.cli.devserver")  # one DEBUG line per request
    old_level, old_propagate = server_log.level, server_log.propagate
    server_log.addHandler(counter)
    server_log.setLevel(logging.DEBUG)
    server_log.propagate = False  # count the lines, do not print them
    server = TreeServer(ws.www, certfile=str(ws.certfile), keyfile=str(ws.keyfile))
    server.start()
    try:
        yield Server("builtin secure_urlimport TreeServer", server.url, lambda: counter.count)
    finally:
        server.stop()
        server_log.removeHandler(counter)
        server_log.setLevel(old_level)
        server_log.propagate = old_propagate


@contextlib.contextmanager
def serve(ws: Workspace, choice: str) -> Iterator[Server]:
    """nginx (``auto``: if installed and it starts), else the builtin TreeServer."""
    nginx = harness.find_nginx() if choice in ("auto", "nginx") else None
    if choice == "nginx" and nginx is None:
        raise BenchError("--server nginx: nginx is not installed (not on PATH or /usr/sbin)")
    if nginx is not None:
        try:
            process, server = start_nginx(ws, nginx)
        except BenchError as exc:
            if choice == "nginx":
                raise
            log.warning("nginx did not start, using the builtin server instead: %s", exc)
        else:
            try:
                yield server
            finally:
                process.stop()
            return
    with serve_builtin(ws) as server:
        yield server
