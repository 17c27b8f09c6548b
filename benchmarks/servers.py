"""The HTTPS servers the trees are served from: nginx, or the project's TreeServer."""

from __future__ import annotations

import contextlib
import http.client
import logging
import ssl
import subprocess
import time
from collections import Counter
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


# -- nginx with a byte-counting access log (the scaling and WAN tables) --------

#: One line per request: status, bytes sent (headers and body, before TLS), request line.
BENCH_LOG_FORMAT = "log_format bench '$status $bytes_sent \"$request\"';"
MARK_PATH = "/__bench_mark__/"
MARK_SECONDS = 10.0

LOGGING_SERVER = """
    %(log_format)s
    server {
        listen 127.0.0.1:{port} ssl;
        %(unix_listen)s
        server_name 127.0.0.1 localhost;
        ssl_certificate %(certfile)s;
        ssl_certificate_key %(keyfile)s;
        root %(root)s;
        access_log %(log)s bench;
        %(tuning)s
        location / {
            try_files $uri =404;
        }
    }
"""


@dataclass(frozen=True)
class Served:
    """What nginx logged for one run: requests, bytes, and the statuses."""

    requests: int
    bytes_sent: int
    statuses: tuple[tuple[int, int], ...]  # (status, count), sorted

    def status_text(self) -> str:
        return ", ".join(f"{status} ({count})" for status, count in self.statuses) or "-"


class AccessLog:
    """The lines nginx wrote for one run, between two marker requests.

    nginx logs a request when it has handed the response to the kernel, so the
    client may be done first. After each run the benchmark itself requests
    ``/__bench_mark__/<n>`` (a 404) and waits for that line: one worker logs in
    the order it finishes requests, so every line of the run is before it.
    """

    def __init__(self, path: Path, port: int, cafile: Path) -> None:
        self.path = path
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.offset = 0
        self.marks = 0

    def _mark(self) -> list[str]:
        """Request a marker; return the lines logged since the previous one."""
        self.marks += 1
        target = f"{MARK_PATH}{self.marks}"
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=MARK_SECONDS
        )
        try:
            connection.request("GET", target)
            connection.getresponse().read()
        finally:
            connection.close()
        needle = f'"GET {target} '
        deadline = time.monotonic() + MARK_SECONDS
        while True:
            with open(self.path, "rb") as log_file:
                log_file.seek(self.offset)
                text = log_file.read().decode("utf-8", "replace")
            lines = text.splitlines(keepends=True)
            for index, line in enumerate(lines):
                if needle in line:
                    self.offset += sum(len(x.encode()) for x in lines[: index + 1])
                    return [x for x in lines[:index] if MARK_PATH not in x]
            if time.monotonic() > deadline:
                raise BenchError(f"nginx did not log {target} within {MARK_SECONDS:.0f} s")
            time.sleep(0.01)

    def start(self) -> None:
        """Forget everything logged so far."""
        self._mark()

    def served(self) -> Served:
        """Requests, bytes and statuses logged since :meth:`start` (or the last call)."""
        total, statuses = 0, Counter[int]()
        lines = self._mark()
        for line in lines:
            status, sent, _ = line.split(" ", 2)
            statuses[int(status)] += 1
            total += int(sent)
        return Served(len(lines), total, tuple(sorted(statuses.items())))


@dataclass
class LoggingNginx:
    nginx: Nginx
    description: str
    unix_socket: Path | None
    access: AccessLog

    @property
    def url(self) -> str:
        return self.nginx.url


@contextlib.contextmanager
def logging_nginx(
    directory: Path,
    root: Path,
    *,
    certfile: Path,
    keyfile: Path,
    cafile: Path,
    unix_socket: Path | None = None,
) -> Iterator[LoggingNginx]:
    """nginx serving *root* on 127.0.0.1 (and *unix_socket*), logging bytes per request.

    Started by tests/nginx.py (the project's nginx launcher) with a server block
    of its own; the ``log_format`` goes in front of it, at the ``http`` level.
    """
    binary = harness.find_nginx()
    if binary is None:
        raise BenchError("the scaling table needs nginx (not on PATH nor in /usr/sbin)")
    log_path = directory / "bench-access.log"
    values = {
        "log_format": BENCH_LOG_FORMAT,
        "unix_listen": "" if unix_socket is None else f"listen unix:{unix_socket} ssl;",
        "certfile": certfile,
        "keyfile": keyfile,
        "root": root,
        "log": log_path,
        "tuning": NGINX_TUNING,
    }
    try:
        nginx = harness.start_nginx(
            binary,
            directory,
            certfile=str(certfile),
            keyfile=str(keyfile),
            server_template=LOGGING_SERVER % values,
        )
    except harness.NginxError as exc:
        raise BenchError(str(exc)) from exc
    try:
        access = AccessLog(log_path, nginx.port, cafile)
        access.start()
        yield LoggingNginx(nginx, nginx_version(binary), unix_socket, access)
    finally:
        nginx.stop()
