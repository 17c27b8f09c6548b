"""The on-disk cache is untrusted input: whatever is written there, only signed bytes run.

A neighbour (or a bug, or a full disk) may edit, swap, truncate or replace
anything under ``$SECURE_URLIMPORT_CACHE_DIR``.  Every cached file is
verified against the signed manifest again on every use; one that does not
verify is dropped and downloaded again, and never compiled.  A "next run" is
staged in-process with ``uninstall`` (the cache and state stay on disk), and
once for real, in two fresh interpreters.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
import subprocess
import sys

import pytest
from conftest import evil_source, write_tree
from simulator import (
    IMPORT_PKG_MOD,
    RepositorySimulator,
    assert_never_ran,
    cache_root,
    cached_file,
    child_env,
    run_fresh,
)

from secure_urlimport import (
    HTTPStatusError,
    TamperedFileError,
    install,
    uninstall,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME

GOOD = "SIGNED = True\n" + "#" * 64 + "\n"


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def same_size(evil: str, like: str) -> str:
    """*evil* padded to the size of *like*, so only the SHA-256 can tell them apart."""
    assert len(evil) < len(like)
    return evil + "#" * (len(like) - len(evil) - 1) + "\n"


GOOD = GOOD + "#" * 200 + "\n"  # room for an evil module of the same size


def next_run(sim: RepositorySimulator, key: PrivateKey, *names: str) -> None:
    """End this "process": uninstall and forget the modules; the disk cache stays."""
    uninstall(sim.url)
    for name in names:
        sys.modules.pop(name, None)
    install(sim.url, pubkey=key.public.raw, fetcher=sim)


def warm(sim: RepositorySimulator, key: PrivateKey, *names: str) -> None:
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    for name in names:
        importlib.import_module(name)


@pytest.mark.usefixtures("source_path_only")
def test_edited_cached_module_is_discarded_downloaded_again_and_never_runs(
    sim, key, marker, caplog
):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    slot = cached_file(GOOD)
    assert slot.read_text() == GOOD
    slot.write_text(evil_source(marker))  # the neighbour edits the cache
    next_run(sim, key, "mod")
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "discarding the cached copy" in caplog.text
    assert sim.requested("mod.py") == 2  # downloaded again
    assert slot.read_text() == GOOD  # and the cache healed
    assert_never_ran(marker)


@pytest.mark.usefixtures("source_path_only")
def test_edited_cached_module_with_the_server_serving_the_same_bytes_is_refused(sim, key, marker):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    evil = same_size(evil_source(marker), GOOD)
    cached_file(GOOD).write_text(evil)
    sim.put("mod.py", evil)  # the neighbour also controls the server
    next_run(sim, key, "mod")
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert type(err.value) is TamperedFileError
    assert err.value.name == "mod"
    assert_never_ran(marker, "mod")


def test_cached_copy_of_another_signed_file_is_refused(sim, key, marker):
    other = "OTHER = True\n" + evil_source(marker)  # signed, but not as mod.py
    sim.publish({"mod.py": GOOD, "other.py": other}, [key])
    warm(sim, key, "mod")
    shutil.copyfile(cached_file(GOOD), cached_file(GOOD).with_suffix(".bak"))
    cached_file(GOOD).write_text(other)  # a validly signed file, in the wrong slot
    next_run(sim, key, "mod")
    assert importlib.import_module("mod").SIGNED is True
    assert not hasattr(sys.modules["mod"], "OTHER")
    assert_never_ran(marker)


@pytest.mark.usefixtures("source_path_only")
def test_truncated_cached_file_is_downloaded_again(sim, key):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    cached_file(GOOD).write_text(GOOD[:5])  # a torn write, or a full disk
    next_run(sim, key, "mod")
    assert importlib.import_module("mod").SIGNED is True
    assert sim.requested("mod.py") == 2


def test_cached_file_from_an_older_release_is_not_used_for_a_newer_one(sim, key):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    warm(sim, key, "mod")
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    next_run(sim, key, "mod")
    assert importlib.import_module("mod").RELEASE == 2


def test_warm_start_downloads_only_the_manifest(sim, key):
    files = {
        "pkg/__init__.py": "from . import a, b\n",
        "pkg/a.py": "A = 1\n",
        "pkg/b.py": "B = 2\n",
        "pkg/data.txt": "not a module\n",
    }
    sim.publish(files, [key])
    warm(sim, key, "pkg")
    before = list(sim.requests)
    next_run(sim, key, "pkg", "pkg.a", "pkg.b")
    assert importlib.import_module("pkg").b.B == 2
    assert sim.requests[len(before) :] == [sim.manifest_url]


def test_unwritable_cache_never_fails_an_import(sim, key, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(blocker))
    sim.publish({"mod.py": GOOD}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").SIGNED is True


def test_prefetched_bytes_that_do_not_verify_are_never_cached_or_run(sim, key, marker):
    files = {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": GOOD}
    sim.publish(files, [key])
    evil = same_size(evil_source(marker), GOOD)
    sim.put("pkg/b.py", evil)
    warm(sim, key, "pkg", "pkg.a")  # importing pkg prefetches a.py and b.py
    assert cached_file("A = 1\n").exists()
    assert not cached_file(evil).exists()
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("pkg.b")
    assert err.value.name == "pkg.b"
    assert_never_ran(marker, "pkg.b")
    assert sim.requested("pkg/b.py") == 1  # the prefetch's bytes were verified, not refetched


def test_failed_prefetch_is_reported_by_the_import_that_needs_it(sim, key):
    sim.publish({"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 1\n"}, [key])
    sim.drop("pkg/b.py")
    warm(sim, key, "pkg", "pkg.a")  # unaffected by b.py's failure
    with pytest.raises(HTTPStatusError) as err:
        importlib.import_module("pkg.b")
    assert err.value.status == 404
    assert err.value.name == "pkg.b"
    assert "pkg.b" not in sys.modules


# -- the manifest cache, over real HTTPS (ETag / If-None-Match) ------------------------


def test_unchanged_manifest_is_revalidated_with_etag_and_verified_again(
    testcode, serve, tls, publisher, caplog
):
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()
    [entry] = (cache_root() / "manifests").iterdir()
    with caplog.at_level(logging.DEBUG, logger="secure_urlimport"):
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
        assert importlib.import_module("fib").fib(5) == 8
    assert "not modified since cached" in caplog.text
    assert entry.exists()


def test_edited_cached_manifest_is_refused_and_downloaded_again(
    testcode, serve, tls, publisher, marker, caplog
):
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()
    [entry] = (cache_root() / "manifests").iterdir()
    blob = bytearray(entry.read_bytes())
    blob[-20] ^= 0x01  # inside the signed body; the server will still answer 304
    entry.write_bytes(bytes(blob))
    with caplog.at_level(logging.DEBUG, logger="secure_urlimport"):
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
        assert importlib.import_module("fib").fib(5) == 8
    assert "does not verify; downloading it" in caplog.text
    assert entry.read_bytes().partition(b"\0")[2] == (testcode / MANIFEST_NAME).read_bytes()


# -- a real next run: two fresh interpreters ------------------------------------------


@pytest.mark.parametrize("cached", ["file", "bundle"])
@pytest.mark.usefixtures("source_path_only")
def test_edited_cache_is_detected_by_the_next_process_and_never_executed(
    tmp_path, serve, tls, publisher, marker, cached
):
    root = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": GOOD})
    publisher.sign(root)
    if cached == "file":
        (root / BUNDLE_NAME).unlink()  # so modules are downloaded and cached one by one
    server = serve(root)
    env = child_env(tmp_path / "cache")

    def run() -> subprocess.CompletedProcess[str]:
        return run_fresh(IMPORT_PKG_MOD, env, server.url, str(publisher.pub), tls.cafile)

    first = run()
    assert first.returncode == 0, first.stderr
    if cached == "file":
        slot = tmp_path / "cache" / "files" / hashlib.sha256(GOOD.encode()).hexdigest()[:2]
        [copy] = slot.iterdir()
        copy.write_text(evil_source(marker))
    else:
        [copy] = (tmp_path / "cache" / "bundles").iterdir()
        copy.write_text(same_size(evil_source(marker), GOOD))  # pkg/__init__.py is empty
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "true"
    assert (
        "discarding the cached copy" if cached == "file" else "does not match its manifest"
    ) in second.stderr
    assert_never_ran(marker)
