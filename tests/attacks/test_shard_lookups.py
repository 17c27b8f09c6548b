"""What finders, loaders and resources ask of a sharded release, answered from its shards.

Not attacks: the honest simulator serves a sharded tree whose package spans
several shards, and ``pkgutil``, ``importlib.resources``, namespace packages
and ``get_data`` must see exactly the tree a format-1 manifest would show.
"""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
import sys
from typing import Any

import pytest
from simulator import RepositorySimulator

from secure_urlimport import install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME

KEY = PrivateKey.from_seed(bytes([0x52]) * 32)


def tree() -> dict[str, str]:
    files = {"wide/__init__.py": "", "wide/data/table.txt": "a table\n"}
    files |= {f"wide/m{i:03}.py": f"N = {i}\n" for i in range(400)}  # spans several shards
    files |= {"ns/deep/leaf.py": "LEAF = True\n", "z.py": "Z = 1\n"}
    return files


@pytest.fixture
def sim() -> RepositorySimulator:
    sim = RepositorySimulator()
    sim.publish(tree(), [KEY], shard_threshold=10)
    return sim


def test_a_package_spanning_shards_lists_every_module(sim):
    install(sim.url, pubkey=KEY.public.raw, fetcher=sim)
    wide = importlib.import_module("wide")
    names = [name for _, name, _ in pkgutil.iter_modules(wide.__path__)]
    assert names == [f"m{i:03}" for i in range(400)]
    assert importlib.import_module("wide.m399").N == 399


def test_resources_and_get_data_of_a_sharded_tree(sim):
    install(sim.url, pubkey=KEY.public.raw, fetcher=sim)
    root = importlib.resources.files("wide")
    assert (root / "data" / "table.txt").read_text() == "a table\n"
    assert (root / "data").is_dir() and not (root / "nothing").is_dir()
    assert sorted(p.name for p in (root / "data").iterdir()) == ["table.txt"]
    spec = sys.modules["wide"].__spec__
    assert spec is not None
    loader: Any = spec.loader  # the tree's VerifiedLoader: get_data as ResourceLoader's
    with pytest.raises(IsADirectoryError):
        loader.get_data(f"{sim.url}/wide/data")
    with pytest.raises(FileNotFoundError):
        loader.get_data(f"{sim.url}/wide/none.txt")


def test_a_namespace_directory_inside_a_shard_is_found(sim):
    install(sim.url, pubkey=KEY.public.raw, fetcher=sim)
    assert importlib.import_module("ns.deep.leaf").LEAF is True
    assert importlib.import_module("z").Z == 1
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("nosuch")


def test_a_missing_module_in_a_sharded_tree_costs_the_index_and_one_shard(sim):
    install(sim.url, pubkey=KEY.public.raw, fetcher=sim)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("absent")
    shards = [p for p in sim.requested_paths() if p != MANIFEST_NAME]
    assert len(shards) <= 1 and sim.requested(MANIFEST_NAME) == 1


def test_threads_importing_from_one_shard_at_once_all_get_verified_modules(sim):
    import threading

    install(sim.url, pubkey=KEY.public.raw, fetcher=sim)
    importlib.import_module("wide")
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = importlib.import_module(f"wide.m{i:03}").N
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(0, 400, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == {i: i for i in range(0, 400, 25)}
    shard_requests = [p for p in sim.requested_paths() if p.startswith("secure-urlimport.shards/")]
    pinned = {ref.path for ref in sim.releases[-1].manifest.shards}
    assert set(shard_requests) <= pinned  # (two threads racing may both fetch one shard)
