"""The development HTTPS server and the local CA, over real TLS.

Certificates come from ``trustme`` (test-only) and from ``make_local_ca``.
Every request names its CA with ``verify=``; the environment's CA bundle and
proxy variables are removed so they can neither help nor hinder.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import requests
import trustme
from cryptography import x509

from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.cli.devserver import LocalCA, TreeServer, make_local_ca
from secure_urlimport.errors import ConfigurationError

ENV_VARS = [
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
]

MODULE_SOURCE = b"VALUE = 42\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A served directory, with a secret next to it that must never be served."""
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "mod.py").write_bytes(MODULE_SOURCE)
    (root / "pkg" / "__init__.py").write_bytes(b"")
    (root / MANIFEST_NAME).write_bytes(b"manifest bytes")
    (root / ".env").write_bytes(b"TOKEN=hidden")
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return root


class TrustmeFiles:
    def __init__(self, directory: Path, *identities: str) -> None:
        ca = trustme.CA()
        self.ca_file = directory / "trustme-ca.pem"
        self.cert_file = directory / "trustme-server.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        ca.issue_cert(*identities).private_key_and_cert_chain_pem.write_to_path(str(self.cert_file))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TrustmeFiles:
    return TrustmeFiles(tmp_path_factory.mktemp("certs"), "127.0.0.1", "localhost")


@pytest.fixture
def served(tree: Path, certs: TrustmeFiles) -> Iterator[TreeServer]:
    with TreeServer(tree, certfile=str(certs.cert_file)) as srv:
        yield srv


def get(served: TreeServer, path: str, certs: TrustmeFiles) -> requests.Response:
    return requests.get(served.url + path, verify=str(certs.ca_file), timeout=10)


def raw_get(served: TreeServer, path: str, certs: TrustmeFiles) -> tuple[int, bytes]:
    """GET *path* byte for byte: requests would normalise away '..'."""
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- TLS: the right CA and name succeed, anything else fails -------------------


def test_get_file_with_the_right_ca(served: TreeServer, certs: TrustmeFiles) -> None:
    response = get(served, "/mod.py", certs)
    assert response.status_code == 200
    assert response.content == MODULE_SOURCE
    assert response.headers["Content-Type"] == "text/x-python; charset=utf-8"
    assert served.url == f"https://127.0.0.1:{served.port}"


def test_wrong_ca_fails(served: TreeServer, certs: TrustmeFiles, tmp_path: Path) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(served.url + "/mod.py", verify=True, timeout=10)
    other = TrustmeFiles(tmp_path, "127.0.0.1")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(served.url + "/mod.py", verify=str(other.ca_file), timeout=10)


def test_cert_for_the_name_used_succeeds(tree: Path, tmp_path: Path) -> None:
    files = TrustmeFiles(tmp_path, "localhost")
    with TreeServer(tree, certfile=str(files.cert_file)) as srv:
        url = f"https://localhost:{srv.port}/mod.py"
        assert requests.get(url, verify=str(files.ca_file), timeout=10).status_code == 200


def test_cert_for_another_name_fails(tree: Path, tmp_path: Path) -> None:
    files = TrustmeFiles(tmp_path, "localhost")
    with (
        TreeServer(tree, certfile=str(files.cert_file)) as srv,
        pytest.raises(requests.exceptions.SSLError, match=r"(?i)hostname|match"),
    ):
        requests.get(srv.url + "/mod.py", verify=str(files.ca_file), timeout=10)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_tls_below_1_2_is_refused(served: TreeServer, certs: TrustmeFiles) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock,
    ):
        assert tls_sock.version() == "TLSv1.2"
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client at least try
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="127.0.0.1")


# -- what is served ---------------------------------------------------------------


def test_manifest_headers(served: TreeServer, certs: TrustmeFiles) -> None:
    response = get(served, "/" + MANIFEST_NAME, certs)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Cache-Control"] == "no-cache"


def test_module_is_not_marked_no_cache(served: TreeServer, certs: TrustmeFiles) -> None:
    assert "Cache-Control" not in get(served, "/mod.py", certs).headers


@pytest.mark.parametrize("path", ["/pkg/__init__.py", "/pkg/__init__.py?x=1"])
def test_file_in_subdirectory_is_served(served: TreeServer, certs: TrustmeFiles, path: str) -> None:
    assert get(served, path, certs).status_code == 200


