"""Endless data, slow retrieval, compression, redirects and credential leaks, over real HTTPS.

A :class:`HostileHTTPSServer` serves a validly signed release and misbehaves on
one path; each attack runs through ``install()`` and ``import`` with the real
fetcher, not just the transport.
"""

from __future__ import annotations

import gzip
import importlib
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import evil_source
from simulator import HostileHTTPSServer, assert_never_ran, hostile_servers, sign_release

from secure_urlimport import (
    Config,
    DownloadError,
    DownloadTimeoutError,
    RedirectError,
    ResponseTooLargeError,
    install,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME

SECRET = "Bearer attack-suite-s3cret"
MODULE = "VALUE = 42\n" * 4


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def release(key):
    return sign_release({"mod.py": MODULE, "v2/mod.py": MODULE, "other.py": ""}, [key])


@pytest.fixture
def start(tls) -> Iterator[Callable[..., HostileHTTPSServer]]:
    """``start(files, plain=False, host=...)``: a hostile server; all close at teardown."""
    yield from hostile_servers(tls)


@pytest.fixture
def tree(start, release) -> HostileHTTPSServer:
    return start(release.everything())


def import_fails(expected: type[ImportError], name: str = "mod") -> tuple[ImportError, float]:
    started = time.monotonic()
    with pytest.raises(expected) as err:
        importlib.import_module(name)
    assert type(err.value) is expected, err.value
    assert err.value.name == name
    return err.value, time.monotonic() - started


# -- endless data --------------------------------------------------------------------


def announced_larger(evil: bytes):
    def route(h) -> None:
        h.send_body(MODULE.encode() + evil)  # honest prefix, then more than was signed

    return route


def endless_chunked(h) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"x" * 4096
    while not h.server.stop.is_set():
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


@pytest.mark.parametrize("how", ["announced-length", "endless-chunked"])
def test_body_larger_than_the_signed_size_is_rejected(tree, tls, key, marker, how):
    tree.routes["mod.py"] = (
        announced_larger(evil_source(marker).encode())
        if how == "announced-length"
        else endless_chunked
    )
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile, timeout=5)
    error, seconds = import_fails(ResponseTooLargeError)
    assert f"limit of {len(MODULE)} bytes" in str(error)  # the cap is the signed size
    assert seconds < 3
    assert_never_ran(marker, "mod")


def test_endless_manifest_is_cut_at_the_manifest_cap(tree, tls, key):
    tree.routes[MANIFEST_NAME] = endless_chunked
    started = time.monotonic()
    with pytest.raises(ResponseTooLargeError) as err:
        install(
            tree.url,
            pubkey=key.public.raw,
            cafile=tls.cafile,
            timeout=5,
            config=Config(max_manifest_bytes=256 * 1024),
        )
    assert type(err.value) is ResponseTooLargeError
    assert f"limit of {256 * 1024} bytes" in str(err.value)
    assert time.monotonic() - started < 3


# -- slow retrieval --------------------------------------------------------------------


def drip_body(h) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(MODULE)))
    h.end_headers()
    for byte in MODULE.encode():
        if h.server.stop.wait(0.2):
            return
        h.wfile.write(bytes([byte]))
        h.wfile.flush()


def drip_headers(h) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200:
        if h.server.stop.wait(0.2):
            return
        h.wfile.write(bytes([byte]))
        h.wfile.flush()


@pytest.mark.parametrize("route", [drip_body, drip_headers], ids=["body", "headers"])
def test_dripping_server_is_cut_at_the_configured_timeout(tree, tls, key, marker, route):
    tree.routes["mod.py"] = route
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile, timeout=1.0)
    error, seconds = import_fails(DownloadTimeoutError)
    assert "within 1 s" in str(error)
    assert 0.9 <= seconds < 2.5
    assert_never_ran(marker, "mod")


