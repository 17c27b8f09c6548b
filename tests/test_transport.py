"""RequestsFetcher against a real, hostile HTTPS server.

Each test stages one attack (or its harmless twin) with a small
ThreadingHTTPServer behind a trustme certificate, and asserts the exact error
class.  Servers run in daemon threads, and every slow handler waits on the
server's ``stop`` event, so teardown ends them at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import http.server
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from secure_urlimport._net.transport import RequestsFetcher, require_https
from secure_urlimport.config import Config
from secure_urlimport.errors import (
    ConfigurationError,
    DownloadError,
    DownloadTimeoutError,
    HTTPStatusError,
    InsecureURLError,
    RedirectError,
    ResponseTooLargeError,
    TLSError,
)

ENV_VARS = [
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "NETRC",
]
SECRET = "Bearer s3cret-token-value"
BODY = b"print('hello')\n" * 10
CAP = 1000

Route = Callable[["Handler"], None]


# -- the hostile server ------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies
    disable_nagle_algorithm = True  # else 40 ms delayed-ACK stalls per request
    server: HostileServer

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers)))
        self.server.routes.get(self.path, status(404))(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, routes: dict[str, Route]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        # Handshake lazily, in the handler thread, so one stalled client
        # cannot block the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.routes = routes
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        self.stop = threading.Event()

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip getfqdn(): a slow DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def get_request(self) -> tuple[Any, Any]:
        request = super().get_request()
        self.connections += 1
        return request

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # attacks end in broken pipes and refused handshakes

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server_port}{path}"


def ok(body: bytes = BODY, **headers: str) -> Route:
    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)

    return route


def status(code: int, **headers: str) -> Route:
    def route(h: Handler) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()

    return route


def redirect(location: str, code: int = 302) -> Route:
    return status(code, Location=location)


def after(seconds: float, route: Route) -> Route:
    def slow(h: Handler) -> None:
        if not h.server.stop.wait(seconds):
            route(h)

    return slow


def chunked(total: int, *, content_length: str | None = None) -> Route:
    """A chunked body of ``total`` bytes, optionally with a contradicting Content-Length."""

    def route(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        if content_length is not None:
            h.send_header("Content-Length", content_length)
        h.end_headers()
        sent = 0
        while sent < total and not h.server.stop.is_set():
            chunk = b"x" * min(4096, total - sent)
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        h.wfile.write(b"0\r\n\r\n")

    return route


def drip(prefix: bytes, interval: float = 0.2, count: int = 50) -> Route:
    """Send ``prefix`` and then one byte every ``interval`` seconds."""

    def route(h: Handler) -> None:
        h.wfile.write(prefix)
        for _ in range(count):
            if h.server.stop.wait(interval):
                return
            h.wfile.write(b"a")

    return route


def close_delimited(body: bytes) -> Route:
    """An HTTP/1.0-style body: no length, ended by closing the connection."""

    def route(h: Handler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        h.close_connection = True

    return route


def truncated(h: Handler) -> None:
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
    h.close_connection = True


def stall(h: Handler) -> None:
    h.server.stop.wait(10)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine sets CA-bundle and proxy variables; no test may see them by accident."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def transport_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cafile(transport_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    transport_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def wrong_cafile(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


@pytest.fixture
def serve(transport_ca: trustme.CA) -> Iterator[Callable[..., HostileServer]]:
    """``serve({path: route}, hosts=...)`` starts a server; all stop at teardown."""
    servers: list[HostileServer] = []

    def start(routes: dict[str, Route], hosts: tuple[str, ...] = ("127.0.0.1",)) -> HostileServer:
        server = HostileServer(server_context(transport_ca, *hosts), routes)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def fetcher_for(cafile: str) -> Iterator[Callable[..., RequestsFetcher]]:
    """``fetcher_for(**config)``: a fetcher trusting the test CA unless told otherwise."""
    fetchers: list[RequestsFetcher] = []

    def make(**options: Any) -> RequestsFetcher:
        options.setdefault("cafile", cafile)
        options.setdefault("timeout", 5.0)
        fetcher = RequestsFetcher(Config(**options))
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        fetcher.close()


class RawServer:
    """A TCP listener whose ``handle(conn)`` runs per connection (for TLS-level attacks)."""

    def __init__(self, handle: Callable[[socket.socket, threading.Event], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.handle = handle
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()
        self.sock.close()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handle(conn, self.stop)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handle: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        servers.append(RawServer(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop.set()


def seconds_until(error: type[Exception], fetcher: RequestsFetcher, url: str) -> float:
    """Fetch ``url``, check it raises exactly ``error``, and return how long that took."""
    started = time.monotonic()
    with pytest.raises(error) as caught:
        fetcher.fetch(url, max_bytes=CAP)
    assert type(caught.value) is error
    return time.monotonic() - started


# -- URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/x.py",
        "ftp://example.org/x.py",
        "file:///etc/passwd",
        "example.org/x.py",
        "https:///x.py",
        "https://example.org/x.py#frag",
        "https://example.org:99999/x.py",
        "https://example.org/x y.py",
        "https://example.org/x.py\r\nX-Injected: 1",
    ],
)
def test_non_https_url_is_refused(url: str) -> None:
    with pytest.raises(InsecureURLError, match=r"only fetched over https://"):
        require_https(url)


def test_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(InsecureURLError) as caught:
        require_https("https://alice:hunter2@example.org/x.py")
    assert "hunter2" not in str(caught.value)
    assert caught.value.path == "https://example.org/x.py"
    assert "headers=" in str(caught.value)


def test_https_url_is_accepted() -> None:
    url = "https://example.org:8443/pkg/mod.py?v=1"
    assert require_https(url) == url


def test_http_url_is_refused_before_any_request(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    with pytest.raises(InsecureURLError) as caught:
        fetcher_for().fetch(f"http://127.0.0.1:{server.server_port}/x.py", max_bytes=CAP)
    assert caught.value.path == f"http://127.0.0.1:{server.server_port}/x.py"
    assert server.connections == 0


def test_missing_cafile_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        RequestsFetcher(Config(cafile=str(tmp_path / "nope.pem")))


# -- success, headers, connections ----------------------------------------------


def test_file_is_fetched(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == BODY


def test_headers_sent_to_origin(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    fetcher = fetcher_for(headers={"Authorization": SECRET, "Accept-Encoding": "gzip"})
    fetcher.fetch(server.url("/x.py"), max_bytes=CAP)
    ((_, headers),) = server.seen
    assert headers["Authorization"] == SECRET
    assert headers["Accept-Encoding"] == "identity"  # config cannot ask for compression
    assert headers["User-Agent"].startswith("secure-urlimport/")


def test_netrc_credentials_are_not_sent(
    serve: Any, fetcher_for: Any, cafile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/x.py": ok()})
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    requests.get(server.url("/x.py"), verify=cafile, timeout=5)  # plain requests: sends it
    fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert "Authorization" in server.seen[0][1]
    assert "Authorization" not in server.seen[1][1]


def test_keepalive_connection_reused(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    fetcher = fetcher_for()
    for _ in range(3):
        assert fetcher.fetch(server.url("/x.py"), max_bytes=CAP) == BODY
    assert server.connections == 1


def test_concurrent_fetches_share_one_fetcher(serve: Any, fetcher_for: Any) -> None:
    routes = {f"/m{i}.py": ok(b"%d" % i * 100) for i in range(16)}
    server = serve(routes)
    fetcher = fetcher_for()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda p: fetcher.fetch(server.url(p), max_bytes=CAP), routes))
    assert bodies == [b"%d" % i * 100 for i in range(16)]


def test_repr_shows_origins_not_headers(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    fetcher = fetcher_for(headers={"Authorization": SECRET})
    fetcher.fetch(server.url("/x.py"), max_bytes=CAP)
    assert repr(fetcher) == f"RequestsFetcher(origins=['https://127.0.0.1:{server.server_port}'])"
    fetcher.close()
    assert repr(fetcher) == "RequestsFetcher(origins=[])"


def test_debug_log_names_url_and_size_never_headers(
    serve: Any, fetcher_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve({"/x.py": ok()})
    with caplog.at_level(logging.DEBUG, logger="secure_urlimport"):
        fetcher_for(headers={"Authorization": SECRET}).fetch(server.url("/x.py"), max_bytes=CAP)
    assert f"fetched {server.url('/x.py')} ({len(BODY)} bytes" in caplog.text
    assert "s3cret" not in caplog.text


def test_https_proxy_from_environment_is_used(
    serve: Any, fetcher_for: Any, raw_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/x.py": ok()})
    tunnels: list[bytes] = []
    proxy = raw_server(lambda conn, stop: connect_proxy(conn, stop, tunnels))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == BODY
    assert tunnels == [f"127.0.0.1:{server.server_port}".encode()]


def test_no_proxy_from_environment_is_honoured(
    serve: Any, fetcher_for: Any, raw_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/x.py": ok()})
    tunnels: list[bytes] = []
    proxy = raw_server(lambda conn, stop: connect_proxy(conn, stop, tunnels))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == BODY
    assert tunnels == []


def connect_proxy(conn: socket.socket, stop: threading.Event, tunnels: list[bytes]) -> None:
    """A minimal CONNECT proxy: one tunnel per connection."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    target = request.split()[1]
    tunnels.append(target)
    host, _, port = target.decode().rpartition(":")
    with socket.create_connection((host, int(port))) as upstream:
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
        pipe(conn, upstream)


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