@pytest.mark.parametrize("path", ["/", "/pkg", "/pkg/", "/mod.py/", "/missing.py"])
def test_directories_and_missing_files_are_404(
    served: TreeServer, certs: TrustmeFiles, path: str
) -> None:
    response = get(served, path, certs)
    assert response.status_code == 404
    assert b"mod.py" not in response.content  # no listing
    assert b"__init__" not in response.content


def test_head_sends_headers_only(served: TreeServer, certs: TrustmeFiles) -> None:
    response = requests.head(served.url + "/mod.py", verify=str(certs.ca_file), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(MODULE_SOURCE))
    assert response.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_refused(served: TreeServer, certs: TrustmeFiles, method: str) -> None:
    response = requests.request(
        method, served.url + "/mod.py", verify=str(certs.ca_file), timeout=10
    )
    assert response.status_code == 501


# -- never outside the root ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "//../secret.txt",
        "/..\\secret.txt",
    ],
)
def test_traversal_does_not_leave_the_root(
    served: TreeServer, certs: TrustmeFiles, path: str
) -> None:
    status, body = raw_get(served, path, certs)
    assert status == 404
    assert b"outside the root" not in body


def test_symlink_inside_the_root_is_served(
    tree: Path, served: TreeServer, certs: TrustmeFiles
) -> None:
    (tree / "alias.py").symlink_to(tree / "mod.py")
    assert raw_get(served, "/alias.py", certs) == (200, MODULE_SOURCE)


@pytest.mark.parametrize("target", ["secret.txt", "."], ids=["file", "directory"])
def test_symlink_out_of_the_root_is_refused(
    tree: Path, served: TreeServer, certs: TrustmeFiles, target: str
) -> None:
    (tree / "escape").symlink_to(tree.parent / target)
    assert raw_get(served, "/escape", certs)[0] == 404
    assert raw_get(served, "/escape/secret.txt", certs)[0] == 404


@pytest.mark.parametrize("path", ["/.env", "/pkg/../.env", "/%2eenv"])
def test_hidden_files_are_not_served(served: TreeServer, certs: TrustmeFiles, path: str) -> None:
    status, body = raw_get(served, path, certs)
    assert status == 404
    assert b"TOKEN" not in body


@pytest.mark.parametrize("path", ["/mod.py%00", "/%ff%fe%fd", "/mod.py%00.txt"])
def test_odd_names_are_404_not_a_crash(served: TreeServer, certs: TrustmeFiles, path: str) -> None:
    assert raw_get(served, path, certs)[0] == 404
    assert raw_get(served, "/mod.py", certs)[0] == 200


# -- keep-alive and robustness ------------------------------------------------------


