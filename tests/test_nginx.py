"""A real nginx serving signed trees: import, path hook, ``verify``, authentication, mTLS.

Each test starts nginx on loopback with a trustme certificate (``nginx``
fixture, tests/nginx.py).  Without nginx these tests are skipped, unless
``SECURE_URLIMPORT_REQUIRE_NGINX=1`` (set by .ci/run) makes that a failure.
Every failure test also checks that nothing of the refused tree is left in
``sys.modules`` and, for tampered code, that it never ran.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import requests
import trustme
from conftest import REPO, Signer, TLSFiles, write_tree

from secure_urlimport import (
    DownloadError,
    HTTPStatusError,
    Importer,
    RedirectError,
    TamperedFileError,
    UntrustedKeyError,
    install,
    install_path_hook,
    trust,
)

TOKEN = "tok-7c1f9a0e5b2d4c83"  # distinctive, so a leak anywhere is found by substring
WRONG_TOKEN = "tok-wrong-3e8d1b6a"
PASSWORD = "pw-5d2c8e1f7a9b"
WRONG_PASSWORD = "pw-wrong-0b4e6c2a"


# -- the tree, and checks shared by the tests ----------------------------------


def _shop(root: Path, signer: Signer) -> Path:
    """A package with a submodule (relative import) and a data file read via resources."""
    write_tree(
        root,
        {
            "shop/__init__.py": (
                "import json\n"
                "from importlib.resources import files\n\n"
                "PRICES = json.loads(files(__name__).joinpath('prices.json').read_text('utf-8'))\n"
            ),
            "shop/cart.py": "from . import PRICES\n\n\ndef total(*items):\n"
            "    return sum(PRICES[item] for item in items)\n" + "#" * 300 + "\n",
            "shop/prices.json": '{"apple": 3, "pear": 4}\n',
        },
    )
    signer.sign(root)
    return root


@pytest.fixture
def shop_tree(tmp_path: Path, publisher: Signer) -> Path:
    return _shop(tmp_path / "shop-tree", publisher)


def _import_shop_and_check(url: str) -> None:
    import shop.cart

    assert shop.cart.total("apple", "pear") == 7
    assert shop.__file__ == f"{url}/shop/__init__.py"
    assert shop.cart.__file__ == f"{url}/shop/cart.py"


def _nothing_imported(package: str = "shop") -> bool:
    return not [n for n in sys.modules if n == package or n.startswith(package + ".")]


def _installed_importers() -> list[Importer]:
    return [f for f in sys.meta_path if isinstance(f, Importer)]


def _everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """The error as a user or a log sees it: message, repr, traceback, all log records."""
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    )


# -- importing from nginx --------------------------------------------------------


def test_install_imports_package_submodule_and_resource_from_nginx(
    nginx, shop_tree, tls, publisher
):
    server = nginx(shop_tree)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    _import_shop_and_check(server.url)
    # (How many files are fetched one by one is the library's business.)
    seen = server.requests_seen(at_least=2)
    assert any('"GET /secure-urlimport.manifest HTTP/1.1" 200' in line for line in seen)
    assert all('" 200 ' in line for line in seen)


def _tamper_on_server(root: Path, relpath: str, new: bytes) -> None:
    """Change *relpath* on the server -- also wherever else the server has its
    bytes (any file beside the manifest that carries a copy of them)."""
    old = (root / relpath).read_bytes()
    for path in root.rglob("*"):
        if path.is_file() and path.name != "secure-urlimport.manifest":
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))


def test_install_refuses_file_tampered_on_nginx(nginx, shop_tree, tls, publisher, marker):
    # Same size as signed, so it is the hash that catches it (a longer file is
    # cut off at the signed size: ResponseTooLargeError).
    signed = (shop_tree / "shop" / "cart.py").read_bytes()
    evil = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    assert len(evil) <= len(signed)
    _tamper_on_server(
        shop_tree, "shop/cart.py", evil + b"#" * (len(signed) - len(evil) - 1) + b"\n"
    )
    server = nginx(shop_tree)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    with pytest.raises(TamperedFileError) as err:
        import shop.cart  # noqa: F401
    assert f"{server.url}/shop/cart.py" in str(err.value)
    assert not marker.exists()
    assert "shop.cart" not in sys.modules


def test_path_hook_imports_from_nginx(nginx, shop_tree, tls, publisher):
    server = nginx(shop_tree)
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()
    sys.path.append(server.url)
    _import_shop_and_check(server.url)


def test_path_hook_refuses_tree_signed_by_stranger_on_nginx(
    nginx, tmp_path, tls, publisher, stranger
):
    server = nginx(_shop(tmp_path / "t", stranger))
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()
    sys.path.append(server.url)
    with pytest.raises(UntrustedKeyError):
        import shop  # noqa: F401
    assert _nothing_imported()


# -- secure-urlimport verify https://... against nginx ----------------------------


def _verify(
    url: str, signer: Signer, cafile: str, *options: str
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("secure-urlimport")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "secure_urlimport"]
    return subprocess.run(
        [*command, "verify", url, "--pubkey", str(signer.pub), "--cafile", cafile, *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_cli_verify_passes_tree_served_by_nginx(nginx, shop_tree, tls, publisher):
    server = nginx(shop_tree)
    result = _verify(server.url, publisher, tls.cafile, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["files_checked"] == 3 and report["problems"] == []
    assert len(server.requests_seen(at_least=4)) >= 4  # manifest + 3 files


def test_cli_verify_names_file_tampered_on_nginx(nginx, shop_tree, tls, publisher):
    _tamper_on_server(shop_tree, "shop/prices.json", b'{"apple": 0, "pear": 0}\n')
    server = nginx(shop_tree)
    result = _verify(server.url, publisher, tls.cafile)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tampered: shop/prices.json:" in result.stdout
    assert "shop/cart.py" not in result.stdout


# -- bearer token ------------------------------------------------------------------


def test_bearer_token_opens_protected_nginx_and_is_never_logged(
    nginx, shop_tree, tls, publisher, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(shop_tree, bearer=TOKEN)
    importer = install(
        server.url,
        pubkey=publisher.pub,
        cafile=tls.cafile,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    _import_shop_and_check(server.url)
    seen = server.requests_seen(at_least=2)
    assert seen and all(f'auth="Bearer {TOKEN}"' in line and '" 200 ' in line for line in seen)
    assert caplog.records  # the debug trail exists, without the token
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(importer) and TOKEN not in repr(importer.tree.config)


@pytest.mark.parametrize("token", [None, WRONG_TOKEN], ids=["no-token", "wrong-token"])
def test_missing_or_wrong_bearer_token_is_401_asking_for_credentials(
    nginx, shop_tree, tls, publisher, caplog, token
):
    caplog.set_level(logging.DEBUG)
    server = nginx(shop_tree, bearer=TOKEN)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with pytest.raises(HTTPStatusError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, headers=headers)
    assert err.value.status == 401
    message = str(err.value)
    assert f"{server.url}/secure-urlimport.manifest" in message
    assert "401" in message and "check the credentials" in message
    said = _everything_said(err.value, caplog)
    assert TOKEN not in said and WRONG_TOKEN not in said
    assert _installed_importers() == []
    with pytest.raises(ModuleNotFoundError):
        import shop  # noqa: F401
    assert _nothing_imported()


def test_wrong_bearer_token_fails_import_through_path_hook(
    nginx, shop_tree, tls, publisher, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(shop_tree, bearer=TOKEN)
    trust(
        server.url,
        pubkey=publisher.pub,
        cafile=tls.cafile,
        headers={"Authorization": f"Bearer {WRONG_TOKEN}"},
    )
    install_path_hook()
    sys.path.append(server.url)
    with pytest.raises(HTTPStatusError) as err:
        import shop  # noqa: F401
    assert err.value.status == 401 and "check the credentials" in str(err.value)
    assert WRONG_TOKEN not in _everything_said(err.value, caplog)
    assert _nothing_imported()


# -- credentials stay with their origin --------------------------------------------


def test_same_origin_redirect_keeps_the_token(nginx, shop_tree, tls, publisher):
    server = nginx(
        shop_tree, bearer=TOKEN, extra="location /old/ { rewrite ^/old/(.*)$ /$1 redirect; }"
    )
    install(
        f"{server.url}/old",
        pubkey=publisher.pub,
        cafile=tls.cafile,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    import shop.cart

    assert shop.cart.total("pear") == 4
    seen = server.requests_seen(at_least=4)
    assert any('"GET /old/secure-urlimport.manifest HTTP/1.1" 302' in line for line in seen)
    assert any('"GET /secure-urlimport.manifest HTTP/1.1" 200' in line for line in seen)
    assert all(f'auth="Bearer {TOKEN}"' in line for line in seen)


def test_token_is_never_sent_to_another_origin_by_redirect(
    nginx, shop_tree, tls, publisher, caplog
):
    caplog.set_level(logging.DEBUG)
    elsewhere = nginx(shop_tree)
    server = nginx(
        shop_tree,
        bearer=TOKEN,
        extra=(
            "location = /moved/secure-urlimport.manifest "
            f"{{ return 302 {elsewhere.url}/secure-urlimport.manifest; }}"
        ),
    )
    with pytest.raises(RedirectError) as err:
        install(
            f"{server.url}/moved",
            pubkey=publisher.pub,
            cafile=tls.cafile,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert "only same-origin" in str(err.value)
    assert elsewhere.requests_seen() == []  # never even contacted
    assert TOKEN not in _everything_said(err.value, caplog)
    assert _installed_importers() == [] and _nothing_imported()


# -- HTTP basic authentication ------------------------------------------------------


def test_basic_auth_opens_protected_nginx_and_password_is_never_logged(
    nginx, shop_tree, tls, publisher, caplog
):
    caplog.set_level(logging.DEBUG)
    server = nginx(shop_tree, basic={"alice": PASSWORD})
    importer = install(
        server.url, pubkey=publisher.pub, cafile=tls.cafile, auth=("alice", PASSWORD)
    )
    _import_shop_and_check(server.url)
    seen = server.requests_seen(at_least=2)
    assert seen and all('auth="Basic ' in line and '" 200 ' in line for line in seen)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(importer) and PASSWORD not in repr(importer.tree.config)


@pytest.mark.parametrize(
    "auth",
    [None, ("alice", WRONG_PASSWORD), ("mallory", PASSWORD)],
    ids=["no-auth", "wrong-password", "unknown-user"],
)
def test_basic_auth_refused_is_401_asking_for_credentials(
    nginx, shop_tree, tls, publisher, caplog, auth
):
    caplog.set_level(logging.DEBUG)
    server = nginx(shop_tree, basic={"alice": PASSWORD})
    with pytest.raises(HTTPStatusError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, auth=auth)
    assert err.value.status == 401 and "check the credentials" in str(err.value)
    said = _everything_said(err.value, caplog)
    assert PASSWORD not in said and WRONG_PASSWORD not in said
    assert _installed_importers() == [] and _nothing_imported()


# -- mutual TLS ----------------------------------------------------------------------


class ClientCerts:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.cafile = str(directory / "client-ca.pem")
        self.ca.cert_pem.write_to_path(self.cafile)
        cert = self.ca.issue_cert("client@example.org")
        self.combined = str(directory / "client.pem")  # key and chain in one file
        cert.private_key_and_cert_chain_pem.write_to_path(self.combined)
        self.cert, self.key = str(directory / "client-cert.pem"), str(directory / "client-key.pem")
        cert.cert_chain_pems[0].write_to_path(self.cert)
        cert.private_key_pem.write_to_path(self.key)
        foreign = trustme.CA().issue_cert("client@example.org")
        self.foreign = str(directory / "foreign-client.pem")
        foreign.private_key_and_cert_chain_pem.write_to_path(self.foreign)


@pytest.fixture(scope="module")
def client_certs(tmp_path_factory: pytest.TempPathFactory) -> ClientCerts:
    return ClientCerts(tmp_path_factory.mktemp("client-certs"))


@pytest.mark.parametrize("form", ["combined-file", "cert-key-pair"])
def test_client_certificate_opens_mutual_tls_nginx(
    nginx, shop_tree, tls, publisher, client_certs, form
):
    server = nginx(shop_tree, client_ca=client_certs.cafile)
    client_cert = (
        client_certs.combined if form == "combined-file" else (client_certs.cert, client_certs.key)
    )
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, client_cert=client_cert)
    _import_shop_and_check(server.url)
    seen = server.requests_seen(at_least=2)
    assert seen and all('" 200 ' in line and 'client="-"' not in line for line in seen)


def _refused_by_mutual_tls(server_url: str, err: pytest.ExceptionInfo[DownloadError]) -> None:
    # nginx completes the handshake and answers 400 ("No required SSL
    # certificate was sent" / "The SSL certificate error") rather than abort it.
    assert isinstance(err.value, HTTPStatusError) and err.value.status == 400
    assert f"{server_url}/secure-urlimport.manifest" in str(err.value)


@pytest.mark.parametrize("which", ["no-certificate", "certificate-of-another-ca"])
def test_mutual_tls_nginx_refuses_client_without_acceptable_certificate(
    nginx, shop_tree, tls, publisher, client_certs, which
):
    server = nginx(shop_tree, client_ca=client_certs.cafile)
    client_cert = client_certs.foreign if which == "certificate-of-another-ca" else None
    with pytest.raises(DownloadError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, client_cert=client_cert)
    _refused_by_mutual_tls(server.url, err)
    assert _installed_importers() == []
    with pytest.raises(ModuleNotFoundError):
        import shop  # noqa: F401
    assert _nothing_imported()
    errors = server.error_log.read_text()
    assert (
        "client sent no required SSL certificate" in errors
        if which == "no-certificate"
        else "client SSL certificate verify error" in errors
    )


def test_mutual_tls_refusal_message_suggests_client_cert(
    nginx, shop_tree, tls, publisher, client_certs
):
    server = nginx(shop_tree, client_ca=client_certs.cafile)
    with pytest.raises(DownloadError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert "client_cert" in str(err.value) or "client certificate" in str(err.value)


# -- the documented production configuration (docs/hosting.md) ----------------------

DOCS = REPO / "docs" / "hosting.md"
DOC_MARKER = "<!-- tested-nginx-config:"


def _documented_server_block() -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(re.escape(DOC_MARKER) + r".*?-->\n```nginx\n(.*?)```", text, re.DOTALL)
    assert match, f"{DOCS} must have a ```nginx block right after {DOC_MARKER} ... -->"
    return match.group(1)


def _substitute(block: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert block.count(old) == 1, f"the documented config no longer has {old!r} once"
        block = block.replace(old, new)
    return block


@pytest.fixture
def documented_nginx(nginx, tmp_path: Path, tls: TLSFiles, publisher: Signer):
    """nginx running docs/hosting.md's server block verbatim, but for port, certs and root."""
    root = tmp_path / "srv"
    _shop(root / "shop-tree", publisher)
    write_tree(root, {"shop-tree/.git/config": "[core]\n"})  # not signed: dot entries skipped
    template = _substitute(
        _documented_server_block(),
        {
            "listen 443 ssl;": "listen 127.0.0.1:{port} ssl;",
            "/etc/ssl/code.example.com/fullchain.pem": tls.certfile,
            "/etc/ssl/code.example.com/privkey.pem": tls.keyfile,
            "root /srv/secure-urlimport;": f"root {root};",
        },
    )
    return nginx(None, server_template=template)


