"""Offline start and the freshness window, staged in memory (issue #14).

A cached manifest stands in for the server's only when the server is down
(network, 5xx), never after anything failed verification, never past its
expiry or below the rollback floor, and, pinned by root keys, only under a
stored root that verifies and has not expired.  Within ``max_age`` a start
makes no request; later fetches in the process ask as always.  The same
over real HTTPS in fresh interpreters: ``tests/test_warm_start.py``.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
import warnings
from datetime import timedelta

import pytest
from simulator import RepositorySimulator, make_root

from secure_urlimport import (
    Config,
    ConfigurationError,
    DownloadError,
    HTTPStatusError,
    OfflineFallbackWarning,
    install,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._format.root import root_file_name
from secure_urlimport.api import registry


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def restart() -> None:
    """A fresh start of the consumer: every tree and pin forgotten, the disk state kept."""
    registry.reset()
    for name in ("mod", "other"):
        sys.modules.pop(name, None)


def unavailable(status: int = 503):
    def answer(_: int) -> bytes:
        error = HTTPStatusError(f"cannot download: HTTP {status}")
        error.status = status
        raise error

    return answer


FILES = {"mod.py": "RELEASE = 1\n", "other.py": "OTHER = 1\n"}


# -- offline start -------------------------------------------------------------------


def test_a_503_falls_back_once_and_later_imports_in_the_process_do_not_warn(sim, key):
    sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    restart()
    sim.respond(MANIFEST_NAME, unavailable(503))
    with pytest.warns(OfflineFallbackWarning, match="version 1, verified again") as caught:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
        assert importlib.import_module("mod").RELEASE == 1
        assert importlib.import_module("other").OTHER == 1
    assert len(caught) == 1
    assert caught[0].filename == __file__  # the install() line, as for a local import


def test_no_fallback_after_a_stale_edge_was_refused_even_if_the_origin_then_fails(sim, key):
    first = sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    restart()
    sim.publish({**FILES, "mod.py": "RELEASE = 2\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    restart()
    sim.stale_edge(first, MANIFEST_NAME)  # a rollback at the edge ...
    sim.respond(MANIFEST_NAME, unavailable(503))  # ... and the origin down
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HTTPStatusError):
            install(sim.url, pubkey=key.public.raw, fetcher=sim)


def test_a_cached_manifest_below_the_rollback_floor_is_not_used_offline(sim, key):
    sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)  # caches version 1
    restart()
    sim.publish({**FILES, "mod.py": "RELEASE = 2\n"}, [key])
    # Version 2 is recorded, but not cached (as if the cache had been reverted).
    install(sim.url, pubkey=key.public.raw, fetcher=sim, config=Config(file_cache=False))
    restart()
    sim.respond(MANIFEST_NAME, unavailable(503))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HTTPStatusError, match="503"):
            install(sim.url, pubkey=key.public.raw, fetcher=sim)


def test_a_running_process_whose_server_goes_down_keeps_its_release_and_warns(sim, key):
    sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    sim.respond(MANIFEST_NAME, unavailable(502))
    importlib.invalidate_caches()
    with pytest.warns(OfflineFallbackWarning, match="HTTP 502"):
        assert importlib.import_module("mod").RELEASE == 1


# -- offline start, pinned by root keys --------------------------------------------------


@pytest.fixture
def roots() -> dict[str, PrivateKey]:
    return {"root": PrivateKey.generate(), "ci": PrivateKey.generate()}


def test_root_pinned_a_503_at_the_next_root_falls_back_under_the_stored_root(sim, roots):
    sim.put_root(1, make_root(1, root_keys=[roots["root"]], signers=[roots["ci"]]))
    sim.publish(FILES, [roots["ci"]])
    install(sim.url, root=roots["root"].public.raw, fetcher=sim)
    restart()
    sim.respond(root_file_name(2), unavailable(503))
    with pytest.warns(OfflineFallbackWarning):
        install(sim.url, root=roots["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_root_pinned_an_expired_stored_root_means_no_offline_start(sim, roots):
    root = make_root(
        1, root_keys=[roots["root"]], signers=[roots["ci"]], expires_in=timedelta(seconds=2)
    )
    sim.put_root(1, root)
    sim.publish(FILES, [roots["ci"]])
    install(sim.url, root=roots["root"].public.raw, fetcher=sim)
    restart()
    time.sleep(2.1)
    sim.respond(MANIFEST_NAME, unavailable(503))
    sim.respond(root_file_name(2), unavailable(503))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HTTPStatusError, match="503"):
            install(sim.url, root=roots["root"].public.raw, fetcher=sim)


# -- a freshness window ----------------------------------------------------------------


def test_within_max_age_a_start_makes_no_request_and_a_refetch_asks_again(sim, key):
    sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim, max_age=300)
    importlib.import_module("mod"), importlib.import_module("other")  # cached
    restart()
    time.sleep(0.2)  # (the first start's prefetches, in their threads, are done)
    sim.requests.clear()
    install(sim.url, pubkey=key.public.raw, fetcher=sim, max_age=300)
    assert importlib.import_module("mod").RELEASE == 1
    assert sim.requests == [] and sim.fresh_requests == []
    # importlib.invalidate_caches() asks for news: the window is for starts only.
    importlib.invalidate_caches()
    importlib.import_module("other")
    assert sim.requests == [sim.manifest_url]


def test_root_pinned_within_max_age_neither_the_root_nor_the_manifest_is_asked(sim, roots):
    sim.put_root(1, make_root(1, root_keys=[roots["root"]], signers=[roots["ci"]]))
    sim.publish(FILES, [roots["ci"]])
    install(sim.url, root=roots["root"].public.raw, fetcher=sim, max_age=300)
    importlib.import_module("mod"), importlib.import_module("other")  # cached
    restart()
    time.sleep(0.2)  # (the first start's prefetches, in their threads, are done)
    sim.requests.clear()
    install(sim.url, root=roots["root"].public.raw, fetcher=sim, max_age=300)
    assert importlib.import_module("mod").RELEASE == 1
    assert sim.requests == []


def test_within_max_age_an_expired_manifest_is_fetched_not_used(sim, key):
    sim.publish(FILES, [key], expires_in=timedelta(seconds=2))
    install(sim.url, pubkey=key.public.raw, fetcher=sim, max_age=300)
    restart()
    time.sleep(2.1)
    sim.publish({**FILES, "mod.py": "RELEASE = 2\n"}, [key])
    sim.requests.clear()
    install(sim.url, pubkey=key.public.raw, fetcher=sim, max_age=300)
    assert importlib.import_module("mod").RELEASE == 2
    assert sim.manifest_url in sim.requests


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, 366 * 86400 + 1])
def test_max_age_must_be_a_sane_number_of_seconds(bad):
    with pytest.raises(ConfigurationError, match="max_age"):
        Config(max_age=bad)


def test_offline_fallback_off_fails_with_the_download_error(sim, key):
    sim.publish(FILES, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    restart()
    sim.respond(MANIFEST_NAME, unavailable(503))
    with pytest.raises(DownloadError, match="503"):
        install(sim.url, pubkey=key.public.raw, fetcher=sim, config=Config(offline_fallback=False))
