"""A small real HTTP CONNECT proxy on loopback, recording what it sees.

Not a test module.  It answers ``CONNECT host:port`` with ``200 Connection
established`` and then pipes bytes both ways until either side closes, the way
squid or tinyproxy tunnel HTTPS.  It records every CONNECT target, the raw
request head of every request, and every byte the client sent (through the
tunnel that is TLS, so a token sent to the origin can never be readable here).
With ``credentials=(user, password)`` it answers 407 unless the CONNECT
carries the matching ``Proxy-Authorization: Basic``.  With ``refusal=raw`` it
answers every CONNECT with those raw bytes (a hostile proxy's status line and
reason text) and closes the connection.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["ConnectProxy", "running_proxy"]

_MAX_HEAD = 65536
_IDLE_CHECK = 0.2


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() joins the tunnels
    proxy: ConnectProxy


class _Tunnel(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        client: socket.socket = self.request
        proxy._opened(client)
        try:
            self._serve(proxy, client)
        except OSError:
            pass  # a side went away mid-tunnel: that ends the tunnel
        finally:
            proxy._closed(client)

    def _serve(self, proxy: ConnectProxy, client: socket.socket) -> None:
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > _MAX_HEAD:
                return
            head += chunk
        head, _, early = head.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        proxy._record_request(text)
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if proxy.refusal is not None:
            client.sendall(proxy.refusal)
            return
        if not proxy._authorized(headers.get("proxy-authorization")):
            client.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        proxy._record_connect(target)
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                proxy._record_bytes(early)
                upstream.sendall(early)
            self._pipe(proxy, client, upstream)

    def _pipe(self, proxy: ConnectProxy, client: socket.socket, upstream: socket.socket) -> None:
        sockets = [client, upstream]
        while not proxy._stopping.is_set():
            readable, _, _ = select.select(sockets, [], [], _IDLE_CHECK)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    proxy._record_bytes(data)
                    upstream.sendall(data)
                else:
                    client.sendall(data)


class ConnectProxy:
    """A running proxy: ``url``, and what it has seen so far."""

    def __init__(
        self, credentials: tuple[str, str] | None = None, refusal: bytes | None = None
    ) -> None:
        self.credentials = credentials
        self.refusal = refusal
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._targets: list[str] = []
        self._heads: list[str] = []
        self._client_bytes = bytearray()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Tunnel)
        self._server.proxy = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[str]:
        """Every ``host:port`` a tunnel was opened to, in order."""
        with self._lock:
            return list(self._targets)

    @property
    def request_heads(self) -> list[str]:
        """The raw request line and headers of every request, tunnelled or refused."""
        with self._lock:
            return list(self._heads)

    def everything_seen(self) -> bytes:
        """Every byte clients sent: request heads and tunnelled (TLS) traffic."""
        with self._lock:
            return "\r\n\r\n".join(self._heads).encode("latin-1") + bytes(self._client_bytes)

    def start(self) -> ConnectProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._thread.join(timeout=10)

    # -- called by the handler threads -----------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        token = base64.b64encode(":".join(self.credentials).encode()).decode("ascii")
        return header == f"Basic {token}"

    def _record_request(self, head: str) -> None:
        with self._lock:
            self._heads.append(head)

    def _record_connect(self, target: str) -> None:
        with self._lock:
            self._targets.append(target)

    def _record_bytes(self, data: bytes) -> None:
        with self._lock:
            self._client_bytes += data

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


@contextmanager
def running_proxy(
    credentials: tuple[str, str] | None = None, refusal: bytes | None = None
) -> Iterator[ConnectProxy]:
    """A started :class:`ConnectProxy`, stopped on exit."""
    proxy = ConnectProxy(credentials, refusal).start()
    try:
        yield proxy
    finally:
        proxy.stop()
