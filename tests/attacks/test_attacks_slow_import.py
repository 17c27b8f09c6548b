"""Slow retrieval across fallbacks: ``timeout`` bounds one whole import, not each download.

A real HTTPS server drips the bundle, then the module (tampered, so the
client asks again past caches), then the no-cache retry.  Each download on its
own stays within ``timeout``; before the import step's shared deadline
(deadline.import_step) the import took about three times ``timeout``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import evil_source
from simulator import HostileHTTPSServer, assert_never_ran, hostile_servers, sign_release

from secure_urlimport import Config, DownloadTimeoutError, install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME
from secure_urlimport._net.deadline import Watchdog, import_step, source_budget

TIMEOUT = 1.5
MODULE = "VALUE = 'signed'\n" * 8


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def release(key):
    return sign_release({"mod.py": MODULE}, [key])


@pytest.fixture
def start(tls) -> Iterator[Callable[..., HostileHTTPSServer]]:
    yield from hostile_servers(tls)


def dripping(body: bytes, seconds: float, *, length: int | None = None):
    """A route sending *body* spread over *seconds* (then closing the connection)."""

    def route(h) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(length if length is not None else len(body)))
        # It closes the connection afterwards, so it says so (RFC 9112, 9.6): else
        # the client may send its next request on it before the close arrives,
        # and get RemoteDisconnected instead of the drip this test stages.
        h.send_header("Connection", "close")
        h.end_headers()
        pause = seconds / max(len(body), 1)
        for byte in body:
            if h.server.stop.wait(pause):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
        h.close_connection = True

    return route


def tampered_then_dripping(evil: bytes, seconds: float):
    """First request: a tampered copy, dripped over *seconds*; every later one
    (the no-cache retry): a drip that never ends."""
    calls: list[int] = []

    def route(h) -> None:
        calls.append(1)
        if len(calls) == 1:
            dripping(evil, seconds)(h)
        else:
            dripping(evil, 60)(h)

    return route


def test_bundle_file_and_retry_dripping_in_turn_are_cut_at_one_timeout(
    start, release, key, tls, marker
):
    """0.4 s of bundle (cut short), 0.4 s of tampered module, then the retry
    drips: three downloads, each under the timeout, one bound for all.  (The
    0.7 s left for handshakes and verification keep the retry inside the
    bound on a loaded CI machine.)"""
    evil = evil_source(marker).encode().ljust(len(MODULE), b"#")
    server = start(release.everything())
    server.routes[BUNDLE_NAME] = dripping(MODULE.encode()[:20], 0.4, length=len(MODULE))
    server.routes["mod.py"] = tampered_then_dripping(evil, 0.4)
    install(
        server.url,
        pubkey=key.public.raw,
        cafile=tls.cafile,
        config=Config(timeout=TIMEOUT, file_cache=False, parallel_downloads=0),
    )
    started = time.monotonic()
    with pytest.raises(DownloadTimeoutError) as caught:
        importlib.import_module("mod")
    elapsed = time.monotonic() - started
    assert type(caught.value) is DownloadTimeoutError
    assert elapsed < TIMEOUT + 0.5, f"the import took {elapsed:.2f} s, timeout is {TIMEOUT} s"
    assert "one source for one import" in str(caught.value)
    assert caught.value.name == "mod"
    assert [p for p, _ in server.seen if p != "/secure-urlimport.manifest"] == [
        f"/{BUNDLE_NAME}",
        "/mod.py",
        "/mod.py",
    ]
    assert_never_ran(marker, "mod")


def test_a_mirror_that_spends_its_timeout_on_the_bundle_leaves_the_next_its_own(
    start, release, key, tls
):
    slow = start(release.everything())
    slow.routes[BUNDLE_NAME] = dripping(MODULE.encode(), 60)
    good = start(release.everything())
    install(
        [slow.url, good.url],
        pubkey=key.public.raw,
        cafile=tls.cafile,
        config=Config(timeout=TIMEOUT, file_cache=False, parallel_downloads=0),
    )
    started = time.monotonic()
    assert importlib.import_module("mod").VALUE == "signed"
    elapsed = time.monotonic() - started
    assert TIMEOUT - 0.1 < elapsed < 2 * TIMEOUT + 0.5
    # The slow mirror's budget was spent on its bundle: its file was never asked for.
    assert "/mod.py" not in [p for p, _ in slow.seen]
    assert "/mod.py" in [p for p, _ in good.seen]


def test_an_honest_slow_import_within_the_timeout_succeeds(start, release, key, tls):
    server = start(release.everything())
    server.routes["mod.py"] = dripping(MODULE.encode(), 0.5)
    install(
        server.url,
        pubkey=key.public.raw,
        cafile=tls.cafile,
        config=Config(timeout=TIMEOUT, file_cache=False, parallel_downloads=0),
    )
    assert importlib.import_module("mod").VALUE == "signed"


def test_a_step_inside_a_step_never_extends_the_bound_and_each_source_has_its_own() -> None:
    with import_step(0.5):
        with source_budget("https://a"):
            first = Watchdog(30)
        time.sleep(0.1)
        with import_step(30), source_budget("https://a"):
            inner = Watchdog(30)  # the inner step is part of the outer one
        with source_budget("https://b"):
            other = Watchdog(30)  # a mirror first asked now starts its own bound
        own = Watchdog(0.01)  # a download's own, shorter timeout still holds
    assert first.budgeted and inner.budgeted and other.budgeted and not own.budgeted
    assert inner.deadline == first.deadline
    assert other.deadline >= first.deadline + 0.09
    assert not Watchdog(1).budgeted  # outside any step: the download's own timeout