# -- compression -----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_response_is_rejected_never_inflated(tree, tls, key, marker, encoding):
    bomb = gzip.compress(b"\n" * 10_000_000)  # ~10 KB that inflates to 10 MB

    def route(h) -> None:
        h.send_body(bomb[: len(MODULE)], Content_Encoding=encoding)

    tree.routes["mod.py"] = route
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile, timeout=5)
    error, _ = import_fails(DownloadError)
    assert "Content-Encoding" in str(error)
    assert tree.seen[-1][1].get("Accept-Encoding") == "identity"
    assert_never_ran(marker, "mod")


# -- redirects and credentials -------------------------------------------------------------


def redirect_to(location: str):
    def route(h) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


@pytest.mark.parametrize("target", ["http", "other-host", "other-port"])
def test_module_redirected_off_origin_is_rejected_and_credentials_stay_home(
    tree, start, tls, key, release, marker, target
):
    evil = {"mod.py": evil_source(marker).encode()}
    elsewhere = (
        start(evil, plain=True)
        if target == "http"
        else start(evil, host="localhost" if target == "other-host" else "127.0.0.1")
    )
    tree.routes["mod.py"] = redirect_to(f"{elsewhere.url}/mod.py")
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile, headers={"Authorization": SECRET})
    error, _ = import_fails(RedirectError)
    assert "same-origin https" in str(error)
    assert elsewhere.seen == []  # not even a connection carrying the request
    assert len(tree.seen) >= 2  # the manifest and mod.py, each with the token: home only
    assert {h.get("Authorization") for _, h in tree.seen} == {SECRET}
    assert SECRET not in str(error)
    assert_never_ran(marker, "mod")


def test_redirect_carrying_userinfo_is_rejected_without_echoing_it(tree, tls, key, marker):
    tree.routes["mod.py"] = redirect_to(
        f"https://admin:hunter2@127.0.0.1:{tree.server_port}/v2/mod.py"
    )
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile)
    error, _ = import_fails(RedirectError)
    assert "hunter2" not in str(error) and "admin" not in str(error)
    # (the bundle, absent here, and other.py, prefetched as mod's sibling,
    # may be asked for too; mod.py is asked for once.)
    assert [p for p, _ in tree.seen if p not in ("/other.py", f"/{BUNDLE_NAME}")] == [
        f"/{MANIFEST_NAME}",
        "/mod.py",
    ]
    assert_never_ran(marker, "mod")


def test_manifest_redirected_to_another_host_is_rejected_at_install(tree, start, tls, key, release):
    elsewhere = start(release.everything(), host="localhost")
    tree.routes[MANIFEST_NAME] = redirect_to(f"{elsewhere.url}/{MANIFEST_NAME}")
    with pytest.raises(RedirectError) as err:
        install(
            tree.url, pubkey=key.public.raw, cafile=tls.cafile, headers={"Authorization": SECRET}
        )
    assert type(err.value) is RedirectError
    assert elsewhere.seen == []
    assert SECRET not in str(err.value)


def test_same_origin_redirect_is_followed_with_credentials(tree, tls, key):
    # The twin of the two above: a CDN-style move within the origin works.
    tree.routes["mod.py"] = redirect_to("/v2/mod.py")
    install(tree.url, pubkey=key.public.raw, cafile=tls.cafile, headers={"Authorization": SECRET})
    assert importlib.import_module("mod").VALUE == 42
    fetched = [p for p, _ in tree.seen if p.endswith("mod.py")]
    assert fetched == ["/mod.py", "/v2/mod.py"]
    assert all(h.get("Authorization") == SECRET for _, h in tree.seen)


def test_authorization_for_one_tree_never_reaches_another_trees_origin(start, tls, key):
    first = start(sign_release({"alpha.py": "A = 1\n"}, [key]).everything())
    second = start(sign_release({"beta.py": "B = 1\n"}, [key]).everything())
    install(first.url, pubkey=key.public.raw, cafile=tls.cafile, headers={"Authorization": SECRET})
    install(second.url, pubkey=key.public.raw, cafile=tls.cafile)
    assert importlib.import_module("alpha").A == importlib.import_module("beta").B == 1
    assert second.seen and all("Authorization" not in h for _, h in second.seen)
    assert all(h.get("Authorization") == SECRET for _, h in first.seen)
