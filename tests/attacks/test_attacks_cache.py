"""Time-of-check/time-of-use: the bytes compiled, shown and handed out are the bytes verified.

The simulator serves the signed bytes on the first request and the attacker's
on every later one, then the tests walk every path that could fetch again:
``inspect.getsource``, ``linecache``, tracebacks, ``reload`` (with and without
``invalidate_caches``), ``get_code``/``get_source``/``get_data``, resources and
``runpy``.  Attacks on the on-disk cache are in ``test_attacks_disk_cache.py``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import linecache
import pkgutil
import runpy
import sys
import threading
import traceback

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran

from secure_urlimport import Config, TamperedFileError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._import.loader import VerifiedLoader

GOOD = "def boom():\n    raise ValueError('the signed line')\n"


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def same_size(evil: str, like: str) -> bytes:
    """*evil* cut or padded to the size of *like*: only the SHA-256 can tell them apart."""
    data = evil.encode()[: len(like.encode())]
    return data + b"#" * (len(like.encode()) - len(data))


def good_then_evil(good: str | bytes, evil: bytes):
    first = good.encode() if isinstance(good, str) else good
    return lambda n: first if n == 0 else evil


def test_bytes_compiled_are_the_bytes_verified_on_every_refetch_path(key, marker):
    sim = RepositorySimulator()
    evil_text = evil_source(marker)
    good = GOOD + "#" * max(0, len(evil_text) - len(GOOD)) + "\n"
    sim.publish({"mod.py": good, "pkg/__init__.py": "", "pkg/data.txt": "signed data\n"}, [key])
    evil = same_size(evil_text, good)
    sim.respond("mod.py", good_then_evil(good, evil))
    sim.respond("pkg/data.txt", good_then_evil("signed data\n", b"EVIL DATA!!\n"))
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    mod = importlib.import_module("mod")
    shown: list[str] = []

    shown.append(inspect.getsource(mod))
    linecache.clearcache()
    assert mod.__file__ is not None
    shown.extend(linecache.getlines(mod.__file__, mod.__dict__))
    try:
        mod.boom()
    except ValueError as exc:
        shown.append("".join(traceback.format_exception(exc)))
    importlib.reload(mod)
    importlib.invalidate_caches()  # the manifest is fetched again; the file is not
    importlib.reload(mod)
    assert isinstance(mod.__loader__, VerifiedLoader)
    shown.append(mod.__loader__.get_source("mod"))
    exec(mod.__loader__.get_code("mod"), {})
    shown.append(mod.__loader__.get_data(mod.__file__).decode())
    runpy.run_module("mod")
    pkg = importlib.import_module("pkg")
    for _ in range(2):
        data = pkgutil.get_data("pkg", "data.txt")
        assert data is not None
        shown.append(data.decode())
        shown.append(importlib.resources.files(pkg).joinpath("data.txt").read_text())
    with importlib.resources.as_file(importlib.resources.files(pkg) / "data.txt") as path:
        shown.append(path.read_text())

    text = "\n".join(shown)
    assert "the signed line" in text and "signed data" in text
    assert evil.decode() not in text and "EVIL DATA" not in text
    assert sim.requested("mod.py") == sim.requested("pkg/data.txt") == 1
    assert_never_ran(marker)


def test_refetch_after_reinstall_is_verified_again(key, marker):
    sim = RepositorySimulator()
    evil_text = evil_source(marker)
    good = GOOD + "#" * max(0, len(evil_text) - len(GOOD)) + "\n"
    sim.publish({"mod.py": good}, [key])
    sim.respond("mod.py", good_then_evil(good, same_size(evil_text, good)))
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    old = importlib.import_module("mod")
    uninstall(sim.url)
    del sys.modules["mod"]
    # A new tree, on a client without the disk cache: nothing verified yet.
    install(sim.url, pubkey=key.public.raw, fetcher=sim, config=Config(file_cache=False))
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert type(err.value) is TamperedFileError
    assert sim.requested("mod.py") == 2
    assert "the signed line" in inspect.getsource(old)  # the old module keeps its verified text
    assert_never_ran(marker, "mod")


def test_release_swapped_during_a_slow_download_is_not_compiled(key, marker):
    sim = RepositorySimulator()
    padding = "#" * len(evil_source(marker))  # larger than the evil file: only the hash tells
    sim.publish({"early.py": "", "late.py": f"VALUE = 1\n{padding}\n"}, [key])
    # Release 2 (or an attacker) appears while late.py is still downloading.
    swapped = RepositorySimulator().publish(
        {"early.py": "", "late.py": evil_source(marker)}, [key], version=2
    )
    sim.delay("late.py", 0.3)
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("early")
    errors: list[BaseException] = []

    def importer() -> None:
        try:
            importlib.import_module("late")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=importer)
    thread.start()
    while sim.requested("late.py") == 0 and thread.is_alive():
        thread.join(0.01)
    sim.serve(swapped)
    thread.join(10)
    assert [type(e) for e in errors] == [TamperedFileError]  # checked against release 1
    assert_never_ran(marker, "late")
