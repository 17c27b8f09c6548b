"""A CDN edge (or proxy) that still serves the previous release's copies.

Right after a re-publish, a cache on the way may hand out the old manifest or
an old file.  Both fail verification (RollbackError, TamperedFileError), so
nothing stale runs; the client then asks once more with ``Cache-Control:
no-cache``, which makes the cache revalidate with the origin.  A real HTTPS
server plays the edge: it serves the stale bytes unless told not to.  The
same attacks, and 304 Not Modified answers to cached manifests that no longer
verify, are then staged in memory with the simulator's ETags and stale edge.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator

import pytest
from conftest import evil_source
from simulator import (
    HostileHTTPSServer,
    Release,
    RepositorySimulator,
    assert_never_ran,
    cache_root,
    cached_file,
    hostile_servers,
    sign_release,
)

from secure_urlimport import RollbackError, TamperedFileError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME

PAD = "#" * 200 + "\n"


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def edge(tls) -> Iterator[Callable[..., HostileHTTPSServer]]:
    """``edge(files, plain=False, host=...)``: a hostile server; all close at teardown."""
    yield from hostile_servers(tls)


def stale_unless_no_cache(stale: bytes, fresh: bytes | None):
    """Serve *stale* like a cache would, *fresh* when asked to revalidate."""

    def route(h) -> None:
        revalidate = h.headers.get("Cache-Control") == "no-cache"
        h.send_body(fresh if revalidate and fresh is not None else stale)

    return route


def test_stale_file_on_a_cdn_edge_is_fetched_again_past_the_cache(edge, key, tls, marker):
    old = sign_release({"mod.py": "RELEASE = 1\n" + PAD}, [key], version=1)
    new = sign_release({"mod.py": "RELEASE = 2\n" + PAD}, [key], version=2)
    server = edge(new.everything())
    server.routes["mod.py"] = stale_unless_no_cache(
        old.everything()["mod.py"], new.everything()["mod.py"]
    )
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile)
    assert importlib.import_module("mod").RELEASE == 2
    asked = [h.get("Cache-Control") for path, h in server.seen if path == "/mod.py"]
    assert asked == [None, "no-cache"]


def test_file_stale_even_past_the_cache_is_refused(edge, key, tls, marker):
    new = sign_release({"mod.py": "RELEASE = 2\n" + PAD}, [key], version=2)
    evil = evil_source(marker)
    tampered = (evil + "#" * (len(new.everything()["mod.py"]) - len(evil) - 1) + "\n").encode()
    server = edge(new.everything())
    server.routes["mod.py"] = stale_unless_no_cache(tampered, None)  # always the same bytes
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert err.value.name == "mod"
    assert sum(1 for path, _ in server.seen if path == "/mod.py") == 2
    assert_never_ran(marker, "mod")


def test_stale_manifest_on_a_cdn_edge_is_fetched_again_past_the_cache(edge, key, tls):
    old = sign_release({"mod.py": "RELEASE = 1\n"}, [key], version=1)
    new = sign_release({"mod.py": "RELEASE = 2\n"}, [key], version=2)
    server = edge(new.everything())
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile).uninstall()  # saw v2
    server.routes[MANIFEST_NAME] = stale_unless_no_cache(
        old.everything()[MANIFEST_NAME], new.everything()[MANIFEST_NAME]
    )
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile)
    assert importlib.import_module("mod").RELEASE == 2


def test_old_manifest_even_past_the_cache_is_a_rollback(edge, key, tls):
    old = sign_release({"mod.py": "RELEASE = 1\n"}, [key], version=1)
    new = sign_release({"mod.py": "RELEASE = 2\n"}, [key], version=2)
    server = edge(new.everything())
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile).uninstall()
    server.files[MANIFEST_NAME] = old.everything()[MANIFEST_NAME]
    with pytest.raises(RollbackError):
        install(server.url, pubkey=key.public.raw, cafile=tls.cafile)
    manifests = [h.get("Cache-Control") for path, h in server.seen if path == f"/{MANIFEST_NAME}"]
    assert manifests[-2:] == [None, "no-cache"]


# -- the same in memory: the simulator's ETags, 304s and stale edge ------------------


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


def next_run(sim: RepositorySimulator, key: PrivateKey, *names: str) -> None:
    """End this "process": uninstall and forget the modules; the disk cache stays."""
    uninstall(sim.url)
    for name in names:
        sys.modules.pop(name, None)
    install(sim.url, pubkey=key.public.raw, fetcher=sim)


def test_an_unchanged_manifest_is_revalidated_with_a_304_and_verified_again(sim, key, caplog):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("mod")
    with caplog.at_level(logging.DEBUG, logger="secure_urlimport"):
        next_run(sim, key, "mod")  # asks If-None-Match with the ETag it cached
        assert importlib.import_module("mod").RELEASE == 1
    assert sim.not_modified == [sim.manifest_url]
    assert sim.fresh_requests == []
    assert "not modified since cached" in caplog.text


def test_a_304_to_a_cached_manifest_signed_by_a_dropped_key_is_refused_and_the_origin_asked(
    sim, key
):
    old = sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim).uninstall()  # caches release 1
    rotated = PrivateKey.generate()
    sim.publish({"mod.py": "RELEASE = 2\n"}, [rotated])
    sim.stale_edge(old, MANIFEST_NAME)  # the edge still holds release 1: its ETag matches
    install(sim.url, pubkey=rotated.public.raw, fetcher=sim)  # the old key is no longer pinned
    assert importlib.import_module("mod").RELEASE == 2
    assert sim.not_modified == [sim.manifest_url]  # the edge said "yours is current"
    assert sim.fresh_requests == [sim.manifest_url]  # refused, so the origin was asked


def test_a_304_to_an_edited_cached_manifest_is_refused_and_the_origin_asked(sim, key, caplog):
    release = sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim).uninstall()
    [entry] = (cache_root() / "manifests").iterdir()
    blob = bytearray(entry.read_bytes())
    blob[-20] ^= 0x01  # inside the signed body; the ETag beside it still matches
    entry.write_bytes(bytes(blob))
    with caplog.at_level(logging.DEBUG, logger="secure_urlimport"):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
        assert importlib.import_module("mod").RELEASE == 1
    assert sim.not_modified == [sim.manifest_url]
    assert sim.fresh_requests == [sim.manifest_url]
    assert "does not verify; downloading it" in caplog.text
    assert entry.read_bytes().partition(b"\0")[2] == release.manifest_bytes  # healed


@pytest.mark.parametrize("when", ["in the next process", "in the same process"])
def test_a_stale_edge_serving_the_previous_manifest_is_asked_again_past_the_cache(sim, key, when):
    old = sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    tree = install(sim.url, pubkey=key.public.raw, fetcher=sim).tree
    assert tree.manifest().version == 2
    sim.stale_edge(old, MANIFEST_NAME)
    if when == "in the next process":
        next_run(sim, key)  # the floor comes from the rollback records
    else:
        importlib.invalidate_caches()  # the floor is the release accepted in this process
    assert importlib.import_module("mod").RELEASE == 2
    assert sim.fresh_requests == [sim.manifest_url]
    assert sim.not_modified == []  # the edge's copy is not the one cached


def test_a_stale_edge_in_front_of_an_origin_serving_the_old_manifest_is_a_rollback(sim, key):
    old = sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim).uninstall()  # saw release 2
    sim.serve(old)
    sim.stale_edge(old)
    with pytest.raises(RollbackError):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert sim.fresh_requests == [sim.manifest_url]  # asked past the edge once, no more


def test_a_stale_edge_serving_the_previous_release_of_a_file_is_asked_again_past_the_cache(
    sim, key
):
    old = sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    sim.stale_edge(old, "mod.py")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 2
    assert sim.requested("mod.py") == 1
    assert sim.fresh_requests == [sim.url_of("mod.py")]
    assert cached_file("RELEASE = 2\n").exists()
    assert not cached_file("RELEASE = 1\n").exists()  # the stale copy is never cached


def test_an_evil_file_on_the_edge_and_past_it_is_refused_and_never_runs(sim, key, marker):
    release = sim.publish({"mod.py": "RELEASE = 1\n" + PAD}, [key])
    evil = evil_source(marker)
    tampered = evil + "#" * (len(release.files["mod.py"]) - len(evil) - 1) + "\n"
    sim.put("mod.py", tampered)  # the origin is compromised too
    sim.stale_edge(Release(1, {"mod.py": tampered.encode()}, release.manifest_bytes), "mod.py")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert err.value.name == "mod"
    # The file asked for past the edge once, and the manifest once (is a newer
    # release the reason? tests/test_cdn_edge.py), no more.
    assert sim.fresh_requests == [sim.url_of("mod.py"), sim.manifest_url]
    assert not cached_file(tampered).exists()
    assert_never_ran(marker, "mod")


def test_a_stale_edge_serving_old_files_to_the_prefetch_is_asked_past_it_for_each(sim, key):
    files = {
        "pkg/__init__.py": "from . import a, b\n",
        "pkg/a.py": "A = {}\n",
        "pkg/b.py": "B = {}\n",
    }
    old = sim.publish({path: text.format(1) for path, text in files.items()}, [key])
    sim.publish({path: text.format(2) for path, text in files.items()}, [key])
    sim.stale_edge(old, "pkg/a.py", "pkg/b.py")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    pkg = importlib.import_module("pkg")  # prefetches a.py and b.py from the edge
    assert (pkg.a.A, pkg.b.B) == (2, 2)
    assert sim.requested("pkg/a.py") == sim.requested("pkg/b.py") == 1
    assert sorted(sim.fresh_requests) == [sim.url_of("pkg/a.py"), sim.url_of("pkg/b.py")]
    assert not cached_file("A = 1\n").exists()
    assert cached_file("A = 2\n").exists()
