"""Any answer a hostile server sends ends in verified bytes or a SecureImportError.

A raw TLS server on loopback (trustme certificate, a thread per connection)
serves a signed tree honestly, except one request path, which gets a response
hypothesis generates byte by byte: the status line, header names and values
(control bytes included), Content-Length values (5,000 digits included),
Location values ``urljoin`` cannot parse, chunked framing with good and bad
chunk sizes, and early close.  That path is the manifest, the module, the
bundle, or the manifest/module of the first of two mirrors.  Whatever comes
back, the import either yields the signed module or raises a
SecureImportError -- never another exception -- and the attacker's code never
runs; a hostile bundle or first mirror never stops the import at all.

Budget: fixed example counts, no deadline, derandomized and without a
database, so CI runs the same examples every time in well under 60 s.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TLSFiles, evil_source, write_tree
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from simulator import assert_never_ran, child_env

from secure_urlimport import Config, SecureImportError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME
from secure_urlimport.errors import RedirectError, ResponseTooLargeError
from secure_urlimport.publish.signing import sign_tree

MODULE = "VALUE = 'signed'\n" * 4
HUGE_LENGTH = b"9" * 5000  # beyond Python's 4,300-digit int() limit
ORIGIN = b"{ORIGIN}"  # replaced by the server's own https://host:port


# -- a raw TLS server -----------------------------------------------------------


class ScriptedServer:
    """Serves ``files`` (request path -> bytes) with keep-alive, except the
    paths in ``hostile``, whose raw bytes are sent as they are before the
    connection is closed (the early close is part of what is generated)."""

    def __init__(self, tls: TLSFiles, files: dict[str, bytes]) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(tls.certfile, tls.keyfile)
        self.files = files
        self.hostile: dict[str, bytes] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.origin = f"https://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        self.sock.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with (
            contextlib.suppress(OSError),
            conn,
            self.context.wrap_socket(conn, server_side=True) as tls,
        ):
            pending = b""
            while not self.stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = tls.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                path = head.split(b" ")[1].decode("ascii").partition("?")[0]
                raw = self.hostile.get(path)
                if raw is not None:
                    tls.sendall(raw.replace(ORIGIN, self.origin.encode()))
                    return
                body = self.files.get(path)
                if body is None:
                    tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                    tls.sendall(head + body)  # one write: no delayed-ACK stall

    def close(self) -> None:
        self.stop.set()


# -- the generated response ---------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: str | bytes  # "honest", "evil", or raw bytes
    framing: str  # "length", "none", "chunked"
    chunks: tuple[bytes, ...] = ()  # chunk-size tokens for "chunked" (b"" = honest split)
    cut: int | None = None  # close the connection after this many bytes

    def encode(self, honest: bytes, evil: bytes) -> bytes:
        body = {"honest": honest, "evil": evil}.get(self.body, self.body)  # type: ignore[arg-type]
        assert isinstance(body, bytes)
        lines = [self.status, *(name + b":" + value for name, value in self.headers)]
        if self.framing == "length":
            lines.append(b"Content-Length: %d" % len(body))
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            body = _chunked(body, self.chunks)
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        return raw if self.cut is None else raw[: self.cut]


def _chunked(body: bytes, tokens: tuple[bytes, ...]) -> bytes:
    """*body* in chunks; each token is a chunk-size line (possibly a lie)."""
    out, rest = b"", body
    for token in tokens:
        size = len(rest) // 2 if not token else 0
        try:
            size = int(token, 16) if token else size
        except ValueError:
            size = 3
        out += (token or b"%x" % size) + b"\r\n" + rest[:size] + b"\r\n"
        rest = rest[size:]
    return out + (b"%x\r\n%s\r\n" % (len(rest), rest) if rest else b"") + b"0\r\n\r\n"


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"")


# Weighted towards what parsers trip on: redirects, lengths, well-formed heads.
CODES = [
    b"200",
    b"200",
    b"301",
    b"302",
    b"302",
    b"303",
    b"307",
    b"308",
    b"304",
    b"404",
    b"500",
    b"100",
    b"101",
    b"204",
    b"206",
    b"999",
    b"000",
    b"2000",
    b"-1",
    b"20O",
]
LOCATIONS = [
    b"https://[",
    b"//[::1",
    b"/b/mod.py",
    b"/b/" + MANIFEST_NAME.encode(),
    ORIGIN + b"/b/mod.py",
    b"http://127.0.0.1/x",
    b"https://evil.example/x",
    b"//evil.example/x",
    b"/x\x1b]0;owned\x07",
    b"https://127.0.0.1:99999/x",
    b"https://a:b@127.0.0.1/x",
    b"%ff\xff\xfe",
    b"/x#frag",
    b"",
    b"\x00",
    b"https://[::1]:0/x",
    b"/x\x9b31m",
    b"https://127.0.0.1:0x1/",
]
LENGTHS = [
    HUGE_LENGTH,
    b"0" * 5000 + b"7",
    b"-1",
    b"1, 2",
    b" 12 ",
    b"0x10",
    b"\xb2",
    b"99999999999999999999",
    b"0",
    b"10",
    b"1e3",
    b"+5",
]

well_formed_status = st.builds(
    lambda version, code, reason: version + b" " + code + b" " + reason,
    st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b"ICY"]),
    st.one_of(*[st.sampled_from(CODES)] * 6, st.integers(0, 10**30).map(lambda i: b"%d" % i)),
    st.one_of(st.just(b"OK"), st.binary(max_size=30).map(_one_line)),
)
status_lines = st.one_of(*[well_formed_status] * 6, st.binary(max_size=60).map(_one_line))
header_values = st.binary(max_size=60).map(_one_line)
location = st.tuples(
    st.just(b"Location"),
    st.one_of(st.sampled_from(LOCATIONS), st.sampled_from(LOCATIONS), header_values),
)
length = st.tuples(
    st.just(b"Content-Length"),
    st.one_of(
        st.sampled_from(LENGTHS),
        st.sampled_from(LENGTHS),
        st.integers(0, 10**6).map(lambda i: b"%d" % i),
    ),
)
headers = st.one_of(
    location,
    location,
    length,
    length,
    st.tuples(
        st.just(b"Transfer-Encoding"),
        st.sampled_from([b"chunked", b"gzip", b"chunked, gzip", b"identity", b"x"]),
    ),
    st.tuples(
        st.just(b"Content-Encoding"),
        st.sampled_from([b"gzip", b"identity", b"br", b"\x1b[31m", b""]),
    ),
    st.tuples(st.sampled_from([b"ETag", b"Connection", b"Cache-Control"]), header_values),
    st.tuples(st.binary(max_size=20).map(lambda b: _one_line(b).replace(b":", b"")), header_values),
)
responses = st.builds(
    Response,
    status=status_lines,
    headers=st.lists(headers, max_size=6).map(tuple),
    body=st.one_of(st.sampled_from(["honest", "honest", "evil"]), st.binary(max_size=200)),
    framing=st.sampled_from(["length", "none", "none", "chunked"]),
    chunks=st.lists(
        st.one_of(
            st.just(b""),
            st.sampled_from([b"f" * 5000, b"-1", b"zz", b"0"]),
            st.binary(max_size=8).map(_one_line),
        ),
        max_size=3,
    ).map(tuple),
    cut=st.one_of(st.none(), st.none(), st.integers(0, 400)),
)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# The two crashes issue #11 names, for every target.
KNOWN = [
    Response(b"HTTP/1.1 200 OK", ((b"Content-Length", HUGE_LENGTH),), "honest", "none"),
    Response(b"HTTP/1.1 302 Found", ((b"Location", b"https://["),), b"", "length"),
    Response(b"HTTP/1.1 302 Found", ((b"Location", b"//[::1"),), b"", "length"),
]


# -- the tree and the four targets ----------------------------------------------


@dataclass
class Site:
    server: ScriptedServer
    key: PrivateKey
    cafile: str
    files: dict[str, bytes]  # tree path -> bytes, bundle and manifest included

    def url(self, tree: str) -> str:
        return f"{self.server.origin}/{tree}"


@pytest.fixture(scope="module")
def site(tls: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = write_tree(tmp_path_factory.mktemp("fuzz-tree"), {"mod.py": MODULE})
    key = PrivateKey.generate()
    sign_tree(root, [key])
    files = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert BUNDLE_NAME in files
    served = {f"/{tree}/{name}": data for tree in ("a", "b") for name, data in files.items()}
    server = ScriptedServer(tls, served)
    yield Site(server, key, tls.cafile, files)
    server.close()


def _install(site: Site, *trees: str) -> None:
    urls = [site.url(tree) for tree in trees]
    install(
        urls if len(urls) > 1 else urls[0],
        pubkey=site.key.public.raw,
        cafile=site.cafile,
        config=Config(timeout=5, file_cache=False, bytecode_cache=False, parallel_downloads=0),
    )


def _import_mod() -> str:
    return str(importlib.import_module("mod").VALUE)


def _stage(site: Site, marker: Path, target: str, response: Response) -> object:
    """Serve *response* at *target*'s path, install and import; return the
    module's VALUE or the SecureImportError.  Anything else propagates."""
    path = {
        "manifest": MANIFEST_NAME,
        "module": "mod.py",
        "bundle": BUNDLE_NAME,
        "mirror-manifest": MANIFEST_NAME,
        "mirror-module": "mod.py",
    }[target]
    honest = site.files[path]
    evil = evil_source(marker).encode()
    site.server.hostile = {f"/a/{path}": response.encode(honest, evil.ljust(len(honest), b"#"))}
    if path == "mod.py":  # else the bundle serves the module and its path is never asked
        site.server.hostile[f"/a/{BUNDLE_NAME}"] = b"HTTP/1.1 404 Not Found\r\n\r\n"
    trees = ("a", "b") if target.startswith("mirror") else ("a",)
    try:
        _install(site, *trees)
        return _import_mod()
    except SecureImportError as exc:
        return exc
    finally:
        site.server.hostile = {}
        for tree in trees:
            uninstall(site.url(tree))
        sys.modules.pop("mod", None)