# -- status --------------------------------------------------------------------


def test_missing_file_is_404_with_status(serve: Any, fetcher_for: Any) -> None:
    server = serve({})
    with pytest.raises(HTTPStatusError, match="re-publish") as caught:
        fetcher_for().fetch(server.url("/gone.py"), max_bytes=CAP)
    assert caught.value.status == 404
    assert caught.value.path == server.url("/gone.py")


def test_server_error_is_500_with_status(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": status(500)})
    with pytest.raises(HTTPStatusError, match="500") as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert caught.value.status == 500


def test_unauthorized_message_does_not_echo_credentials(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": status(401)})
    with pytest.raises(HTTPStatusError, match="headers=") as caught:
        fetcher_for(headers={"Authorization": SECRET}).fetch(server.url("/x.py"), max_bytes=CAP)
    assert caught.value.status == 401
    assert "s3cret" not in str(caught.value)


# -- redirects ---------------------------------------------------------------------


def test_same_origin_redirect_is_followed(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/old.py": redirect("/new.py", 301), "/new.py": ok()})
    fetcher = fetcher_for(headers={"Authorization": SECRET})
    assert fetcher.fetch(server.url("/old.py"), max_bytes=CAP) == BODY
    assert [path for path, _ in server.seen] == ["/old.py", "/new.py"]
    assert server.seen[1][1]["Authorization"] == SECRET


def test_redirect_to_http_is_refused(serve: Any, fetcher_for: Any) -> None:
    server = serve({})
    target = f"http://127.0.0.1:{server.server_port}/x.py"
    server.routes["/x.py"] = redirect(target)
    with pytest.raises(RedirectError, match="only same-origin https redirects") as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert server.url("/x.py") in str(caught.value)
    assert target in str(caught.value)
    assert server.connections == 1


def test_redirect_to_other_host_is_refused_and_authorization_not_sent(
    serve: Any, fetcher_for: Any
) -> None:
    other = serve({"/x.py": ok()}, hosts=("127.0.0.1", "localhost"))
    target = f"https://localhost:{other.server_port}/x.py"
    server = serve({"/x.py": redirect(target)})
    with pytest.raises(RedirectError, match="only same-origin https redirects"):
        fetcher_for(headers={"Authorization": SECRET}).fetch(server.url("/x.py"), max_bytes=CAP)
    assert other.seen == []
    assert other.connections == 0


def test_redirect_to_other_port_is_refused(serve: Any, fetcher_for: Any) -> None:
    other = serve({"/x.py": ok()})
    server = serve({"/x.py": redirect(other.url("/x.py"))})
    with pytest.raises(RedirectError):
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert other.connections == 0


def test_redirect_with_credentials_in_location_is_refused_unechoed(
    serve: Any, fetcher_for: Any
) -> None:
    server = serve({})
    server.routes["/x.py"] = redirect(f"https://a:hunter2@127.0.0.1:{server.server_port}/y")
    with pytest.raises(RedirectError) as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert "hunter2" not in str(caught.value)


def test_redirect_loop_ends(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/a.py": redirect("/b.py"), "/b.py": redirect("/a.py")})
    with pytest.raises(RedirectError, match="more than 3 redirects"):
        fetcher_for(max_redirects=3).fetch(server.url("/a.py"), max_bytes=CAP)
    assert len(server.seen) == 4


def test_redirect_to_itself_ends(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/a.py": redirect("/a.py", 307)})
    with pytest.raises(RedirectError, match="more than 3 redirects"):
        fetcher_for().fetch(server.url("/a.py"), max_bytes=CAP)


def test_redirect_without_location_is_a_status_error(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/a.py": status(302)})
    with pytest.raises(HTTPStatusError) as caught:
        fetcher_for().fetch(server.url("/a.py"), max_bytes=CAP)
    assert caught.value.status == 302


def test_redirects_disabled_refuses_even_same_origin(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/old.py": redirect("/new.py"), "/new.py": ok()})
    with pytest.raises(RedirectError):
        fetcher_for(max_redirects=0).fetch(server.url("/old.py"), max_bytes=CAP)


# -- size and encoding ------------------------------------------------------------


def test_body_at_cap_is_accepted(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok(b"x" * CAP)})
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == b"x" * CAP


def test_body_larger_than_cap_is_refused(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok(b"x" * (CAP + 1))})
    with pytest.raises(ResponseTooLargeError, match="announces 1001 bytes"):
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)


def test_body_larger_than_cap_without_length_is_refused(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": close_delimited(b"x" * 100_000)})
    with pytest.raises(ResponseTooLargeError):
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)


def test_close_delimited_body_under_cap_is_accepted(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": close_delimited(BODY)})
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == BODY


def test_lying_content_length_is_refused(serve: Any, fetcher_for: Any) -> None:
    """Content-Length says 10 (under the cap), chunked framing then sends 10 MB."""
    server = serve({"/x.py": chunked(10_000_000, content_length="10")})
    with pytest.raises(ResponseTooLargeError):
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)


def test_endless_chunked_body_is_cut_at_cap(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": chunked(10**12)})
    elapsed = seconds_until(ResponseTooLargeError, fetcher_for(), server.url("/x.py"))
    assert elapsed < 1.0


def test_chunked_body_under_cap_is_accepted(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": chunked(CAP)})
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == b"x" * CAP


def test_truncated_body_is_refused(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": truncated})
    with pytest.raises(DownloadError, match="50") as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert type(caught.value) is DownloadError


@pytest.mark.parametrize("length", [b"-5", b"\xb2", b"0x10", b"10, 10"])
def test_invalid_content_length_is_refused(serve: Any, fetcher_for: Any, length: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n"
    server = serve({"/x.py": lambda h: h.wfile.write(head + b"x" * 10)})
    with pytest.raises(DownloadError) as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert type(caught.value) is DownloadError


def test_gzip_content_encoding_is_refused(serve: Any, fetcher_for: Any) -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)
    server = serve({"/x.py": ok(bomb, Content_Encoding="gzip")})
    with pytest.raises(DownloadError, match="uncompressed") as caught:
        fetcher_for().fetch(server.url("/x.py"), max_bytes=len(bomb) + 1)
    assert type(caught.value) is DownloadError


def test_identity_content_encoding_is_accepted(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok(Content_Encoding="identity")})
    assert fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP) == BODY


# -- deadline ----------------------------------------------------------------------


def test_dripping_server_is_cut_at_deadline(serve: Any, fetcher_for: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    server = serve({"/x.py": drip(head)})
    fetcher = fetcher_for(timeout=1.0)
    elapsed = seconds_until(DownloadTimeoutError, fetcher, server.url("/x.py"))
    assert 0.9 < elapsed < 2.0


def test_body_stalling_just_before_deadline_is_cut_at_deadline(
    serve: Any, fetcher_for: Any
) -> None:
    """Bytes until 0.9 s, then silence: a per-read socket timeout alone would wait to 1.9 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    server = serve({"/x.py": drip(head, interval=0.3, count=3)})
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/x.py"))
    assert 0.9 < elapsed < 1.5


def test_dripping_chunked_body_is_cut_at_deadline(serve: Any, fetcher_for: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"
    server = serve({"/x.py": drip(head)})
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/x.py"))
    assert 0.9 < elapsed < 2.0


def test_dripping_close_delimited_body_is_cut_at_deadline(serve: Any, fetcher_for: Any) -> None:
    """No length: the cut looks like a clean end of body, and must still be an error."""
    server = serve({"/x.py": drip(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")})
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/x.py"))
    assert 0.9 < elapsed < 2.0


def test_dripping_headers_are_cut_at_deadline(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": drip(b"HTTP/1.1 200 OK\r\nX-Slow: ")})
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/x.py"))
    assert 0.9 < elapsed < 2.0


def test_stalled_headers_hit_deadline(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": stall})
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/x.py"))
    assert 0.9 < elapsed < 2.0


def test_dripping_tls_handshake_is_cut_at_deadline(fetcher_for: Any, raw_server: Any) -> None:
    def handshake_drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(4096)  # the ClientHello
        conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record follows...
        while not stop.wait(0.2):  # ...one byte at a time
            conn.sendall(b"\0")

    server = raw_server(handshake_drip)
    url = f"https://127.0.0.1:{server.port}/x.py"
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), url)
    assert 0.9 < elapsed < 2.0


def test_stalled_tls_handshake_hits_deadline(fetcher_for: Any, raw_server: Any) -> None:
    server = raw_server(lambda conn, stop: stop.wait(10))
    url = f"https://127.0.0.1:{server.port}/x.py"
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), url)
    assert 0.9 < elapsed < 2.0


def test_slow_redirect_chain_shares_one_deadline(serve: Any, fetcher_for: Any) -> None:
    server = serve(
        {
            "/a.py": after(0.4, redirect("/b.py")),
            "/b.py": after(0.4, redirect("/c.py")),
            "/c.py": after(0.4, redirect("/d.py")),
            "/d.py": ok(),
        }
    )
    elapsed = seconds_until(DownloadTimeoutError, fetcher_for(timeout=1.0), server.url("/a.py"))
    assert 0.9 < elapsed < 1.6


def test_slow_server_within_deadline_succeeds(serve: Any, fetcher_for: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    server = serve({"/x.py": drip(head, interval=0.1, count=5)})
    assert fetcher_for(timeout=3.0).fetch(server.url("/x.py"), max_bytes=CAP) == b"aaaaa"


def test_connection_is_reusable_after_a_timeout(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/slow.py": stall, "/x.py": ok()})
    fetcher = fetcher_for(timeout=0.5)
    with pytest.raises(DownloadTimeoutError):
        fetcher.fetch(server.url("/slow.py"), max_bytes=CAP)
    assert fetcher.fetch(server.url("/x.py"), max_bytes=CAP) == BODY


# -- TLS -----------------------------------------------------------------------------


def test_untrusted_ca_is_refused(serve: Any, fetcher_for: Any, wrong_cafile: str) -> None:
    server = serve({"/x.py": ok()})
    with pytest.raises(TLSError, match="cafile=") as caught:
        fetcher_for(cafile=wrong_cafile).fetch(server.url("/x.py"), max_bytes=CAP)
    assert caught.value.path == server.url("/x.py")
    # No requests/urllib3 exception is chained (or shown in the traceback).
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert server.seen == []


def test_default_store_does_not_trust_test_ca(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()})
    with pytest.raises(TLSError):
        fetcher_for(cafile=None).fetch(server.url("/x.py"), max_bytes=CAP)


def test_wrong_hostname_is_refused(serve: Any, fetcher_for: Any) -> None:
    server = serve({"/x.py": ok()}, hosts=("localhost",))
    with pytest.raises(TLSError, match=r"127\.0\.0\.1"):
        fetcher_for().fetch(server.url("/x.py"), max_bytes=CAP)
    assert server.seen == []


def test_cafile_wins_over_requests_ca_bundle_env(
    serve: Any, fetcher_for: Any, cafile: str, wrong_cafile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/x.py": ok()})
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", wrong_cafile)
    assert fetcher_for(cafile=cafile).fetch(server.url("/x.py"), max_bytes=CAP) == BODY
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cafile)
    with pytest.raises(TLSError):
        fetcher_for(cafile=wrong_cafile).fetch(server.url("/x.py"), max_bytes=CAP)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_ca_bundle_env_is_used_without_cafile(
    serve: Any, fetcher_for: Any, cafile: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/x.py": ok()})
    monkeypatch.setenv(variable, cafile)
    assert fetcher_for(cafile=None).fetch(server.url("/x.py"), max_bytes=CAP) == BODY


def test_connection_refused_is_download_error(fetcher_for: Any) -> None:
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(DownloadError, match="refused") as caught:
        fetcher_for().fetch(f"https://127.0.0.1:{port}/x.py", max_bytes=CAP)
    assert type(caught.value) is DownloadError
    assert caught.value.__cause__ is None
