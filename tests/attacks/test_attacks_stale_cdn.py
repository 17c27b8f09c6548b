"""A CDN edge (or proxy) that still serves the previous release's copies.

Right after a re-publish, a cache on the way may hand out the old manifest or
an old file.  Both fail verification (RollbackError, TamperedFileError), so
nothing stale runs; the client then asks once more with ``Cache-Control:
no-cache``, which makes the cache revalidate with the origin.  A real HTTPS
server plays the edge: it serves the stale bytes unless told not to.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

import pytest
from conftest import evil_source
from simulator import HostileHTTPSServer, assert_never_ran, hostile_servers, sign_release

from secure_urlimport import RollbackError, TamperedFileError, install
from secure_urlimport.keys import PrivateKey
from secure_urlimport.paths import MANIFEST_NAME

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
    server.routes["mod.py"] = stale_unless_no_cache(old.everything()["mod.py"],
                                                     new.everything()["mod.py"])
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
    server.routes[MANIFEST_NAME] = stale_unless_no_cache(old.everything()[MANIFEST_NAME],
                                                         new.everything()[MANIFEST_NAME])
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
    manifests = [h.get("Cache-Control") for path, h in server.seen
                 if path == f"/{MANIFEST_NAME}"]
    assert manifests[-2:] == [None, "no-cache"]
