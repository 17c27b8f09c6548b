"""``.py`` files no import statement can name are signed as data and never run (issue #15).

Real wheels hold them (numpy's ``_pyinstaller/hook-numpy.py``, rich's
``_unicode_data/unicode17-0-0.py``): files that tools read by path.  They are
signed like any data file; the finders never map a module name onto them (a
name with a ``-`` or a leading digit is not an ASCII module name), so no
import reaches them, while ``get_data`` and ``importlib.resources`` read their
verified bytes.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import pkgutil
import runpy
import sys

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran

from secure_urlimport import TamperedFileError, install, install_path_hook, trust
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME
from secure_urlimport._import.loader import VerifiedLoader

#: tree path -> the module name a caller might try for it.
DATA_PY = {
    "pkg/2to3.py": "pkg.2to3",
    "pkg/data/my-script.py": "pkg.data.my-script",
    "tools/hook-foo.py": "tools.hook-foo",
    "hook-top.py": "hook-top",
}


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def sim(key, marker) -> RepositorySimulator:
    sim = RepositorySimulator()
    files = {"pkg/__init__.py": "", "pkg/data/notes.txt": "notes\n"}
    sim.publish({**files, **{path: _source(marker, path) for path in DATA_PY}}, [key])
    return sim


def _source(marker, path: str) -> str:
    # Each file its own bytes: the client stores verified files by SHA-256.
    return f"{evil_source(marker)}# {path}\n"


def _deploy(sim: RepositorySimulator, key: PrivateKey, mode: str) -> None:
    if mode == "meta-path":
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    else:
        trust(sim.url, pubkey=key.public.raw, fetcher=sim)
        install_path_hook()
        sys.path.insert(0, sim.url)


modes = pytest.mark.parametrize("mode", ["meta-path", "path-hook"])


@modes
@pytest.mark.parametrize("path", sorted(DATA_PY))
def test_a_signed_data_py_file_is_never_imported(sim, key, marker, mode, path):
    _deploy(sim, key, mode)
    name = DATA_PY[path]
    with pytest.raises(ModuleNotFoundError) as err:
        importlib.import_module(name)
    assert err.value.name == name
    with pytest.raises(ImportError):
        runpy.run_module(name)
    # No module of this file, half-imported or not (importing pkg may have
    # prefetched its bytes, as it does every .py below it: verified, never run).
    url = sim.url_of(path)
    assert [n for n, m in list(sys.modules.items()) if getattr(m, "__file__", "") == url] == []
    assert_never_ran(marker, name)


@modes
def test_a_signed_data_py_file_is_not_listed_as_a_module(sim, key, marker, mode):
    _deploy(sim, key, mode)
    pkg = importlib.import_module("pkg")
    assert [m.name for m in pkgutil.iter_modules(pkg.__path__)] == []
    assert_never_ran(marker)


@modes
def test_get_data_and_resources_read_a_data_py_file_verified(sim, key, marker, mode):
    _deploy(sim, key, mode)
    pkg = importlib.import_module("pkg")
    assert isinstance(pkg.__loader__, VerifiedLoader)
    files = importlib.resources.files("pkg")
    assert files.joinpath("2to3.py").read_bytes() == _source(marker, "pkg/2to3.py").encode()
    script = _source(marker, "pkg/data/my-script.py").encode()
    assert files.joinpath("data/my-script.py").read_bytes() == script
    assert pkgutil.get_data("pkg", "data/my-script.py") == script
    # Outside any package (a namespace directory): by URL through any loader of the tree.
    hook = pkg.__loader__.get_data(sim.url_of("tools/hook-foo.py"))
    assert hook == _source(marker, "tools/hook-foo.py").encode()
    assert_never_ran(marker)


@modes
def test_a_data_py_file_changed_on_the_server_is_refused_like_code(sim, key, marker, mode):
    # The twin: data is verified as code is; the bundle too is dropped, so the
    # changed file itself is what the client gets.
    sim.drop(BUNDLE_NAME)
    sim.modify("pkg/data/my-script.py", lambda b: b.replace(b"ran", b"RAN"))
    _deploy(sim, key, mode)
    importlib.import_module("pkg")
    with pytest.raises(TamperedFileError) as err:
        pkgutil.get_data("pkg", "data/my-script.py")
    assert type(err.value) is TamperedFileError
    assert "pkg/data/my-script.py does not match the SHA-256 in the signed manifest" in str(
        err.value
    )
    with pytest.raises(TamperedFileError):
        importlib.resources.files("pkg").joinpath("data/my-script.py").read_bytes()
    assert_never_ran(marker)