def _connections_opened(session: requests.Session, url: str) -> int:
    """New connections urllib3 opened (a reconnect of a pooled one is not counted)."""
    adapter = session.get_adapter(url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    manager = adapter.poolmanager
    return sum(manager.pools[key].num_connections for key in manager.pools.keys())  # noqa: SIM118 (not iterable)


def _client_ports(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The client port of each request the server logged, in order."""
    return [
        int(cast("tuple[str, int, str]", record.args)[1])  # the server logs (host, port, line)
        for record in caplog.records
        if record.name == "secure_urlimport.cli.devserver" and '"GET ' in record.getMessage()
    ]


def test_keep_alive_reuses_one_fast_connection(
    served: TreeServer, certs: TrustmeFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="secure_urlimport.cli.devserver")
    with requests.Session() as session:
        session.verify = str(certs.ca_file)
        assert session.get(served.url + "/mod.py", timeout=10).status_code == 200  # handshake
        for path in ("/mod.py", "/pkg/__init__.py"):
            start = time.perf_counter()
            response = session.get(served.url + path, timeout=10)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200
            # ~40 ms is the Nagle + delayed-ACK stall this must not have.
            assert elapsed < 0.030, f"{path} took {elapsed * 1000:.1f} ms"
        assert _connections_opened(session, served.url) == 1
    ports = _client_ports(caplog)
    assert len(ports) == 3 and len(set(ports)) == 1


def test_connection_close_opens_a_new_connection(
    served: TreeServer, certs: TrustmeFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="secure_urlimport.cli.devserver")
    with requests.Session() as session:
        session.verify = str(certs.ca_file)
        session.headers["Connection"] = "close"
        for _ in range(2):
            assert session.get(served.url + "/mod.py", timeout=10).status_code == 200
    ports = _client_ports(caplog)
    assert len(ports) == 2 and len(set(ports)) == 2


@pytest.mark.parametrize(
    "junk",
    [
        b"GET /mod.py HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"\x00" * 64,
    ],
    ids=["plain-http", "broken-certs", "zeros"],
)
def test_garbage_client_does_not_kill_the_server(
    served: TreeServer, certs: TrustmeFiles, junk: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(junk)
        sock.settimeout(10)
        try:
            reply = sock.recv(1024)
        except ConnectionResetError:
            reply = b""
        assert b"HTTP/1" not in reply
    assert get(served, "/mod.py", certs).status_code == 200
    assert "Traceback" not in capfd.readouterr().err


def test_silent_client_does_not_block_others(served: TreeServer, certs: TrustmeFiles) -> None:
    # Connected but never handshaking: accept() must not wait for it.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10):
        start = time.perf_counter()
        assert get(served, "/mod.py", certs).status_code == 200
        assert time.perf_counter() - start < 2


def test_stop_closes_listener_and_idle_connections(tree: Path, certs: TrustmeFiles) -> None:
    srv = TreeServer(tree, certfile=str(certs.cert_file))
    srv.start()
    with requests.Session() as session:
        session.verify = str(certs.ca_file)
        assert session.get(srv.url + "/mod.py", timeout=10).status_code == 200
        start = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - start < 2
        # The pooled keep-alive connection was cut, and no new one is accepted.
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(srv.url + "/mod.py", timeout=10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_constructor_errors(tree: Path, certs: TrustmeFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        TreeServer(tree / "mod.py", certfile=str(certs.cert_file))
    with pytest.raises(ConfigurationError, match="certificate"):
        TreeServer(tree, certfile=str(tmp_path / "missing.pem"))
    with (
        TreeServer(tree, certfile=str(certs.cert_file)) as srv,
        pytest.raises(ConfigurationError, match="cannot listen"),
    ):
        TreeServer(tree, certfile=str(certs.cert_file), port=srv.port)


# -- make_local_ca -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return make_local_ca(tmp_path_factory.mktemp("local-ca"))


@pytest.fixture
def local_server(tree: Path, local_ca: LocalCA) -> Iterator[TreeServer]:
    certfile, keyfile = str(local_ca.cert_file), str(local_ca.key_file)
    with TreeServer(tree, certfile=certfile, keyfile=keyfile) as srv:
        yield srv


def test_local_ca_files(local_ca: LocalCA) -> None:
    assert local_ca.ca_file.name == "ca.pem"
    assert local_ca.cert_file.name == "server.pem"
    assert stat.S_IMODE(local_ca.key_file.stat().st_mode) == 0o600
    chain = x509.load_pem_x509_certificates(local_ca.cert_file.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(local_ca.ca_file.read_bytes())
    assert len(chain) == 2 and chain[1] == ca_cert
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = chain[0]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert b"PRIVATE KEY" not in local_ca.ca_file.read_bytes()
    assert b"PRIVATE KEY" not in local_ca.cert_file.read_bytes()


def test_local_ca_verifies(local_server: TreeServer, local_ca: LocalCA) -> None:
    url = local_server.url + "/mod.py"
    assert requests.get(url, verify=str(local_ca.ca_file), timeout=10).content == MODULE_SOURCE
    # The stdlib default context (VERIFY_X509_STRICT on 3.13+) accepts it too.
    context = ssl.create_default_context(cafile=str(local_ca.ca_file))
    for host in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", local_server.port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls_sock,
        ):
            assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")


def test_local_ca_is_not_trusted_by_default(local_server: TreeServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(local_server.url + "/mod.py", verify=True, timeout=10)


def test_local_ca_for_other_names_fails(tree: Path, tmp_path: Path) -> None:
    files = make_local_ca(tmp_path / "ca", hostnames=("localhost",))
    certfile, keyfile = str(files.cert_file), str(files.key_file)
    with (
        TreeServer(tree, certfile=certfile, keyfile=keyfile) as srv,
        pytest.raises(requests.exceptions.SSLError),
    ):
        requests.get(srv.url + "/mod.py", verify=str(files.ca_file), timeout=10)


def test_local_ca_key_mode_is_reset_on_rewrite(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = make_local_ca(directory)
    os.chmod(first.key_file, 0o644)
    second = make_local_ca(directory)
    assert stat.S_IMODE(second.key_file.stat().st_mode) == 0o600
