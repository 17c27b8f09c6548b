"""Robustness against hostile local state and slow middlemen (found by a review).

A garbage ETag, a FIFO or an unreadable directory in the cache, a proxy that
drips its CONNECT reply, two threads refreshing the manifest at once, a
module over ``max_file_bytes`` inside the bundle, an absurd timeout: each
must end in the project's own error, within the deadline, or in a working
import -- never a hang, a raw exception or an older release.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import logging
import os
import socket
import threading
import time

import pytest
from conftest import evil_source, write_tree
from simulator import RepositorySimulator, assert_never_ran, cache_root, cached_file

from secure_urlimport import (
    Config,
    DownloadTimeoutError,
    SecureImportError,
    install,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME

GOOD = "SIGNED = True\n" + "#" * 64 + "\n"


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


# -- a garbage ETag in the manifest cache must not brick the tree ---------------------------


@pytest.mark.parametrize(
    "etag", ["\u2603", "a\r\nX-Injected: 1", "x" * 100_000], ids=["non-latin-1", "crlf", "huge"]
)
def test_garbage_etag_in_the_manifest_cache_never_fails_an_import(
    testcode, serve, tls, publisher, etag
):
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()
    [entry] = (cache_root() / "manifests").iterdir()
    header, _, data = entry.read_bytes().partition(b"\0")
    meta = json.loads(header)
    meta["etag"] = etag  # the cache is untrusted input (SECURITY.md #41)
    entry.write_bytes(json.dumps(meta).encode() + b"\0" + data)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.import_module("fib").fib(5) == 8


# -- a FIFO (or a symlink to one) in the cache must not hang the import ---------


def test_fifo_planted_in_the_file_cache_does_not_hang_the_import(sim, key):
    sim.publish({"mod.py": GOOD}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    slot = cached_file(GOOD)
    slot.parent.mkdir(parents=True)
    os.mkfifo(slot)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["module"] = importlib.import_module("mod")
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    hung = worker.is_alive()
    if hung:  # unblock it: a writer that closes at once gives the reader EOF
        os.close(os.open(slot, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert not hung, "the import blocked on a FIFO in the cache"
    assert getattr(outcome.get("module"), "SIGNED", None) is True


# -- an unreadable cache directory must not fail imports ----------------


def test_unsearchable_cache_directory_never_fails_an_import(sim, key, monkeypatch):
    sim.publish({"mod.py": GOOD, "pkg/__init__.py": "", "pkg/a.py": "A = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    # We may run as root, which no mode bits stop: play the kernel's EACCES.
    files = str(cache_root() / "files") + os.sep
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(files):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    assert importlib.import_module("mod").SIGNED is True
    assert importlib.import_module("pkg") is not None


# -- a dripping proxy is cut at the deadline -----------------------------------


class DrippingProxy:
    """Accepts CONNECT, then drips its reply one byte every 0.1 s until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n")
                while not self.stop.is_set():
                    client.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def test_proxy_dripping_its_connect_reply_is_cut_at_the_deadline(testcode, serve, tls, publisher):
    server = serve(testcode)
    proxy = DrippingProxy()
    outcome: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            install(server.url, pubkey=publisher.pub, cafile=tls.cafile, timeout=1, proxy=proxy.url)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(6)
    proxy.close()  # ends the drip, so the download returns either way
    worker.join(10)
    seconds = outcome.get("seconds", 99)
    assert isinstance(seconds, int | float)
    assert seconds < 4, f"timeout=1 download took {outcome.get('seconds')}s"
    assert isinstance(outcome.get("error"), DownloadTimeoutError)


# -- concurrent manifest refreshes never go back to an older release ----------------


def test_concurrent_refreshes_never_go_back_to_an_older_release(sim, key, marker):
    old = sim.publish({"mod.py": evil_source(marker)}, [key])  # release 1: has a hole
    importer = install(sim.url, pubkey=key.public.raw, fetcher=sim)
    tree = importer.tree
    new = sim.publish({"mod.py": "FIXED = True\n"}, [key])  # release 2: the fix
    # A stale CDN edge (or the attacker) answers thread "slow" with release 1.
    sim.respond(
        MANIFEST_NAME,
        lambda n: (old if threading.current_thread().name == "slow" else new).manifest_bytes,
    )

    # Pause thread "slow" just after it verified release 1 (floor: 1), before it
    # stores it: the scheduler may do the same at any time.
    paused, resume = threading.Event(), threading.Event()

    class Pause(logging.Handler):
        def handle(self, record: logging.LogRecord) -> bool:  # no handler lock
            if threading.current_thread().name == "slow" and record.getMessage().startswith(
                "verified manifest"
            ):
                paused.set()
                resume.wait(10)
            return True

    logger = logging.getLogger("secure_urlimport")
    handler, level = Pause(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        importlib.invalidate_caches()
        slow = threading.Thread(target=tree.manifest, name="slow")
        slow.start()
        assert paused.wait(10)
        assert tree.manifest().version == 2  # this thread accepted release 2
        resume.set()
        slow.join(10)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    sim.serve(old)  # the attacker now serves release 1's files too
    assert tree.manifest().version == 2
    with contextlib.suppress(SecureImportError):  # refusing it is fine; running it is not
        importlib.import_module("mod")
    assert_never_ran(marker)


# -- the bundle does not bypass max_file_bytes ----------------------------------------------


def test_module_over_max_file_bytes_is_refused_even_from_the_bundle(
    tmp_path, serve, tls, publisher
):
    root = write_tree(tmp_path / "tree", {"big.py": "BIG = True\n" + "#" * 500 + "\n"})
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, config=Config(max_file_bytes=200))
    with pytest.raises(SecureImportError):
        importlib.import_module("big")


# -- an out-of-range timeout is a ConfigurationError --------------------------------


@pytest.mark.parametrize("timeout", [float("inf"), 1e12])
def test_out_of_range_timeout_is_a_secure_import_error(testcode, serve, tls, publisher, timeout):
    server = serve(testcode)
    with pytest.raises(SecureImportError):
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile, timeout=timeout)
