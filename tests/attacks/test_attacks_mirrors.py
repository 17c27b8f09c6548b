"""Mirrors: a mirror that is down, slow, failing or hostile is skipped for the next one.

``install([url1, url2, ...], pubkey=...)``: every mirror is an untrusted
host like any other.  Each test runs real HTTPS servers on loopback; the
hostile ones serve other bytes, old releases or errors.  The import fails
only when no mirror serves valid content, and then with the error of the
first mirror plus what each other one did.
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import evil_source
from simulator import HostileHTTPSServer, assert_never_ran, hostile_servers, sign_release

from secure_urlimport import (
    BadSignatureError,
    DownloadError,
    HTTPStatusError,
    RollbackError,
    TamperedFileError,
    install,
    trust,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.api import install_path_hook

MODULE = "VALUE = 'signed'\n" + "#" * 200 + "\n"


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def start(tls) -> Iterator[Callable[..., HostileHTTPSServer]]:
    """``start(files, plain=False, host=...)``: a hostile server; all close at teardown."""
    yield from hostile_servers(tls)


@pytest.fixture
def release(key):
    return sign_release({"mod.py": MODULE, "pkg/__init__.py": "", "pkg/sub.py": MODULE}, [key])


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def status(code: int):
    def route(h) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def test_mirror_that_is_down_is_skipped_with_a_logged_reason(start, release, key, tls, caplog):
    good = start(release.everything())
    down = dead_url()
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        importer = install([down, good.url], pubkey=key.public.raw, cafile=tls.cafile)
        assert importlib.import_module("mod").VALUE == "signed"
    assert f"mirror {down} skipped" in caplog.text and "refused" in caplog.text.lower()
    # The first URL names the modules, whichever mirror served them.
    assert sys.modules["mod"].__file__ == f"{down}/mod.py"
    assert importer is not None


def test_mirror_answering_5xx_is_skipped(start, release, key, tls, caplog):
    failing = start(release.everything())
    failing.routes[MANIFEST_NAME] = status(503)
    good = start(release.everything())
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        install([failing.url, good.url], pubkey=key.public.raw, cafile=tls.cafile)
        assert importlib.import_module("pkg.sub").VALUE == "signed"
    assert "HTTP 503" in caplog.text


def test_slow_mirror_is_skipped_after_the_timeout(start, release, key, tls):
    slow = start(release.everything())

    def stall(h) -> None:
        h.server.stop.wait(10)

    slow.routes[MANIFEST_NAME] = stall
    good = start(release.everything())
    started = time.monotonic()
    install([slow.url, good.url], pubkey=key.public.raw, cafile=tls.cafile, timeout=1)
    assert importlib.import_module("mod").VALUE == "signed"
    assert time.monotonic() - started < 8


def test_mirror_with_a_bad_manifest_signature_is_skipped(start, release, key, tls, caplog):
    forged = dict(release.everything())
    manifest = bytearray(forged[MANIFEST_NAME])
    manifest[-10] ^= 0x01
    forged[MANIFEST_NAME] = bytes(manifest)
    hostile = start(forged)
    good = start(release.everything())
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        install([hostile.url, good.url], pubkey=key.public.raw, cafile=tls.cafile)
    assert "does not verify" in caplog.text


def test_mirror_serving_an_older_release_is_skipped(start, key, tls, caplog):
    old = sign_release({"mod.py": "RELEASE = 1\n"}, [key], version=1)
    new = sign_release({"mod.py": "RELEASE = 2\n"}, [key], version=2)
    current = start(new.everything())
    stale = start(old.everything())
    install([current.url, stale.url], pubkey=key.public.raw, cafile=tls.cafile).uninstall()
    current.routes[MANIFEST_NAME] = status(500)  # now only the stale mirror answers
    with pytest.raises(RollbackError) as err:
        install([current.url, stale.url], pubkey=key.public.raw, cafile=tls.cafile)
    assert "HTTP 500" in str(err.value) and "older than version 2" in str(err.value)


def test_module_tampered_on_one_mirror_is_fetched_from_the_next(
    start, release, key, tls, marker, caplog
):
    files = dict(release.everything())
    evil = evil_source(marker)
    files["mod.py"] = (evil + "#" * (len(MODULE) - len(evil) - 1) + "\n").encode()
    hostile = start(files)
    good = start(release.everything())
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        install([hostile.url, good.url], pubkey=key.public.raw, cafile=tls.cafile)
        assert importlib.import_module("mod").VALUE == "signed"
    assert f"mirror {hostile.url} skipped" in caplog.text
    assert_never_ran(marker)


def test_import_fails_only_when_no_mirror_serves_valid_content(start, release, key, tls, marker):
    files = dict(release.everything())
    evil = evil_source(marker)
    files["mod.py"] = (evil + "#" * (len(MODULE) - len(evil) - 1) + "\n").encode()
    hostile = start(files)
    missing = start(release.everything())
    missing.routes["mod.py"] = status(404)
    install([hostile.url, missing.url], pubkey=key.public.raw, cafile=tls.cafile)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    message = str(err.value)
    assert f"{hostile.url}/mod.py" in message and "HTTP 404" in message
    assert err.value.name == "mod"
    assert_never_ran(marker, "mod")


def test_all_mirrors_down_is_a_download_error_naming_each(release, key, tls):
    first, second = dead_url(), dead_url()
    with pytest.raises(DownloadError) as err:
        install([first, second], pubkey=key.public.raw, cafile=tls.cafile)
    assert first in str(err.value) and second in str(err.value)
    assert not isinstance(err.value, HTTPStatusError)


def test_mirror_signed_by_another_key_is_skipped(start, release, key, tls):
    stranger = sign_release({"mod.py": "VALUE = 'stranger'\n"}, [PrivateKey.generate()])
    hostile = start(stranger.everything())
    good = start(release.everything())
    install([hostile.url, good.url], pubkey=key.public.raw, cafile=tls.cafile)
    assert importlib.import_module("mod").VALUE == "signed"


def test_path_hook_uses_the_mirrors_of_a_trusted_prefix(start, key, tls):
    files = sign_release({"hooked.py": "VALUE = 'hooked'\n"}, [key]).everything()
    good = start({f"app/{path}": data for path, data in files.items()})
    down = dead_url()
    trust([down, good.url], pubkey=key.public.raw, cafile=tls.cafile)
    install_path_hook()
    sys.path.append(f"{down}/app")
    assert importlib.import_module("hooked").VALUE == "hooked"


def test_one_bad_mirror_never_hides_a_bad_signature_everywhere(start, release, key, tls):
    forged = dict(release.everything())
    manifest = bytearray(forged[MANIFEST_NAME])
    manifest[-10] ^= 0x01
    forged[MANIFEST_NAME] = bytes(manifest)
    first, second = start(forged), start(forged)
    with pytest.raises(BadSignatureError) as err:
        install([first.url, second.url], pubkey=key.public.raw, cafile=tls.cafile)
    assert first.url in str(err.value) and second.url in str(err.value)
