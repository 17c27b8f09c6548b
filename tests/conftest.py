"""Shared fixtures: a test CA, real HTTPS servers, signed trees, and a clean import system.

Every test gets a clean environment (no CA-bundle or proxy variables from the
machine, its own client-state directory) and leaves ``sys.modules``,
``sys.meta_path``, ``sys.path``, ``sys.path_hooks`` and
``sys.path_importer_cache`` as it found them.

``nginx`` starts a real nginx (tests/nginx.py), ``edge`` an origin nginx with
a caching nginx in front (tests/nginx_edge.py); without nginx those tests are
skipped, unless ``SECURE_URLIMPORT_REQUIRE_NGINX=1`` (set by .ci/run) makes
that a failure.
"""

from __future__ import annotations

import linecache
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests  # noqa: F401 - imported once for the session, see below
import trustme
from nginx import REQUIRE_ENV as NGINX_REQUIRED
from nginx import Nginx, NginxError, find_nginx, start_nginx
from nginx_edge import Edge, start_edge

from secure_urlimport import api
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME
from secure_urlimport.cli.devserver import TreeServer
from secure_urlimport.publish.signing import sign_tree

REPO = Path(__file__).resolve().parent.parent
TESTCODE = REPO / "testcode"

BYTECODE_MODE = "SECURE_URLIMPORT_TEST_BYTECODE"

MACHINE_VARIABLES = (
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
    "SECURE_URLIMPORT_PASSPHRASE",
    "SECURE_URLIMPORT_CACHE_DIR",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in MACHINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(tmp_path / "client-state"))
    # Whether code is compiled again on a warm start must not depend on the
    # machine's PYTHONDONTWRITEBYTECODE.  By default tests see the source path
    # (as under -B); .ci/run runs the attack suite once more with
    # SECURE_URLIMPORT_TEST_BYTECODE=1, the library's default, so every attack
    # is also staged against a warm bytecode cache.
    writes = os.environ.get(BYTECODE_MODE) == "1"
    if writes:
        monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    else:
        monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", not writes)


@pytest.fixture
def source_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests about reading the verified *source* (the file cache): no
    bytecode cache, whichever mode the suite runs in."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


# requests and urllib3 are imported here, for the whole session: the cleanup
# below removes modules a test imported, and the transport caches their
# exception classes on first use.
@pytest.fixture(autouse=True)
def clean_import_system() -> Iterator[None]:
    modules = dict(sys.modules)
    meta_path = list(sys.meta_path)
    path = list(sys.path)
    path_hooks = list(sys.path_hooks)
    importer_cache = dict(sys.path_importer_cache)
    yield
    api.registry.reset()
    for name in list(sys.modules):
        if name not in modules:
            del sys.modules[name]
    sys.modules.update(modules)
    sys.meta_path[:] = meta_path
    sys.path[:] = path
    sys.path_hooks[:] = path_hooks
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(importer_cache)
    linecache.clearcache()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass(frozen=True)
class TLSFiles:
    cafile: str
    certfile: str
    keyfile: str


def _issue(ca: trustme.CA, directory: Path, *hosts: str) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert(*hosts)
    files = TLSFiles(
        str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server-key.pem")
    )
    ca.cert_pem.write_to_path(files.cafile)
    cert.private_key_and_cert_chain_pem.write_to_path(files.certfile)
    cert.private_key_pem.write_to_path(files.keyfile)
    return files


