"""Forked children (issue #11, item 3): neither the child nor the parent hangs or breaks.

Each test forks this process for real, against a real TLS loopback server:
a child forked after a prefetch, one forked while another thread holds the
registry lock in a path-hook refresh, and a parent and child that would share
one keep-alive TLS connection.  The child runs under a deadline
(forking.in_child), so a regression fails the test instead of hanging it, and
the parent must import correctly afterwards too.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_tree
from forking import in_child

import secure_urlimport
from secure_urlimport import Config, install, uninstall
from secure_urlimport._format.paths import BUNDLE_NAME
from secure_urlimport._net.transport import RequestsFetcher

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")

MODULES = 8


@pytest.fixture
def server(tmp_path: Path, serve: Any, publisher: Any) -> Any:
    """Two packages of small modules, without a bundle, so each module is
    downloaded on its own (and prefetched)."""
    files = {f"{pkg}/__init__.py": "" for pkg in ("a", "b")}
    # Distinct bytes in a and b: the file cache is content-addressed.
    files.update(
        {f"{pkg}/m{i}.py": f"VALUE = {i}\nIN = {pkg!r}\n" for pkg in "ab" for i in range(MODULES)}
    )
    root = write_tree(tmp_path / "tree", files)
    publisher.sign(root)
    (root / BUNDLE_NAME).unlink()
    return serve(root)


def values(*names: str) -> list[int]:
    return [importlib.import_module(name).VALUE for name in names]


def test_child_forked_after_a_prefetch_does_not_wait_for_the_parents_threads(
    server, tls, publisher
):
    timeout = 5.0
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, timeout=timeout)
    assert values("a.m1") == [1]  # a's modules are prefetched on the parent's threads

    def child() -> tuple[float, list[int], int]:
        started = time.monotonic()
        got = values("b.m1", "b.m2", "b.m3")  # b's prefetch must run in the child
        workers = sum(t.name == "secure_urlimport-prefetch" for t in threading.enumerate())
        return time.monotonic() - started, got, workers

    elapsed, got, workers = in_child(child, timeout=4 * timeout)
    assert got == [1, 2, 3]
    # Before the fix each module waited 2 x timeout for a prefetch no thread ran.
    assert elapsed < timeout
    assert workers >= 1  # the child's own pool, not the parent's dead threads
    assert values("b.m4", "a.m5") == [4, 5]  # and the parent is unharmed


class GatedFetcher(RequestsFetcher):
    """The real transport, holding the manifest download until the test lets it go:
    a path-hook refresh caught in the act, holding the registry lock."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.armed = False
        self.inside = threading.Event()
        self.leave = threading.Event()

    def fetch_if_modified(self, url: str, **options: Any) -> Any:
        # (the manifest is revalidated with this one, which RequestsFetcher has)
        if self.armed and url.endswith(".manifest"):
            self.inside.set()
            self.leave.wait(30)
        return super().fetch_if_modified(url, **options)


def test_child_forked_while_a_path_hook_refresh_holds_the_registry_lock_can_uninstall(
    server, tls, publisher
):
    gate = GatedFetcher(Config(cafile=tls.cafile))
    secure_urlimport.trust(server.url, pubkey=publisher.pub, fetcher=gate)
    secure_urlimport.install_path_hook()
    sys.path.append(server.url)
    import a  # type: ignore[import-not-found]

    importlib.invalidate_caches()  # the next look at a's __path__ refreshes the manifest
    gate.armed = True
    # pkgutil calls the path hook outside the import lock, so fork() need not
    # wait for it: the refresh holds the registry lock as the process forks.
    listing: list[str] = []
    walker = threading.Thread(
        target=lambda: listing.extend(m.name for m in pkgutil.iter_modules(a.__path__))
    )
    walker.start()
    assert gate.inside.wait(10)

    def child() -> list[int]:
        uninstall(server.url)  # hung for good before the fix
        secure_urlimport.trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
        for name in [n for n in sys.modules if n == "a" or n.startswith("a.")]:
            del sys.modules[name]
        return values("a.m2")

    try:
        assert in_child(child) == [2]
    finally:
        gate.leave.set()
        walker.join(30)
    assert sorted(listing) == [f"m{i}" for i in range(MODULES)]
    assert values("a.m3") == [3]  # the parent's refresh completed and it imports


def test_parent_and_child_never_share_a_keep_alive_tls_connection(server, tls, publisher):
    # No prefetch and no file cache: every import is a request on the
    # connection the parent keeps alive.
    install(
        server.url,
        pubkey=publisher.pub,
        cafile=tls.cafile,
        config=Config(parallel_downloads=0, file_cache=False),
    )
    assert values("a.m0") == [0]
    assert in_child(lambda: values("a.m1", "a.m2")) == [1, 2]
    # Before the fix the child had written on the parent's TLS stream, and
    # the parent's next request failed with "bad record MAC" (a TLSError).
    assert values("a.m3", "a.m4") == [3, 4]
    assert in_child(lambda: values("b.m0")) == [0]  # a second child, after the parent


def test_a_lock_taken_while_another_thread_is_still_registering_it_is_reset_in_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race the review found: thread A is inside the lock's first registration
    (slowed here, standing in for a thread switch), thread B takes the lock, then
    a fork. B must have found the lock registered, so the child gets it unlocked."""
    from secure_urlimport import forksafe

    real = forksafe.register
    registering = threading.Event()

    def slow_register(obj: Any) -> None:
        registering.set()
        time.sleep(0.3)
        real(obj)

    monkeypatch.setattr(forksafe, "register", slow_register)
    lock = forksafe.Lock()

    def take_and_release() -> None:
        with lock:
            pass

    first = threading.Thread(target=take_and_release)
    first.start()
    registering.wait(5)
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    second = threading.Thread(target=holder)
    second.start()
    assert held.wait(5)
    try:
        assert in_child(lambda: lock.acquire(timeout=2), timeout=10) is True
    finally:
        done.set()
        first.join(5)
        second.join(5)
