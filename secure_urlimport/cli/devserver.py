"""A development HTTPS server for signed trees (its local CA: ``local_ca.py``).

Used by ``secure-urlimport serve DIR``, by ``secure-urlimport demo`` and by the
test-suite.  It is deliberately small: GET and HEAD of regular files under one
directory, no listings, HTTP/1.1 keep-alive.  It is not a production server;
it does not need to be trusted with integrity (the importer verifies every
byte against the signed manifest), only with not leaking files outside the
directory it was given.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import socketserver
import ssl
import stat
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from .._format.paths import MANIFEST_NAME
from ..errors import ConfigurationError
from .local_ca import LocalCA, make_local_ca  # re-exported (tests, benchmarks)

__all__ = ["LocalCA", "TreeServer", "make_local_ca"]

logger = logging.getLogger("secure_urlimport.cli.devserver")

#: Seconds a connection may sit idle (in the TLS handshake or between
#: keep-alive requests) before its thread gives up on it.
IDLE_TIMEOUT = 30.0
#: How often the accept loop checks for stop(); short so tests stop quickly.
POLL_INTERVAL = 0.05

PYTHON_SOURCE_TYPE = "text/x-python; charset=utf-8"
MANIFEST_TYPE = "application/octet-stream"

# Control characters in a request line are escaped before they reach a log.
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


class _TreeHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of regular files inside ``self.directory``; 404 for all else."""

    protocol_version = "HTTP/1.1"  # keep-alive: the importer fetches many files
    disable_nagle_algorithm = True  # else Nagle + delayed ACK stall each response ~40 ms
    timeout = IDLE_TIMEOUT  # a silent client only ever blocks its own thread
    server_version = "secure-urlimport-devserver"
    sys_version = ""

    def handle(self) -> None:
        # The listening socket does not handshake on accept(), so a slow or
        # non-TLS client cannot stall the accept loop; the handshake is done
        # here, in this connection's own thread, under its own timeout.
        try:
            cast(ssl.SSLSocket, self.connection).do_handshake()
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", self.client_address, exc)
            self.close_connection = True
            return
        super().handle()

    def send_head(self) -> BinaryIO | None:
        found = self._resolve()
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        real, rel = found
        try:
            handle = open(real, "rb")  # noqa: SIM115 (returned to the caller, who closes it)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        try:
            info = os.fstat(handle.fileno())
            # nginx's ETag recipe: mtime and size, enough to revalidate the manifest.
            etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
            if etag in self.headers.get("If-None-Match", "").split(", "):
                handle.close()
                self._send_not_modified(etag)
                return None
            self._send_file_headers(info, rel, etag)
        except BaseException:
            handle.close()
            raise
        return handle

    def _send_not_modified(self, etag: str) -> None:
        self.send_response(HTTPStatus.NOT_MODIFIED)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file_headers(self, info: os.stat_result, rel: str, etag: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(rel))
        self.send_header("Content-Length", str(info.st_size))
        self.send_header("Last-Modified", self.date_time_string(int(info.st_mtime)))
        self.send_header("ETag", etag)
        if self.close_connection:
            # The client asked to close (or spoke HTTP/1.0): say so, or it may
            # try to reuse a connection we are about to shut (RFC 9112 9.6).
            self.send_header("Connection", "close")
        if rel == MANIFEST_NAME:
            # The manifest changes with every release; never serve a stale one.
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _resolve(self) -> tuple[str, str] | None:
        """The real path and root-relative name of the requested file, or None.

        None for anything that is not a regular file inside the root after
        following symlinks, and for hidden (dot) names, which never belong to
        a signed tree but often hold secrets (``.git``, ``.env``).
        """
        if self.path.split("?", 1)[0].endswith("/"):
            return None  # a directory, or a file asked for as one
        try:
            root = os.path.realpath(self.directory)
            # translate_path drops '..' and drive parts; realpath follows
            # symlinks, so the containment check sees where bytes come from.
            real = os.path.realpath(self.translate_path(self.path))
            if os.path.commonpath([root, real]) != root or real == root:
                return None
            rel = Path(os.path.relpath(real, root)).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                return None
            if not stat.S_ISREG(os.stat(real).st_mode):
                return None  # directories get 404: the importer never needs listings
        except (OSError, ValueError):  # missing file, NUL or unencodable name
            return None
        return real, rel

    def list_directory(self, path: str | os.PathLike[str]) -> io.BytesIO | None:
        # Unreachable through send_head above; kept as a second lock on the door.
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        name = os.fspath(path)
        if name == MANIFEST_NAME:
            return MANIFEST_TYPE
        if name.endswith(".py"):
            return PYTHON_SOURCE_TYPE
        return super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by default: DEBUG on our logger instead of a line on stderr per request.
        if logger.isEnabledFor(logging.DEBUG):
            message = (format % args).translate(_CONTROL_ESCAPES)
            logger.debug("%s:%s %s", self.client_address[0], self.client_address[1], message)


class _HTTPSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer over TLS that can close its live connections on stop."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], directory: Path, context: ssl.SSLContext) -> None:
        handler = partial(_TreeHandler, directory=os.fspath(directory))
        super().__init__(address, handler)
        # do_handshake_on_connect=False: accept() returns at once and the
        # handshake happens in the request thread (_TreeHandler.handle).
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can take seconds on a badly configured machine; we never need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def close_live_connections(self) -> None:
        """Cut idle keep-alive connections, so nothing is served after stop()."""
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops
            # the TLS state that the connection's own thread is still using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or speaks garbage is normal for a server;
        # never print a traceback to stderr for it.
        logger.debug("error serving %s", client_address, exc_info=True)


class _HTTPSServer6(_HTTPSServer):
    address_family = socket.AF_INET6


def _server_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the TLS certificate {certfile!r}"
            + (f" with key {keyfile!r}" if keyfile else "")
            + f": {exc}"
        ) from None
    return context


class TreeServer:
    """Serve the files of *directory* over HTTPS (a development server).

    The port is bound by the constructor (``port=0`` picks a free one), so
    :attr:`url` is known before :meth:`start`.  Use as a context manager to
    run in a background thread, or call :meth:`serve_forever` to block.
    """

    def __init__(
        self,
        directory: Path,
        *,
        certfile: str,
        keyfile: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigurationError(f"cannot serve {str(self.directory)!r}: not a directory")
        self.host = host
        context = _server_context(
            os.fspath(certfile), None if keyfile is None else os.fspath(keyfile)
        )
        server_class = _HTTPSServer6 if ":" in host else _HTTPSServer
        try:
            self._httpd = server_class((host, port), self.directory, context)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_port

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("TreeServer already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"secure-urlimport-server:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the socket and live connections, join the thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI's path); then close."""
        try:
            self._httpd.serve_forever(poll_interval=POLL_INTERVAL)
        finally:
            self._close()

    def _close(self) -> None:
        self._httpd.server_close()
        self._httpd.close_live_connections()

    def __enter__(self) -> TreeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<TreeServer {self.url} serving {str(self.directory)!r}>"