@pytest.mark.parametrize(
    "target", ["manifest", "module", "bundle", "mirror-manifest", "mirror-module"]
)
@FUZZ
@given(response=responses)
@example(response=KNOWN[0])
@example(response=KNOWN[1])
@example(response=KNOWN[2])
def test_any_response_ends_in_verified_bytes_or_a_secure_import_error(
    site: Site, marker: Path, target: str, response: Response
) -> None:
    outcome = _stage(site, marker, target, response)
    event(type(outcome).__name__)  # --hypothesis-show-statistics: what the examples hit
    assert not marker.exists(), "attacker code ran"
    if target == "bundle" or target.startswith("mirror"):
        # The bundle is only a shortcut and the second mirror is honest: never fatal.
        assert outcome == "signed", outcome
    else:
        assert outcome == "signed" or isinstance(outcome, SecureImportError), outcome
    assert_never_ran(marker, "mod")


# -- the crashes the issue names, one by one ------------------------------------------


def test_a_five_thousand_digit_content_length_fails_install_with_a_download_error(
    site: Site, marker: Path
) -> None:
    outcome = _stage(site, marker, "manifest", KNOWN[0])
    assert type(outcome) is ResponseTooLargeError
    assert "5000-digit" in str(outcome)
    assert_never_ran(marker, "mod")


