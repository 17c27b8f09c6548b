"""Warm starts in fresh interpreters against a plain ``http.server`` over real HTTPS.

The server here is Python's own ``SimpleHTTPRequestHandler`` (with TLS): it
sends ``Last-Modified`` and answers ``If-Modified-Since`` with a 304, but
sends no ``ETag`` -- like a plain object store.  Each consumer is a new
interpreter, so nothing but the cache directory carries over.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Signer, TLSFiles, write_tree

from secure_urlimport._format.paths import MANIFEST_NAME


class PlainServer:
    """``http.server`` over TLS for one directory; records (path, status) of each request."""

    def __init__(self, directory: Path, tls: TLSFiles) -> None:
        self.directory = directory
        self.log: list[tuple[str, int]] = []
        #: Paths answered with this status instead (e.g. 503), if set.
        self.fail: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

            def send_head(self) -> Any:
                status = server.fail.get(self.path)
                if status is not None:
                    self.send_error(status)
                    return None
                return super().send_head()

            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                server.log.append((self.path, int(code)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.certfile, tls.keyfile)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: from now on a connection is refused."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()

    def manifest_requests(self) -> list[int]:
        return [status for path, status in self.log if path == f"/{MANIFEST_NAME}"]


@pytest.fixture
def plain(tls: TLSFiles) -> Iterator[Callable[[Path], PlainServer]]:
    servers: list[PlainServer] = []

    def start(directory: Path) -> PlainServer:
        servers.append(PlainServer(directory, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def signed_tree(directory: Path, publisher: Signer, **sign: Any) -> Path:
    write_tree(directory, {"mod.py": "VALUE = 42\n", "pkg/__init__.py": ""})
    publisher.sign(directory, **sign)
    age_files(directory)
    return directory


def age_files(directory: Path, seconds: float = 60) -> None:
    """Date every file back: a Last-Modified in the very second of the response
    is not kept as a validator (it could change again within that second)."""
    past = time.time() - seconds
    for path in directory.rglob("*"):
        os.utime(path, (past, past))


CONSUMER = """\
import json, sys
import secure_urlimport
url, pub, cafile, options = sys.argv[1:5]
config = secure_urlimport.Config(**json.loads(options))
secure_urlimport.install(url, pubkey=pub, cafile=cafile, config=config)
import mod
print(mod.VALUE, "requests" in sys.modules)
"""


def consume(
    server: PlainServer, publisher: Signer, tls: TLSFiles, cache: Path, **config: Any
) -> subprocess.CompletedProcess[str]:
    """One fresh interpreter that installs the tree and imports ``mod``."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["PYTHONPATH"] = str(REPO)
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    args = [server.url, str(publisher.pub), tls.cafile, json.dumps(config)]
    return subprocess.run(
        [sys.executable, "-c", CONSUMER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "consumer-cache"


# -- revalidation without ETags ---------------------------------------------------------


def test_a_warm_start_against_http_server_is_one_304(tmp_path, plain, publisher, tls, cache):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    cold = consume(server, publisher, tls, cache)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.startswith("42 ")
    assert server.manifest_requests() == [200]
    server.log.clear()
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 0, warm.stderr
    assert server.log == [(f"/{MANIFEST_NAME}", 304)]


def test_a_new_release_on_http_server_is_downloaded_not_304(tmp_path, plain, publisher, tls, cache):
    tree = signed_tree(tmp_path / "tree", publisher)
    server = plain(tree)
    assert consume(server, publisher, tls, cache).returncode == 0
    (tree / "mod.py").write_text("VALUE = 43\n", encoding="utf-8")
    publisher.sign(tree, version=2)
    age_files(tree, seconds=5)  # newer than the cached copy's Last-Modified
    server.log.clear()
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("43 ")
    assert server.manifest_requests() == [200]


def test_a_last_modified_not_a_second_before_the_date_is_not_kept(
    tmp_path, plain, publisher, tls, cache
):
    tree = tmp_path / "tree"
    write_tree(tree, {"mod.py": "VALUE = 42\n"})
    publisher.sign(tree)
    now = time.time() + 3600  # "modified" in the future: never before the Date
    os.utime(tree / MANIFEST_NAME, (now, now))
    server = plain(tree)
    assert consume(server, publisher, tls, cache).returncode == 0
    server.log.clear()
    assert consume(server, publisher, tls, cache).returncode == 0
    assert server.manifest_requests() == [200]  # downloaded again, not revalidated


# -- offline start ----------------------------------------------------------------------


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "OfflineFallbackWarning" in line]


def test_with_the_server_stopped_a_warm_start_uses_the_cache_and_warns_once(
    tmp_path, plain, publisher, tls, cache
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache).returncode == 0
    server.stop()
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("42 ")
    [warning] = warnings_in(warm.stderr)
    # Where a local import's warning points: the consumer's own line (install()).
    assert warning.startswith("<string>:5: OfflineFallbackWarning:")
    assert "Connection refused" in warning
    assert "version 1" in warning and "expires 20" in warning


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_at_the_manifest_falls_back_to_the_cache(
    tmp_path, plain, publisher, tls, cache, status
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache).returncode == 0
    server.fail[f"/{MANIFEST_NAME}"] = status
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 0, warm.stderr
    [warning] = warnings_in(warm.stderr)
    assert f"HTTP {status}" in warning


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_a_4xx_at_the_manifest_never_falls_back(tmp_path, plain, publisher, tls, cache, status):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache).returncode == 0
    server.fail[f"/{MANIFEST_NAME}"] = status
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 1
    assert f"HTTPStatusError: cannot download {server.url}/{MANIFEST_NAME}: HTTP {status}" in (
        warm.stderr
    )
    assert warnings_in(warm.stderr) == []


