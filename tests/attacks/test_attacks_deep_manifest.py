"""A big, deep signed tree must not stall the import system (issue #11, item 9).

Every ``find_spec`` asks the manifest whether a name is a directory of the
tree, under the global import lock.  With 10,000 files under a 500-level
directory (a 12 MB manifest, under the 16 MiB cap) that question used to
build a set of every directory prefix: 20 s per missing name, again after
every ``importlib.invalidate_caches()``.  Each test stages the tree for real
and times the lookups against a bound with a wide margin (they take a few
milliseconds now).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TLSFiles, write_tree
from simulator import RepositorySimulator, compose

from secure_urlimport import Config, install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._import.loader import VerifiedLoader
from secure_urlimport.cli.devserver import TreeServer

DEPTH = 500
FILES = 10_000
DEEP = "/".join(["d"] * DEPTH)
#: Seconds a lookup may take.  The quadratic build took 14-24 s; now ~5 ms.
BOUND = 1.0


@pytest.fixture(scope="module")
def deep_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="module")
def deep_tree(tmp_path_factory: pytest.TempPathFactory, deep_key: PrivateKey) -> Path:
    """10,000 data files under d/d/.../d (500 levels), plus a module at the root."""
    from secure_urlimport.publish.signing import sign_tree

    root = tmp_path_factory.mktemp("deep")
    write_tree(root, {"mod.py": "SIGNED = True\n"})
    deep = root / DEEP
    deep.mkdir(parents=True)
    for i in range(FILES):
        (deep / f"f{i:05d}.txt").write_bytes(b"x")
    # Format 1 on purpose: this is about one big manifest (test_attacks_shards.py: format 2).
    sign_tree(root, [deep_key], shard_threshold=10**6)
    return root


@pytest.fixture
def deep_server(deep_tree: Path, tls: TLSFiles) -> Iterator[TreeServer]:
    server = TreeServer(deep_tree, certfile=tls.certfile, keyfile=tls.keyfile)
    server.start()
    yield server
    server.stop()


def _timed_missing_import(name: str) -> float:
    started = time.perf_counter()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(name)
    return time.perf_counter() - started


def test_missing_name_in_a_500_level_10000_file_tree_is_found_missing_at_once(
    deep_tree, deep_server, tls, deep_key
):
    size = (deep_tree / MANIFEST_NAME).stat().st_size
    assert 10 * 2**20 < size < Config().max_manifest_bytes  # accepted, not refused
    importer = install(deep_server.url, pubkey=deep_key.public.raw, cafile=tls.cafile)

    assert _timed_missing_import("absent_module") < BOUND
    assert _timed_missing_import("absent_module.sub") < BOUND

    # The 500-level directory is a namespace package, found as fast.
    started = time.perf_counter()
    spec = importlib.util.find_spec("d")
    assert time.perf_counter() - started < BOUND
    assert spec is not None and spec.submodule_search_locations == [f"{importer.url}/d"]
    # And the tree still imports and serves data over the real server.
    assert importlib.import_module("mod").SIGNED is True
    loader = importlib.import_module("mod").__loader__
    assert isinstance(loader, VerifiedLoader)
    assert loader.get_data(f"{importer.url}/{DEEP}/f00042.txt") == b"x"
    with pytest.raises(IsADirectoryError):
        loader.get_data(f"{importer.url}/{DEEP}")


def test_invalidate_caches_does_not_rebuild_the_index_of_an_unchanged_manifest(
    deep_server, tls, deep_key
):
    importer = install(deep_server.url, pubkey=deep_key.public.raw, cafile=tls.cafile)
    before = importer.tree.manifest()
    assert "d" in before.directories
    for _ in range(3):
        importlib.invalidate_caches()
        assert _timed_missing_import("absent_module") < BOUND
    # Fetched and verified again, but the same body: the parsed manifest
    # (and its directory index) is reused, not rebuilt.
    assert importer.tree.manifest() is before
    assert importlib.import_module("mod").SIGNED is True


def test_thousands_of_distinct_500_level_chains_need_no_depth_cap(tmp_path):
    """The worst case for a set of prefixes: no two files share a directory
    (2,000 chains x 500 levels would be a million directory strings)."""
    key = PrivateKey.generate()
    chain = "/".join(["d"] * (DEPTH - 2))
    files = {f"c{i}/{chain}/f.txt": b"x" for i in range(2_000)}
    files["mod.py"] = b"SIGNED = True\n"
    sim = RepositorySimulator()
    sim.serve(compose(files, version=1, manifest_keys=[key]))
    install(sim.url, pubkey=key.public.raw, fetcher=sim)

    assert _timed_missing_import("absent_module") < BOUND
    started = time.perf_counter()
    spec = importlib.util.find_spec("c1999")
    assert time.perf_counter() - started < BOUND
    assert spec is not None and spec.loader is None  # a namespace directory
    importlib.invalidate_caches()
    assert _timed_missing_import("absent_module") < BOUND
    assert importlib.import_module("mod").SIGNED is True
