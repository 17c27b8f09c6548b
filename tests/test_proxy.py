"""Proxies: HTTPS_PROXY/NO_PROXY, the explicit ``proxy=`` option, and what a proxy sees.

A real CONNECT proxy on loopback (tests/connect_proxy.py) tunnels to a real
nginx (tests/nginx.py).  The proxy records every CONNECT and every byte the
client sent it, so the tests can prove that credentials meant for the origin
travel only inside the TLS tunnel, and that proxy credentials reach only the
proxy.  conftest.py removes the machine's proxy variables before each test.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Signer, write_tree
from connect_proxy import ConnectProxy, running_proxy
from nginx import free_port

from secure_urlimport import (
    Config,
    DownloadError,
    HTTPStatusError,
    Importer,
    TLSError,
    install,
)

TOKEN = "tok-proxy-9f3a6c1e2d"
PROXY_USER, PROXY_PASSWORD = "squid-user", "proxy-pw-4b7e1d0c"


@pytest.fixture
def tree(tmp_path: Path, publisher: Signer) -> Path:
    root = write_tree(
        tmp_path / "tree",
        {
            "viaproxy/__init__.py": "",
            "viaproxy/answer.py": "VALUE = 42\n",
        },
    )
    publisher.sign(root)
    return root


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with running_proxy() as running:
        yield running


def _import_through(url: str) -> None:
    import viaproxy.answer

    assert viaproxy.answer.VALUE == 42
    assert viaproxy.answer.__file__ == f"{url}/viaproxy/answer.py"


def _dead_proxy() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def _installed() -> list[Importer]:
    return [f for f in sys.meta_path if isinstance(f, Importer)]


def _nothing_imported() -> bool:
    return not [n for n in sys.modules if n == "viaproxy" or n.startswith("viaproxy.")]


def _everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    )


# -- the environment: HTTPS_PROXY and NO_PROXY ---------------------------------------


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_variable_routes_downloads_through_the_proxy(
    nginx, tree, tls, publisher, proxy, monkeypatch, variable
):
    server = nginx(tree)
    monkeypatch.setenv(variable, proxy.url)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    _import_through(server.url)
    assert proxy.targets  # keep-alive: one tunnel may carry every request
    assert set(proxy.targets) == {f"127.0.0.1:{server.port}"}


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_variable_bypasses_the_proxy(
    nginx, tree, tls, publisher, proxy, monkeypatch, variable
):
    server = nginx(tree)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv(variable, "localhost,127.0.0.1")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    _import_through(server.url)
    assert proxy.request_heads == []
    assert server.requests_seen(at_least=2)  # straight to the server


def test_dead_proxy_from_environment_fails_install_with_download_error(
    nginx, tree, tls, publisher, monkeypatch
):
    server = nginx(tree)
    monkeypatch.setenv("HTTPS_PROXY", _dead_proxy())
    with pytest.raises(DownloadError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert not isinstance(err.value, HTTPStatusError | TLSError)
    assert f"{server.url}/secure-urlimport.manifest" in str(err.value)
    assert "Connection refused" in str(err.value)
    assert server.requests_seen() == []  # the proxy was the only way, and it was dead
    assert _installed() == [] and _nothing_imported()


# -- the explicit proxy= option --------------------------------------------------------


def test_explicit_proxy_wins_over_dead_environment_proxy(
    nginx, tree, tls, publisher, proxy, monkeypatch
):
    server = nginx(tree)
    monkeypatch.setenv("HTTPS_PROXY", _dead_proxy())
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, proxy=proxy.url)
    _import_through(server.url)
    assert set(proxy.targets) == {f"127.0.0.1:{server.port}"}


def test_explicit_proxy_is_used_even_when_no_proxy_lists_the_host(
    nginx, tree, tls, publisher, proxy, monkeypatch
):
    server = nginx(tree)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, proxy=proxy.url)
    _import_through(server.url)
    assert set(proxy.targets) == {f"127.0.0.1:{server.port}"}


def test_dead_explicit_proxy_fails_with_download_error_hiding_its_password(
    nginx, tree, tls, publisher, monkeypatch, proxy, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(tree)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # live, but proxy= replaces it
    dead = _dead_proxy().replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")
    with pytest.raises(DownloadError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, proxy=dead)
    assert not isinstance(err.value, HTTPStatusError | TLSError)
    assert "Connection refused" in str(err.value)
    assert PROXY_PASSWORD not in _everything_said(err.value, caplog)
    assert proxy.request_heads == []
    assert _installed() == [] and _nothing_imported()


def test_dead_proxy_error_names_the_proxy(nginx, tree, tls, publisher):
    server = nginx(tree)
    dead = _dead_proxy()
    with pytest.raises(DownloadError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, proxy=dead)
    assert "proxy" in str(err.value).lower()
    assert dead.removeprefix("http://") in str(err.value)


# -- credentials: the origin's stay in the tunnel, the proxy's stay with the proxy -------


def test_bearer_token_travels_only_inside_the_tls_tunnel(
    nginx, tree, tls, publisher, proxy, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(tree, bearer=TOKEN)
    install(
        server.url,
        pubkey=publisher.pub,
        cafile=tls.cafile,
        proxy=proxy.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    _import_through(server.url)
    seen = server.requests_seen(at_least=2)
    assert seen and all(f'auth="Bearer {TOKEN}"' in line for line in seen)
    assert proxy.targets
    assert all(head.startswith("CONNECT ") for head in proxy.request_heads)
    assert not any("authorization" in head.lower() for head in proxy.request_heads)
    assert TOKEN.encode() not in proxy.everything_seen()  # only ciphertext passed through
    assert len(proxy.everything_seen()) > 1000  # ... and plenty of it
    assert TOKEN not in caplog.text


def test_wrong_bearer_token_through_proxy_is_401_and_never_visible_to_proxy(
    nginx, tree, tls, publisher, proxy, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(tree, bearer=TOKEN)
    with pytest.raises(HTTPStatusError) as err:
        install(
            server.url,
            pubkey=publisher.pub,
            cafile=tls.cafile,
            proxy=proxy.url,
            headers={"Authorization": "Bearer wrong-" + TOKEN},
        )
    assert err.value.status == 401 and "check the credentials" in str(err.value)
    assert TOKEN not in _everything_said(err.value, caplog)
    assert TOKEN.encode() not in proxy.everything_seen()
    assert _installed() == [] and _nothing_imported()


@pytest.mark.parametrize("via", ["proxy-option", "HTTPS_PROXY"])
def test_proxy_credentials_reach_only_the_proxy(
    nginx, tree, tls, publisher, monkeypatch, caplog, via
):
    caplog.set_level(logging.DEBUG)
    server = nginx(tree)
    with running_proxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        url = proxy.url_with(PROXY_USER, PROXY_PASSWORD)
        if via == "HTTPS_PROXY":
            monkeypatch.setenv("HTTPS_PROXY", url)
        importer = install(
            server.url,
            pubkey=publisher.pub,
            cafile=tls.cafile,
            proxy=url if via == "proxy-option" else None,
        )
        _import_through(server.url)
        assert set(proxy.targets) == {f"127.0.0.1:{server.port}"}
        assert all("proxy-authorization: basic " in head.lower() for head in proxy.request_heads)
    seen = server.requests_seen(at_least=2)
    assert seen and all('proxy_auth="-"' in line and 'auth="-"' in line for line in seen)
    assert PROXY_PASSWORD not in caplog.text
    assert PROXY_PASSWORD not in repr(importer) and PROXY_PASSWORD not in repr(importer.tree)
    assert PROXY_PASSWORD not in repr(importer.tree.config)


@pytest.mark.parametrize(
    "password", [None, "wrong-" + PROXY_PASSWORD], ids=["no-credentials", "wrong-password"]
)
def test_proxy_refusing_credentials_is_a_download_error_that_hides_them(
    nginx, tree, tls, publisher, caplog, password
):
    caplog.set_level(logging.DEBUG)
    server = nginx(tree)
    with running_proxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        url = proxy.url_with(PROXY_USER, password) if password else proxy.url
        with pytest.raises(DownloadError) as err:
            install(server.url, pubkey=publisher.pub, cafile=tls.cafile, proxy=url)
        assert proxy.targets == []  # refused before any tunnel was opened
    assert not isinstance(err.value, HTTPStatusError | TLSError)
    assert "407 Proxy Authentication Required" in str(err.value)
    said = _everything_said(err.value, caplog)
    assert PROXY_PASSWORD not in said and PROXY_USER not in said
    assert server.requests_seen() == []
    assert _installed() == [] and _nothing_imported()


def test_config_repr_hides_proxy_userinfo_but_keeps_the_address():
    config = Config(proxy=f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.example:3128")
    shown = repr(config)
    assert PROXY_PASSWORD not in shown and PROXY_USER not in shown
    assert "proxy.example:3128" in shown
    assert "proxy.example:3128" in repr(Config(proxy="http://proxy.example:3128"))