def test_with_the_cached_release_expired_the_offline_start_fails_closed(
    tmp_path, plain, publisher, tls, cache
):
    from datetime import timedelta

    tree = signed_tree(tmp_path / "tree", publisher, expires_in=timedelta(seconds=4))
    expires = time.time() + 4
    server = plain(tree)
    assert consume(server, publisher, tls, cache).returncode == 0
    server.stop()
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 1
    # The download's own error, as without a cache: not the cached copy's expiry.
    last = warm.stderr.strip().splitlines()[-1]
    assert last.startswith("secure_urlimport.errors.DownloadError: cannot download ")
    assert "Connection refused" in last
    assert warnings_in(warm.stderr) == []


def test_a_tampered_manifest_at_the_server_is_never_replaced_by_the_cache(
    tmp_path, plain, publisher, tls, cache
):
    tree = signed_tree(tmp_path / "tree", publisher)
    server = plain(tree)
    assert consume(server, publisher, tls, cache).returncode == 0
    manifest = tree / MANIFEST_NAME
    manifest.write_bytes(manifest.read_bytes().replace(b"mod.py", b"mod.pz", 1))
    age_files(tree, seconds=5)  # newer than the cached copy: served in full
    warm = consume(server, publisher, tls, cache)
    assert warm.returncode == 1
    assert "VerificationError" in warm.stderr or "BadSignatureError" in warm.stderr
    assert warnings_in(warm.stderr) == []


def test_offline_fallback_false_fails_with_the_download_error(
    tmp_path, plain, publisher, tls, cache
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache).returncode == 0
    server.stop()
    warm = consume(server, publisher, tls, cache, offline_fallback=False)
    assert warm.returncode == 1
    assert "DownloadError: cannot download" in warm.stderr and "Connection refused" in warm.stderr
    assert warnings_in(warm.stderr) == []


# -- a freshness window -----------------------------------------------------------------


def test_within_max_age_a_warm_start_makes_no_request_and_never_imports_requests(
    tmp_path, plain, publisher, tls, cache
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    cold = consume(server, publisher, tls, cache, max_age=300)
    assert cold.returncode == 0, cold.stderr
    server.log.clear()
    warm = consume(server, publisher, tls, cache, max_age=300)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout == "42 False\n"  # 'requests' not in sys.modules
    assert server.log == []
    # Without max_age the same cache revalidates (one 304) and needs requests.
    again = consume(server, publisher, tls, cache)
    assert again.stdout == "42 True\n"
    assert server.log == [(f"/{MANIFEST_NAME}", 304)]


def fresh_record(cache: Path) -> Path:
    [record] = (cache / "state").glob("*.fresh")
    return record


@pytest.mark.parametrize(("shift", "asks"), [(-10, False), (-400, True), (+3600, True)])
def test_max_age_counts_from_the_last_revalidation_and_a_clock_gone_back_is_stale(
    tmp_path, plain, publisher, tls, cache, shift, asks
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache, max_age=300).returncode == 0
    record = fresh_record(cache)
    data = json.loads(record.read_text())
    data["at"] += shift  # +3600: recorded "in the future", as after the clock went back
    record.write_text(json.dumps(data))
    server.log.clear()
    warm = consume(server, publisher, tls, cache, max_age=300)
    assert warm.returncode == 0, warm.stderr
    assert server.manifest_requests() == ([304] if asks else [])


def test_within_max_age_a_tampered_cached_manifest_is_not_used_but_fetched_again(
    tmp_path, plain, publisher, tls, cache
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache, max_age=300).returncode == 0
    [entry] = (cache / "manifests").iterdir()
    entry.write_bytes(entry.read_bytes().replace(b"mod.py", b"mod.pz", 1))
    server.log.clear()
    warm = consume(server, publisher, tls, cache, max_age=300)
    assert warm.returncode == 0, warm.stderr
    # Not used without a request: revalidated (304), refused, dropped, downloaded whole.
    assert server.manifest_requests() == [304, 200]


def test_within_max_age_cached_module_bytes_are_still_verified(
    tmp_path, plain, publisher, tls, cache, marker
):
    server = plain(signed_tree(tmp_path / "tree", publisher))
    assert consume(server, publisher, tls, cache, max_age=300).returncode == 0
    evil = f"open({str(marker)!r}, 'w').write('ran')\nVALUE = 666\n".encode()
    for path in (cache / "files").rglob("*"):
        if path.is_file() and path.read_bytes() == b"VALUE = 42\n":
            path.write_bytes(evil)
    for path in (cache / "bundles").glob("*"):
        path.write_bytes(path.read_bytes().replace(b"VALUE = 42\n", evil[: len(b"VALUE = 42\n")]))
    warm = consume(server, publisher, tls, cache, max_age=300)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("42 ")  # downloaded again
    assert not marker.exists()