def test_documented_nginx_config_serves_an_importable_tree(documented_nginx, tls, publisher):
    url = f"{documented_nginx.url}/shop-tree"
    install(url, pubkey=publisher.pub, cafile=tls.cafile)
    _import_shop_and_check(url)

    manifest = requests.get(
        f"{url}/secure-urlimport.manifest",
        verify=tls.cafile,
        timeout=10,
        headers={"Accept-Encoding": "identity"},
    )
    assert manifest.status_code == 200
    assert manifest.headers["Cache-Control"] == "no-cache"
    assert manifest.headers["ETag"]
    assert "Content-Encoding" not in manifest.headers
    module = requests.get(
        f"{url}/shop/cart.py",
        verify=tls.cafile,
        timeout=10,
        headers={"Accept-Encoding": "gzip, identity"},
    )
    assert module.status_code == 200
    assert module.headers["Cache-Control"] == "public, max-age=3600"
    assert module.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Content-Encoding" not in module.headers
    revalidated = requests.get(
        f"{url}/secure-urlimport.manifest",
        verify=tls.cafile,
        timeout=10,
        headers={"If-None-Match": manifest.headers["ETag"]},
    )
    assert revalidated.status_code == 304


def test_documented_nginx_config_lists_no_directory_and_hides_dot_files(documented_nginx, tls):
    url = f"{documented_nginx.url}/shop-tree"
    for path in ("/", "/shop/", "/.git/config", "/missing.py"):
        response = requests.get(url + path, verify=tls.cafile, timeout=10)
        assert response.status_code in (403, 404), path
        assert "cart.py" not in response.text and "[core]" not in response.text
        if response.status_code == 404:
            assert "max-age" not in response.headers.get("Cache-Control", ""), path