def test_a_five_thousand_digit_content_length_fails_the_import_statement_cleanly(
    site: Site, marker: Path
) -> None:
    outcome = _stage(site, marker, "module", KNOWN[0])
    assert type(outcome) is ResponseTooLargeError
    assert outcome.name == "mod"
    assert_never_ran(marker, "mod")


@pytest.mark.parametrize("location", [b"https://[", b"//[::1"])
def test_an_unparseable_redirect_location_is_a_redirect_error(
    site: Site, marker: Path, location: bytes
) -> None:
    response = Response(b"HTTP/1.1 302 Found", ((b"Location", location),), b"", "length")
    outcome = _stage(site, marker, "module", response)
    assert type(outcome) is RedirectError
    assert "not a valid URL" in str(outcome)
    assert_never_ran(marker, "mod")


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("path", ["mirror-manifest", "mirror-module"])
def test_a_mirror_sending_a_crashing_response_is_skipped_for_the_good_one(
    site: Site, marker: Path, which: int, path: str
) -> None:
    assert _stage(site, marker, path, KNOWN[which]) == "signed"
    assert_never_ran(marker, "mod")


def test_cli_verify_of_a_url_with_a_huge_content_length_reports_instead_of_crashing(
    site: Site, tmp_path: Path
) -> None:
    pub = tmp_path / "publisher.pub"
    pub.write_text(site.key.public.to_line(), encoding="ascii")
    site.server.hostile = {f"/a/{MANIFEST_NAME}": KNOWN[0].encode(b"", b"")}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "secure_urlimport",
                "verify",
                site.url("a"),
                "--pubkey",
                str(pub),
                "--cafile",
                site.cafile,
            ],
            env=child_env(tmp_path / "cli-cache"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        site.server.hostile = {}
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "5000-digit" in done.stdout + done.stderr