@pytest.fixture(scope="session")
def tls(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Files for a server certificate valid for 127.0.0.1 and localhost."""
    return _issue(ca, tmp_path_factory.mktemp("tls"), "127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def tls_localhost_only(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A certificate for 'localhost' only: wrong hostname when reached as 127.0.0.1."""
    return _issue(ca, tmp_path_factory.mktemp("tls-lh"), "localhost")


@pytest.fixture(scope="session")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that signed nothing the servers use."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def serve(tls: TLSFiles) -> Iterator[Callable[..., TreeServer]]:
    """Start a real HTTPS server for a directory: ``serve(dir) -> TreeServer``."""
    servers: list[TreeServer] = []

    def start(directory: Path, files: TLSFiles | None = None) -> TreeServer:
        chosen = files or tls
        server = TreeServer(directory, certfile=chosen.certfile, keyfile=chosen.keyfile)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class Signer:
    """A test publisher: a key pair with its .pub file."""

    key: PrivateKey
    pub: Path

    def sign(self, root: Path, **kwargs: object) -> None:
        sign_tree(root, [self.key], **kwargs)  # type: ignore[arg-type]


def _signer(directory: Path, name: str) -> Signer:
    key = PrivateKey.generate()
    pub = directory / f"{name}.pub"
    pub.write_text(key.public.to_line(), encoding="ascii")
    return Signer(key, pub)


@pytest.fixture
def publisher(tmp_path: Path) -> Signer:
    return _signer(tmp_path, "publisher")


@pytest.fixture
def stranger(tmp_path: Path) -> Signer:
    """Someone whose key nobody pinned."""
    return _signer(tmp_path, "stranger")


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def testcode(tmp_path: Path, publisher: Signer) -> Path:
    """A signed copy of the repository's testcode/ tree."""
    root = tmp_path / "testcode"
    shutil.copytree(TESTCODE, root, ignore=shutil.ignore_patterns("__pycache__"))
    publisher.sign(root)
    return root


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that attacker code would create: its absence proves the code never ran."""
    return tmp_path / "attacker-code-ran"


def rebuild_bundle(root: Path) -> None:
    """What an attacker who edits modules on the server also does: keep the
    tree's bundle (every .py file, concatenated in path order) in step."""
    bundle = root / BUNDLE_NAME
    if bundle.exists():
        names = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*.py")
            if "__pycache__" not in p.parts
        )
        bundle.write_bytes(b"".join((root / name).read_bytes() for name in names))


def evil_source(marker: Path) -> str:
    """Module source that leaves *marker* behind if it is ever executed."""
    return f"open({str(marker)!r}, 'w').write('ran')\n"


# -- a real nginx (tests/nginx.py) ----------------------------------------------


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx executable; skipped when absent, unless CI requires it."""
    found = find_nginx()
    if found is not None:
        return found
    if os.environ.get(NGINX_REQUIRED) == "1":
        pytest.fail(
            f"nginx is not installed, but {NGINX_REQUIRED}=1 says these tests must run: "
            "install it (Debian/Ubuntu: apt-get install nginx; .ci/run does) "
            f"or unset {NGINX_REQUIRED}",
            pytrace=False,
        )
    pytest.skip(f"nginx is not installed (with {NGINX_REQUIRED}=1 this is a failure)")


@pytest.fixture
def nginx(nginx_binary: str, tls: TLSFiles, tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Start a real nginx serving a directory over TLS: ``nginx(root, **options) -> Nginx``.

    Options are :func:`nginx.start_nginx`'s (``bearer=``, ``basic=``,
    ``client_ca=``, ``extra=``, ``server_template=``); the server certificate is
    ``tls``'s unless ``certfile``/``keyfile`` are given.  Stopped after the test.
    """
    servers: list[Nginx] = []

    def start(root: Path | None, **options: Any) -> Nginx:
        options.setdefault("certfile", tls.certfile)
        options.setdefault("keyfile", tls.keyfile)
        directory = tmp_path / f"nginx-{len(servers)}"
        try:
            server = start_nginx(nginx_binary, directory, root, **options)
        except NginxError as exc:
            pytest.fail(str(exc), pytrace=False)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def edge(nginx_binary: str, tls: TLSFiles, tmp_path: Path) -> Iterator[Callable[..., Edge]]:
    """Start an origin nginx serving a directory and a caching edge nginx in
    front of it (tests/nginx_edge.py): ``edge(root, honours_no_cache=...) -> Edge``.
    Both stopped after the test."""
    edges: list[Edge] = []

    def start(root: Path, *, honours_no_cache: bool, **options: Any) -> Edge:
        try:
            started = start_edge(
                nginx_binary,
                tmp_path / f"cdn-{len(edges)}",
                root,
                cafile=tls.cafile,
                certfile=tls.certfile,
                keyfile=tls.keyfile,
                honours_no_cache=honours_no_cache,
                **options,
            )
        except NginxError as exc:
            pytest.fail(str(exc), pytrace=False)
        edges.append(started)
        return started

    yield start
    for started in edges:
        started.stop()
