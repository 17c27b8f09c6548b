"""CPython's own import tests, replayed against signed trees served over real HTTPS.

Each test's docstring names the CPython test it mirrors (``Lib/test/test_zipimport.py``,
``Lib/test/test_importlib/...``).  CPython runs those scenarios against zip
archives, directories or mock finders; here the same files are published as
signed trees on one HTTPS server (each tree in its own sub-directory, with its
own manifest) and imported through ``install()`` (``meta``) or a pinned URL on
``sys.path`` (``hook``).  Where this project deliberately differs from
zipimport (it never runs bytecode), the docstring says so.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.abc
import importlib.machinery
import importlib.resources
import importlib.util
import inspect
import io
import marshal
import os
import pkgutil
import struct
import sys
import threading
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Imported before any test's import-system snapshot, so conftest's clean-up never
# drops them: the transport imports them lazily during the first fetch, and a
# path-hook tree must not be asked for them then (see test_parity.py,
# test_path_hook_recipe_works_in_a_fresh_interpreter).
import requests  # noqa: F401
from conftest import Signer, TLSFiles, write_tree

from secure_urlimport import install, install_path_hook, trust
from secure_urlimport._import.finder import RemotePathFinder
from secure_urlimport._import.loader import VerifiedLoader

META, HOOK = "meta", "hook"
both_modes = pytest.mark.parametrize("mode", [META, HOOK])


# -- one server, many signed trees ------------------------------------------------


@dataclass
class Site:
    """An HTTPS server over a directory; each sub-directory is a separately signed tree.

    The server's URL is pinned with ``trust()`` and the path hook is installed, so
    any ``<url>/<name>`` may go on ``sys.path``; ``mount(META, ...)`` ``install()``s it.
    """

    root: Path
    url: str
    publisher: Signer
    cafile: str

    def publish(self, name: str, files: dict[str, str | bytes]) -> str:
        tree = self.root / name
        tree.mkdir(parents=True, exist_ok=True)
        write_tree(tree, files)
        self.publisher.sign(tree)
        return f"{self.url}/{name}"

    def update(
        self, name: str, files: dict[str, str | bytes] | None = None, remove: tuple[str, ...] = ()
    ) -> None:
        """Change a published tree and sign its new release."""
        for rel in remove:
            (self.root / name / rel).unlink()
        self.publish(name, files or {})

    def mount(self, mode: str, name: str, files: dict[str, str | bytes]) -> str:
        url = self.publish(name, files)
        if mode == META:
            install(url, pubkey=self.publisher.pub, cafile=self.cafile)
        else:
            sys.path.insert(0, url)
        importlib.invalidate_caches()
        return url


@pytest.fixture
def site(
    tmp_path: Path, serve, tls: TLSFiles, publisher: Signer, monkeypatch: pytest.MonkeyPatch
) -> Site:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    root = tmp_path / "site"
    root.mkdir()
    server = serve(root)
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()
    return Site(root, server.url, publisher, tls.cafile)


def uncache(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


# =============================================================================
# Lib/test/test_zipimport.py  (UncompressedZipImportTestCase)
# =============================================================================

TESTMOD = "ziptestmodule"
TESTPACK = "ziptestpackage"
TESTPACK2 = "ziptestpackage2"
TEST_SRC = """\
def get_name():
    return __name__
def get_file():
    return __file__
"""
RAISE_SRC = "def do_raise(): raise TypeError\n"


def make_pyc(source: str) -> bytes:
    """A valid timestamp pyc for *source* (what test_zipimport.make_pyc builds)."""
    code = compile(source, "<???>", "exec")
    return (
        importlib.util.MAGIC_NUMBER + struct.pack("<iLL", 0, 0, len(source)) + marshal.dumps(code)
    )


@both_modes
def test_py(site, mode):
    """testPy: a module from source; ``__file__`` is its location in the archive (tree)."""
    url = site.mount(mode, "t", {f"{TESTMOD}.py": TEST_SRC})
    mod = importlib.import_module(TESTMOD)
    assert mod.get_file() == f"{url}/{TESTMOD}.py"
    assert mod.get_name() == TESTMOD


@both_modes
def test_both_source_and_bytecode_runs_the_source(site, mode):
    """testBoth / testBadMagic / testBadMTime: with .py and .pyc side by side.

    zipimport prefers the .pyc; this project never loads bytecode, so the source
    runs (and the .pyc, though signed as a data file, is never compiled or run).
    """
    url = site.mount(
        mode,
        "t",
        {
            f"{TESTMOD}.py": TEST_SRC + "state = 'source'\n",
            f"{TESTMOD}.pyc": make_pyc(TEST_SRC + "state = 'bytecode'\n"),
        },
    )
    mod = importlib.import_module(TESTMOD)
    assert mod.state == "source"
    assert mod.get_file() == f"{url}/{TESTMOD}.py"


@both_modes
def test_bytecode_only_module_is_not_importable(site, mode):
    """testPyc / testBadMagic2, deliberately inverted: a module that exists only as .pyc.

    zipimport (and a local SourcelessFileLoader) would run it; a signed tree only
    ever runs verified source, so the name does not exist.
    """
    site.mount(mode, "t", {f"{TESTMOD}.pyc": make_pyc(TEST_SRC), "other.py": ""})
    with pytest.raises(ModuleNotFoundError) as err:
        importlib.import_module(TESTMOD)
    assert err.value.name == TESTMOD


@both_modes
def test_unchecked_hash_based_pyc_in_pycache_is_ignored(site, mode):
    """testUncheckedHashBasedPyc, deliberately inverted.

    An *unchecked* hash-based pyc next to the source makes zipimport and the local
    SourceFileLoader run the stale bytecode ('old'); the importer never even
    requests ``__pycache__``, so the verified source ('new') runs.
    """
    source = b"state = 'old'"
    bytecode = bytes(
        importlib._bootstrap_external._code_to_hash_pyc(  # type: ignore[attr-defined]
            compile(source, "???", "exec"), importlib.util.source_hash(source), False
        )
    )
    site.mount(
        mode,
        "t",
        {
            f"{TESTMOD}.py": "state = 'new'\n",
            f"__pycache__/{TESTMOD}.{sys.implementation.cache_tag}.pyc": bytecode,
        },
    )
    assert importlib.import_module(TESTMOD).state == "new"


@both_modes
def test_empty_py(site, mode):
    """testEmptyPy: an empty source file is an importable, empty module."""
    url = site.mount(mode, "t", {f"{TESTMOD}.py": ""})
    mod = importlib.import_module(TESTMOD)
    assert mod.__file__ == f"{url}/{TESTMOD}.py"
    assert isinstance(mod.__loader__, VerifiedLoader)
    assert mod.__loader__.get_source(TESTMOD) == ""


@both_modes
def test_package(site, mode):
    """testPackage: a module inside a package."""
    url = site.mount(
        mode, "t", {f"{TESTPACK}/__init__.py": TEST_SRC, f"{TESTPACK}/{TESTMOD}.py": TEST_SRC}
    )
    mod = importlib.import_module(f"{TESTPACK}.{TESTMOD}")
    assert mod.get_file() == f"{url}/{TESTPACK}/{TESTMOD}.py"
    assert sys.modules[TESTPACK].get_file() == f"{url}/{TESTPACK}/__init__.py"


@both_modes
def test_deep_package(site, mode):
    """testSubPackage / testDeepPackage: a module two packages deep."""
    url = site.mount(
        mode,
        "t",
        {
            f"{TESTPACK}/__init__.py": TEST_SRC,
            f"{TESTPACK}/{TESTPACK2}/__init__.py": TEST_SRC,
            f"{TESTPACK}/{TESTPACK2}/{TESTMOD}.py": TEST_SRC,
        },
    )
    mod = importlib.import_module(f"{TESTPACK}.{TESTPACK2}.{TESTMOD}")
    assert mod.get_file() == f"{url}/{TESTPACK}/{TESTPACK2}/{TESTMOD}.py"
    assert mod.get_name() == f"{TESTPACK}.{TESTPACK2}.{TESTMOD}"
    assert sys.modules[f"{TESTPACK}.{TESTPACK2}"].__path__ == [f"{url}/{TESTPACK}/{TESTPACK2}"]


@both_modes
def test_sub_namespace_package(site, mode):
    """testSubNamespacePackage: implicit namespace packages inside the archive."""
    url = site.mount(mode, "t", {f"{TESTPACK}/{TESTPACK2}/{TESTMOD}.py": TEST_SRC})
    mod = importlib.import_module(f"{TESTPACK}.{TESTPACK2}.{TESTMOD}")
    assert mod.get_file() == f"{url}/{TESTPACK}/{TESTPACK2}/{TESTMOD}.py"
    assert sys.modules[TESTPACK].__file__ is None
    assert list(sys.modules[f"{TESTPACK}.{TESTPACK2}"].__path__) == [
        f"{url}/{TESTPACK}/{TESTPACK2}"
    ]


PACKDIR, PACKDIR2 = f"{TESTPACK}/", f"{TESTPACK}/{TESTPACK2}/"
PACKDIR3 = f"{PACKDIR2}{TESTPACK}3/"
NS_FILES1: dict[str, str | bytes] = {
    f"{PACKDIR}{TESTMOD}.py": TEST_SRC,
    f"{PACKDIR3}{TESTMOD}.py": TEST_SRC,
    f"{PACKDIR2}{TESTMOD}3.py": TEST_SRC,
    f"{PACKDIR2}{TESTMOD}.py": TEST_SRC,
}
NS_FILES2: dict[str, str | bytes] = {
    f"{PACKDIR}{TESTMOD}2.py": TEST_SRC,
    f"{PACKDIR2}{TESTMOD}2.py": TEST_SRC,
    f"{PACKDIR2}{TESTMOD}.py": TEST_SRC,
}


def _check_two_namespace_portions(path1: str, path2: str) -> None:
    """The assertions of testNamespacePackage, with path2 first on sys.path."""
    mod = importlib.import_module(TESTPACK)
    assert list(mod.__path__) == [os.path.join(path2, TESTPACK), os.path.join(path1, TESTPACK)]
    mod = importlib.import_module(PACKDIR3.replace("/", ".")[:-1])
    assert list(mod.__path__) == [os.path.join(path1, PACKDIR3[:-1])]
    mod = importlib.import_module(f"{TESTPACK}.{TESTMOD}")
    assert mod.__file__ is not None
    assert mod.__file__.startswith(path1 + "/")
    mod = importlib.import_module(f"{TESTPACK}.{TESTMOD}2")
    assert mod.__file__ is not None
    assert mod.__file__.startswith(path2 + "/")
    subpkg = f"{TESTPACK}.{TESTPACK2}"
    mod = importlib.import_module(subpkg)
    assert list(mod.__path__) == [
        os.path.join(path2, TESTPACK, TESTPACK2),
        os.path.join(path1, TESTPACK, TESTPACK2),
    ]
    for name, path in ((TESTMOD, path2), (f"{TESTMOD}2", path2), (f"{TESTMOD}3", path1)):
        file = importlib.import_module(f"{subpkg}.{name}").__file__
        assert file is not None
        assert file.startswith(path + "/")


def test_namespace_package_across_two_trees(site):
    """testNamespacePackage: namespace packages spread over two archives (two URLs)."""
    url1 = site.mount(HOOK, "path1", NS_FILES1)
    url2 = site.mount(HOOK, "path2", NS_FILES2)  # inserted first: wins
    assert sys.path[:2] == [url2, url1]
    _check_two_namespace_portions(url1, url2)


def test_mixed_namespace_package_tree_and_local_directory(site, tmp_path):
    """testMixedNamespacePackage: one portion in an archive (a URL), one on the file system."""
    url1 = site.mount(HOOK, "path1", NS_FILES1)
    local = write_tree(tmp_path / "junk95142", NS_FILES2)
    sys.path.insert(0, str(local))
    importlib.invalidate_caches()
    _check_two_namespace_portions(url1, str(local))


def test_path_entry_finder_methods(site):
    """testZipImporterMethods: the path-entry finder and loader API (PEP 451).

    zipimport's ``get_source`` returns None for bytecode-only modules; every module
    here has source, so ``get_source`` returns it.
    """
    url = site.mount(
        HOOK,
        "t",
        {
            f"{PACKDIR}__init__.py": TEST_SRC,
            f"{PACKDIR2}__init__.py": TEST_SRC,
            f"{PACKDIR2}{TESTMOD}.py": TEST_SRC,
            "spam.py": TEST_SRC,
        },
    )
    zi = pkgutil.get_importer(url)
    assert isinstance(zi, RemotePathFinder)

    spec = zi.find_spec("spam")
    assert spec is not None
    assert isinstance(spec.loader, VerifiedLoader)
    assert not spec.loader.is_package("spam")
    exec_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exec_mod)
    assert spec.loader.get_filename("spam") == exec_mod.__file__ == f"{url}/spam.py"

    spec = zi.find_spec(TESTPACK)
    assert spec is not None and isinstance(spec.loader, VerifiedLoader)
    assert spec.loader.is_package(TESTPACK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert spec.loader.get_filename(TESTPACK) == mod.__file__

    assert importlib.import_module(TESTPACK).__path__[0] == f"{url}/{TESTPACK}"
    mod_name = f"{TESTPACK}.{TESTPACK2}.{TESTMOD}"
    mod = importlib.import_module(mod_name)
    assert mod.__spec__ is not None
    loader = mod.__spec__.loader
    assert isinstance(loader, VerifiedLoader)
    assert loader.get_source(mod_name) == TEST_SRC
    assert loader.get_filename(mod_name) == mod.__file__
    assert loader.get_code(mod_name).co_filename == mod.__file__

    # A finder for a directory inside the tree (zipimporter(TEMP_ZIP + os.sep + TESTPACK)).
    zi2 = pkgutil.get_importer(f"{url}/{TESTPACK}")
    assert isinstance(zi2, RemotePathFinder)
    spec = zi2.find_spec(f"{TESTPACK}.{TESTPACK2}")
    assert spec is not None and isinstance(spec.loader, VerifiedLoader)
    assert spec.loader.is_package(f"{TESTPACK}.{TESTPACK2}")
    assert spec.origin == f"{url}/{TESTPACK}/{TESTPACK2}/__init__.py"
    assert zi2.find_spec(f"{TESTPACK}.nothing") is None


@both_modes
def test_invalidate_caches_sees_new_and_removed_files(site, mode):
    """testInvalidateCaches: after a new release and invalidate_caches(), new files are found."""
    site.mount(mode, "t", {"spam.py": "", f"{PACKDIR}__init__.py": ""})
    assert importlib.util.find_spec("spam2") is None
    site.update("t", {"spam2.py": "VALUE = 2\n"})
    importlib.invalidate_caches()
    assert importlib.util.find_spec("spam2") is not None
    assert importlib.import_module("spam2").VALUE == 2


def test_finder_invalidate_caches_and_a_vanished_tree(site):
    """testInvalidateCaches: the finder's own invalidate_caches(); a deleted archive.

    zipimport then finds nothing; here a tree whose manifest vanished keeps
    failing closed for names its last good manifest listed, and finds nothing
    else.
    """
    url = site.mount(HOOK, "t", {"spam.py": ""})
    zi = pkgutil.get_importer(url)
    assert isinstance(zi, RemotePathFinder)
    assert zi.find_spec("spam") is not None
    site.update("t", {"spam2.py": ""})
    assert zi.find_spec("spam2") is None  # cached manifest
    zi.invalidate_caches()
    assert zi.find_spec("spam2") is not None
    (site.root / "t" / "secure-urlimport.manifest").unlink()
    zi.invalidate_caches()
    assert zi.find_spec("name_does_not_matter") is None
    with pytest.raises(ImportError):  # from find_spec, or at the latest from exec_module
        importlib.import_module("spam")


@both_modes
def test_get_data(site, mode):
    """testGetData: the loader returns the exact bytes of a data file."""
    url = site.mount(mode, "t", {"testdata.dat": bytes(range(256)) * 500, "anymod.py": ""})
    loader = importlib.import_module("anymod").__loader__
    assert isinstance(loader, VerifiedLoader)
    assert loader.get_data(f"{url}/testdata.dat") == bytes(range(256)) * 500
    assert "VerifiedLoader" in repr(loader)


@both_modes
def test_importer_attr(site, mode):
    """testImporterAttr: a module reads a data file through its own ``__loader__``.

    zipimport accepts a path relative to the archive; like a local FileLoader, this
    loader wants a path built from ``__file__``.
    """
    src = (
        "import os\n"
        "def get_file():\n"
        "    return __file__\n"
        "if __loader__.get_data(os.path.join(os.path.dirname(__file__), 'some.data')) \\\n"
        "        != b'some data':\n"
        "    raise AssertionError('bad data')\n"
    )
    url = site.mount(mode, "t", {f"{TESTMOD}.py": src, "some.data": "some data"})
    assert importlib.import_module(TESTMOD).get_file() == f"{url}/{TESTMOD}.py"


@both_modes
def test_default_optimization_level(site, mode):
    """testDefaultOptimizationLevel: asserts follow the interpreter's optimisation level."""
    site.mount(
        mode,
        "t",
        {
            f"{TESTMOD}.py": (
                "if 1:  # indent hack\n"
                "    def test(val):\n"
                "        assert(val)\n"
                "        return val\n"
            )
        },
    )
    mod = importlib.import_module(TESTMOD)
    assert mod.test(1) == 1
    if __debug__:
        with pytest.raises(AssertionError):
            mod.test(False)


@both_modes
def test_get_source(site, mode):
    """testGetSource / testGetCompiledSource: inspect.getsource() gives the source.

    With a .pyc beside the source too: still the source (which is also what runs).
    """
    site.mount(mode, "t", {f"{TESTMOD}.py": TEST_SRC, f"{TESTMOD}.pyc": make_pyc(TEST_SRC)})
    module = importlib.import_module(TESTMOD)
    assert inspect.getsource(module) == TEST_SRC
    assert inspect.getsource(module.get_file) == "def get_file():\n    return __file__\n"


@pytest.fixture
def doctest_module(site: Site) -> Iterator[types.ModuleType]:
    site.mount(HOOK, "t", {f"{TESTMOD}.py": TEST_SRC, "xyz.txt": ">>> log.append(True)\n"})
    old_master, doctest.master = doctest.master, None
    yield importlib.import_module(TESTMOD)
    doctest.master = old_master


def test_doctest_file(doctest_module, capsys):
    """testDoctestFile: doctest.testfile() with a file next to a module in the tree."""
    log: list[bool] = []
    results = doctest.testfile(
        "xyz.txt", package=doctest_module, module_relative=True, globs={"log": log}
    )
    assert log == [True]
    assert results == doctest.TestResults(failed=0, attempted=1)


def test_doctest_suite(doctest_module):
    """testDoctestSuite: doctest.DocFileTest() with a file next to a module in the tree."""
    log: list[bool] = []
    test = doctest.DocFileTest(
        "xyz.txt", package=doctest_module, module_relative=True, globs={"log": log}
    )
    result = test.run()
    assert result is not None
    assert log == [True] and result.wasSuccessful()


@both_modes
def test_traceback(site, mode):
    """testTraceback: extract_tb, extract_stack and print_tb show the remote line and carets."""
    site.mount(mode, "t", {f"{TESTMOD}.py": RAISE_SRC})
    module = importlib.import_module(TESTMOD)
    try:
        module.do_raise()
    except Exception as e:
        assert e.__traceback__ is not None
        tb = e.__traceback__.tb_next
        assert tb is not None
        assert traceback.extract_tb(tb, 1)[0].line == RAISE_SRC.strip()
        assert traceback.extract_stack(tb.tb_frame, 1)[0].line == RAISE_SRC.strip()
        s = io.StringIO()
        traceback.print_tb(tb, 1, s)
        assert s.getvalue().endswith(
            "    def do_raise(): raise TypeError\n                    ^^^^^^^^^^^^^^^\n"
        )
    else:
        raise AssertionError("This ought to be impossible")


def test_module_and_package_seen_after_a_new_release(site):
    """ZipFileModifiedAfterImportTestCase: the archive changes after the first import.

    Already imported modules keep running; after invalidate_caches() a meta-path
    tree serves the new release to new imports.
    """
    files: dict[str, str | bytes] = {
        f"{PACKDIR}__init__.py": "",
        f"{PACKDIR}{TESTMOD}.py": "test_value = 38\n",
        "ziptest_a.py": "test_value = 23\n",
        "ziptest_b.py": "test_value = 42\n",
    }
    site.mount(META, "t", files)
    assert importlib.import_module(f"{TESTPACK}.{TESTMOD}").test_value == 38
    assert importlib.import_module("ziptest_a").test_value == 23
    site.update("t", {"ziptest_b.py": "test_value = 1337\n", "ziptest_c.py": "test_value = 7\n"})
    importlib.invalidate_caches()
    assert importlib.import_module("ziptest_a").test_value == 23  # still the loaded module
    assert importlib.import_module("ziptest_b").test_value == 1337
    assert importlib.import_module("ziptest_c").test_value == 7


# =============================================================================
# Lib/test/test_importlib/test_namespace_pkgs.py
# =============================================================================

NS_PORTIONS: dict[str, dict[str, str | bytes]] = {
    "portion1": {"foo/one.py": "attr = 'portion1 foo one'\n"},
    "portion2": {"foo/two.py": "attr = 'portion2 foo two'\n"},
    "both_portions": {
        "foo/one.py": "attr = 'both_portions foo one'\n",
        "foo/two.py": "attr = 'both_portions foo two'\n",
    },
    "not_a_namespace_pkg": {"foo/__init__.py": "", "foo/one.py": "attr = 'portion1 foo one'\n"},
    "project1": {"parent/child/one.py": "attr = 'parent child one'\n"},
    "project2": {"parent/child/two.py": "attr = 'parent child two'\n"},
    "project3": {"parent/child/three.py": "attr = 'parent child three'\n"},
    "module_and_namespace_package": {"a_test.py": "attr = 'in module'\n", "a_test/empty": ""},
}


def ns_paths(site: Site, *names: str) -> list[str]:
    """Publish the named portions and put their URLs on sys.path, in order."""
    urls = [site.publish(name, NS_PORTIONS[name]) for name in names]
    sys.path.extend(urls)
    importlib.invalidate_caches()
    return urls


def test_single_namespace_package(site):
    """SingleNamespacePackage: test_simple_package, test_cant_import_other, test_simple_repr."""
    ns_paths(site, "portion1")
    import foo.one

    assert foo.one.attr == "portion1 foo one"
    with pytest.raises(ImportError):
        import foo.two
    assert repr(foo).startswith("<module 'foo' (")


def test_single_namespace_package_installed(site):
    """SingleNamespacePackage, through install(): the tree's namespace package imports."""
    site.mount(META, "portion1", NS_PORTIONS["portion1"])
    import foo.one

    assert foo.one.attr == "portion1 foo one"
    with pytest.raises(ImportError):
        import foo.two


def test_dynamic_path(site):
    """DynamicPathNamespacePackage.test_dynamic_path: a portion appended to sys.path later."""
    ns_paths(site, "portion1")
    import foo.one

    assert foo.one.attr == "portion1 foo one"
    with pytest.raises(ImportError):
        import foo.two
    ns_paths(site, "portion2")
    import foo.two

    assert foo.two.attr == "portion2 foo two"


def test_combined_namespace_packages(site):
    """CombinedNamespacePackages.test_imports: both modules in one portion."""
    ns_paths(site, "both_portions")
    import foo.one
    import foo.two

    assert foo.one.attr == "both_portions foo one"
    assert foo.two.attr == "both_portions foo two"


def test_separated_namespace_packages(site):
    """SeparatedNamespacePackages.test_imports: one module in each of two portions."""
    ns_paths(site, "portion1", "portion2")
    import foo.one
    import foo.two

    assert foo.one.attr == "portion1 foo one"
    assert foo.two.attr == "portion2 foo two"


@pytest.mark.parametrize("created_in", ["local", "url"])
def test_namespace_portion_created_while_running(site, tmp_path, created_in):
    """SeparatedNamespacePackagesCreatedWhileRunning.test_invalidate_caches.

    The portion appears inside a sys.path entry that already exists: a local
    directory (the CPython case) or a tree that publishes a new release.
    """
    ns_paths(site, "portion1")
    if created_in == "local":
        temp_dir = tmp_path / "created"
        temp_dir.mkdir()
        sys.path.append(str(temp_dir))
    else:
        sys.path.append(site.publish("created", {"unrelated.py": ""}))
    import foo.one

    assert foo.one.attr == "portion1 foo one"
    with pytest.raises(ImportError):
        import foo.just_created
    if created_in == "local":
        write_tree(temp_dir, {"foo/just_created.py": 'attr = "just_created foo"'})
    else:
        site.update("created", {"foo/just_created.py": 'attr = "just_created foo"'})
    with pytest.raises(ImportError):
        import foo.just_created
    importlib.invalidate_caches()
    import foo.just_created

    assert foo.just_created.attr == "just_created foo"


@pytest.mark.parametrize(
    "order", ["first_path_wins", "first_path_wins_again", "first_path_wins_importing_second_first"]
)
def test_separated_overlapping_namespace_packages(site, order):
    """SeparatedOverlappingNamespacePackages: the three test_first_path_wins* cases."""
    ns_paths(site, "portion1", "both_portions")
    if order == "first_path_wins_again":
        sys.path.reverse()
    names = ["foo.one", "foo.two"]
    if order == "first_path_wins_importing_second_first":
        names.reverse()
    for name in names:
        importlib.import_module(name)
    foo = sys.modules["foo"]
    expected_one = (
        "both_portions foo one" if order == "first_path_wins_again" else "portion1 foo one"
    )
    assert foo.one.attr == expected_one
    assert foo.two.attr == "both_portions foo two"


def test_non_namespace_package_takes_precedence(site):
    """LegacySupport.test_non_namespace_package_takes_precedence."""
    ns_paths(site, "not_a_namespace_pkg", "portion1", "portion2", "both_portions")
    import foo.one

    with pytest.raises(ImportError):
        import foo.two
    assert "__init__" in foo.__file__
    # CPython checks the loader's repr, which here contains the URL (and the
    # portion's name): check its type instead.
    assert "namespace" not in type(foo.__loader__).__name__.lower()
    assert not isinstance(foo.__loader__, importlib.machinery.NamespaceLoader)


@pytest.mark.parametrize("with_project3", [False, True])
def test_dynamic_path_calculation(site, with_project3):
    """DynamicPathCalculation.test_project3_fails / test_project3_succeeds (nested)."""
    ns_paths(site, "project1", "project2")
    import parent.child.one

    assert len(parent.__path__) == 2 and len(parent.child.__path__) == 2
    import parent.child.two

    assert len(parent.__path__) == 2 and len(parent.child.__path__) == 2
    assert parent.child.one.attr == "parent child one"
    assert parent.child.two.attr == "parent child two"
    with pytest.raises(ImportError):
        import parent.child.three
    assert len(parent.__path__) == 2 and len(parent.child.__path__) == 2
    if with_project3:
        ns_paths(site, "project3")
        import parent.child.three

        assert len(parent.__path__) == 3 and len(parent.child.__path__) == 3
        assert parent.child.three.attr == "parent child three"


def test_module_before_namespace_package(site):
    """ModuleAndNamespacePackageInSameDir.test_module_before_namespace_package."""
    ns_paths(site, "module_and_namespace_package")
    import a_test

    assert a_test.attr == "in module"


@pytest.mark.parametrize("case", ["simple_package", "cant_import_other", "dynamic_path"])
def test_namespace_reload(site, case):
    """ReloadTests: test_simple_package, test_cant_import_other, test_dynamic_path."""
    ns_paths(site, "portion1")
    import foo

    if case == "simple_package":
        import foo.one

        foo = importlib.reload(foo)
        assert foo.one.attr == "portion1 foo one"
    elif case == "cant_import_other":
        with pytest.raises(ImportError):
            import foo.two
        foo = importlib.reload(foo)
        with pytest.raises(ImportError):
            import foo.two
    else:
        import foo.one

        with pytest.raises(ImportError):
            import foo.two
        ns_paths(site, "portion2")
        foo = importlib.reload(foo)
        import foo.two

        assert foo.two.attr == "portion2 foo two"


@both_modes
def test_namespace_loader(site, mode):
    """LoaderTests: loader consistency, origin consistency, indexable path, loader ABC."""
    if mode == META:
        url = site.mount(META, "portion1", NS_PORTIONS["portion1"])
    else:
        (url,) = ns_paths(site, "portion1")
    import foo

    assert foo.__loader__ == foo.__spec__.loader and foo.__loader__ is not None
    assert foo.__spec__.origin is None and foo.__file__ is None
    assert foo.__path__[0] == f"{url}/foo"
    assert isinstance(foo.__loader__, importlib.abc.Loader)
    assert isinstance(foo.__loader__, importlib.machinery.NamespaceLoader)


# =============================================================================
# Lib/test/test_importlib/import_/test_relative_imports.py and test_fromlist.py
# =============================================================================


def mock_tree(*create: str, code: dict[str, str] | None = None) -> dict[str, str | bytes]:
    """Files for CPython's ``util.mock_modules(*create)``: each module's ``attr`` is its name."""
    files: dict[str, str | bytes] = {}
    for name in create:
        if name.endswith(".__init__"):
            rel = name[: -len(".__init__")].replace(".", "/") + "/__init__.py"
        else:
            rel = name.replace(".", "/") + ".py"
        files[rel] = f"attr = {name!r}\n" + (code or {}).get(name, "")
    return files


def relative_import_test(
    site: Site,
    mode: str,
    create: tuple[str, ...],
    globals_: tuple[Mapping[str, object], ...],
    callback: Callable[[Mapping[str, object]], None],
) -> None:
    """RelativeImports.relative_import_test, with the modules in a signed tree."""
    site.mount(mode, "t", mock_tree(*create))
    names = [n[: -len(".__init__")] if n.endswith(".__init__") else n for n in create]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for global_ in globals_:
            uncache(*names)
            callback(global_)


@both_modes
def test_relative_module_from_module(site, mode):
    """test_relative_imports.test_module_from_module: ``from . import mod2``."""

    def callback(global_):
        __import__("pkg")
        module = __import__("", global_, fromlist=["mod2"], level=1)
        assert module.__name__ == "pkg"
        assert module.mod2.attr == "pkg.mod2"

    relative_import_test(
        site,
        mode,
        ("pkg.__init__", "pkg.mod2"),
        ({"__package__": "pkg"}, {"__name__": "pkg.mod1"}),
        callback,
    )


@both_modes
def test_relative_attr_from_module(site, mode):
    """test_relative_imports.test_attr_from_module: ``from .mod2 import attr``."""

    def callback(global_):
        __import__("pkg")
        module = __import__("mod2", global_, fromlist=["attr"], level=1)
        assert module.__name__ == "pkg.mod2"
        assert module.attr == "pkg.mod2"

    relative_import_test(
        site,
        mode,
        ("pkg.__init__", "pkg.mod2"),
        ({"__package__": "pkg"}, {"__name__": "pkg.mod1"}),
        callback,
    )


@both_modes
def test_relative_package_to_module(site, mode):
    """test_relative_imports.test_package_to_module: from a package, ``from . import module``."""

    def callback(global_):
        __import__("pkg")
        module = __import__("", global_, fromlist=["module"], level=1)
        assert module.__name__ == "pkg"
        assert module.module.attr == "pkg.module"

    relative_import_test(
        site,
        mode,
        ("pkg.__init__", "pkg.module"),
        ({"__package__": "pkg"}, {"__name__": "pkg", "__path__": ["blah"]}),
        callback,
    )


@both_modes
def test_relative_module_to_package(site, mode):
    """test_relative_imports.test_module_to_package: ``from . import attr`` of the package."""

    def callback(global_):
        __import__("pkg")
        module = __import__("", global_, fromlist=["attr"], level=1)
        assert module.__name__ == "pkg"
        assert module.attr == "pkg.__init__"

    relative_import_test(
        site,
        mode,
        ("pkg.__init__", "pkg.module"),
        ({"__package__": "pkg"}, {"__name__": "pkg.module"}),
        callback,
    )


@both_modes
def test_relative_package_to_package(site, mode):
    """test_relative_imports.test_package_to_package: ``from .. import subpkg2``."""

    def callback(global_):
        module = __import__("", global_, fromlist=["subpkg2"], level=2)
        assert module.__name__ == "pkg"
        assert module.subpkg2.attr == "pkg.subpkg2.__init__"

    relative_import_test(
        site,
        mode,
        ("pkg.__init__", "pkg.subpkg1.__init__", "pkg.subpkg2.__init__"),
        ({"__package__": "pkg.subpkg1"}, {"__name__": "pkg.subpkg1", "__path__": ["blah"]}),
        callback,
    )


@both_modes
def test_relative_deep_import(site, mode):
    """test_relative_imports.test_deep_import: ``from ...... import attr``."""
    create = ["pkg.__init__"]
    for count in range(1, 6):
        create.append(f"{create[-1][: -len('.__init__')]}.pkg{count}.__init__")
    globals_ = (
        {"__package__": "pkg.pkg1.pkg2.pkg3.pkg4.pkg5"},
        {"__name__": "pkg.pkg1.pkg2.pkg3.pkg4.pkg5", "__path__": ["blah"]},
    )

    def callback(global_):
        __import__(globals_[0]["__package__"])
        module = __import__("", global_, fromlist=["attr"], level=6)
        assert module.__name__ == "pkg"

    relative_import_test(site, mode, tuple(create), globals_, callback)


@both_modes
@pytest.mark.parametrize("importer", ["package", "module"])
def test_relative_import_too_high(site, mode, importer):
    """test_relative_imports.test_too_high_from_package / test_too_high_from_module."""
    if importer == "package":
        create: tuple[str, ...] = ("top_level", "pkg.__init__")
        globals_: tuple[dict[str, object], ...] = (
            {"__package__": "pkg"},
            {"__name__": "pkg", "__path__": ["blah"]},
        )
    else:
        create = ("top_level", "pkg.__init__", "pkg.module")
        globals_ = ({"__package__": "pkg"}, {"__name__": "pkg.module"})

    def callback(global_):
        __import__("pkg")
        with pytest.raises(ImportError):
            __import__("", global_, fromlist=["top_level"], level=2)

    relative_import_test(site, mode, create, globals_, callback)


@both_modes
def test_relative_import_from_different_package(site, mode):
    """test_relative_imports.test_import_from_different_package: ``from ..uncle.cousin``."""
    create = (
        "__runpy_pkg__.__init__",
        "__runpy_pkg__.__runpy_pkg__.__init__",
        "__runpy_pkg__.uncle.__init__",
        "__runpy_pkg__.uncle.cousin.__init__",
        "__runpy_pkg__.uncle.cousin.nephew",
    )
    globals_ = {"__package__": "__runpy_pkg__.__runpy_pkg__"}

    def callback(global_):
        __import__("__runpy_pkg__.__runpy_pkg__")
        module = __import__("uncle.cousin", globals_, {}, fromlist=["nephew"], level=2)
        assert module.__name__ == "__runpy_pkg__.uncle.cousin"
        assert module.nephew.attr == "__runpy_pkg__.uncle.cousin.nephew"

    relative_import_test(site, mode, create, (globals_,), callback)


@both_modes
def test_relative_import_no_fromlist(site, mode):
    """test_relative_imports.test_import_relative_import_no_fromlist."""

    def callback(global_):
        __import__("crash")
        mod = __import__("mod", global_, {}, [], 1)
        assert mod.__name__ == "crash.mod"

    relative_import_test(
        site,
        mode,
        ("crash.__init__", "crash.mod"),
        ({"__package__": "crash", "__name__": "crash"},),
        callback,
    )


@both_modes
def test_fromlist_return_values(site, mode):
    """test_fromlist.ReturnValue: test_return_from_import, test_return_from_from_import."""
    site.mount(mode, "t", mock_tree("pkg.__init__", "pkg.module"))
    assert __import__("pkg.module").__name__ == "pkg"
    uncache("pkg", "pkg.module")
    assert __import__("pkg.module", fromlist=["attr"]).__name__ == "pkg.module"


@both_modes
def test_fromlist_objects_and_modules(site, mode):
    """test_fromlist.HandlingFromlist: test_object, test_nonexistent_object,
    test_module_from_package, test_empty_string."""
    site.mount(mode, "t", mock_tree("module", "pkg.__init__", "pkg.module", "pkg.mod"))
    assert __import__("module", fromlist=["attr"]).__name__ == "module"
    module = __import__("module", fromlist=["non_existent"])
    assert module.__name__ == "module" and not hasattr(module, "non_existent")
    module = __import__("pkg", fromlist=["module"])
    assert module.__name__ == "pkg" and module.module.__name__ == "pkg.module"
    assert __import__("pkg.mod", fromlist=[""]).__name__ == "pkg.mod"
    # A name that is neither an attribute nor a submodule is silently skipped.
    assert not hasattr(__import__("pkg", fromlist=["nonexistent_sub"]), "nonexistent_sub")


@both_modes
def test_fromlist_submodule_module_not_found_propagates(site, mode):
    """test_fromlist.test_module_from_package_triggers_ModuleNotFoundError."""
    site.mount(
        mode, "t", mock_tree("pkg.__init__", "pkg.mod", code={"pkg.mod": "import i_do_not_exist\n"})
    )
    with pytest.raises(ModuleNotFoundError) as exc:
        __import__("pkg", fromlist=["mod"])
    assert exc.value.name == "i_do_not_exist"


@both_modes
@pytest.mark.parametrize(
    "fromlist", [["*"], ("*",), ["module2", "*"]], ids=["star", "tuple", "star_with_others"]
)
def test_fromlist_star(site, mode, fromlist):
    """test_fromlist: test_using_star, test_fromlist_as_tuple, test_star_with_others."""
    site.mount(
        mode,
        "t",
        mock_tree(
            "pkg.__init__",
            "pkg.module1",
            "pkg.module2",
            code={"pkg.__init__": "__all__ = ['module1']\n"},
        ),
    )
    module = __import__("pkg", fromlist=fromlist)
    assert module.__name__ == "pkg"
    assert module.module1.__name__ == "pkg.module1"
    assert hasattr(module, "module2") is ("module2" in fromlist)


# =============================================================================
# Lib/test/test_importlib/test_api.py  (ImportModuleTests, ReloadTests)
# =============================================================================


@both_modes
def test_import_module_absolute_and_relative(site, mode):
    """ImportModuleTests: test_module_import, test_absolute_package_import,
    test_shallow_relative_package_import, test_deep_relative_package_import,
    test_absolute_import_with_package."""
    site.mount(
        mode,
        "t",
        mock_tree("top_level", "pkg.__init__", "pkg.mod", "a.__init__", "a.b.__init__", "a.c"),
    )
    assert importlib.import_module("top_level").__name__ == "top_level"
    assert importlib.import_module("pkg.mod").__name__ == "pkg.mod"
    assert importlib.import_module(".mod", "pkg").__name__ == "pkg.mod"
    importlib.import_module("a.b")
    assert importlib.import_module("..c", "a.b").__name__ == "a.c"
    assert importlib.import_module("pkg.mod", "pkg").__name__ == "pkg.mod"


@both_modes
def test_import_module_loaded_once(site, mode, loads):
    """ImportModuleTests.test_loaded_once: a package importing the module being imported."""
    body = "import parity_loads\nparity_loads.append(__name__)\n"
    site.mount(
        mode,
        "t",
        {"a/__init__.py": "import importlib\nimportlib.import_module('a.b')\n", "a/b.py": body},
    )
    importlib.import_module("a.b")
    assert loads == ["a.b"]


@both_modes
def test_reload_module_replaced(site, mode):
    """ReloadTests.test_module_replaced: a module that replaces itself in sys.modules."""
    site.mount(
        mode,
        "t",
        {
            "top_level.py": (
                "import sys\n"
                "module = type(sys)('top_level')\n"
                "module.spam = 3\n"
                "sys.modules['top_level'] = module\n"
            )
        },
    )
    module = importlib.import_module("top_level")
    reloaded = importlib.reload(module)
    assert sys.modules["top_level"].spam == 3
    assert reloaded.spam == 3


@both_modes
def test_reload_missing_or_replaced_loader(site, mode):
    """ReloadTests.test_reload_missing_loader / test_reload_loader_replaced."""
    site.mount(mode, "t", {"reloadable.py": "X = 1\n"})
    import reloadable

    loader = reloadable.__loader__
    del reloadable.__loader__
    reloaded = importlib.reload(reloadable)
    assert reloaded is reloadable and sys.modules["reloadable"] is reloadable
    assert reloaded.__loader__.url == loader.url
    reloadable.__loader__ = None
    importlib.invalidate_caches()
    assert importlib.reload(reloadable).__loader__ is not None


def _namespace_of(
    module: types.ModuleType,
) -> tuple[dict[str, object], object, importlib.machinery.ModuleSpec]:
    ns = vars(module).copy()
    loader, spec = ns.pop("__loader__"), ns.pop("__spec__")
    ns.pop("__builtins__", None)
    return ns, loader, spec


@both_modes
def test_reload_location_changed(site, mode):
    """ReloadTests.test_reload_location_changed: a module becomes a package in a new release."""
    url = site.mount(mode, "t", {"spam.py": ""})
    module = importlib.import_module("spam")
    ns, loader, spec = _namespace_of(module)
    path = f"{url}/spam.py"
    assert isinstance(loader, VerifiedLoader)
    assert spec.name == "spam" and spec.loader is loader and loader.get_filename("spam") == path
    assert ns == {
        "__name__": "spam",
        "__package__": "",
        "__file__": path,
        "__cached__": importlib.util.cache_from_source(path),
        "__doc__": None,
    }

    site.update("t", {"spam/__init__.py": ""}, remove=("spam.py",))
    importlib.invalidate_caches()
    reloaded = importlib.reload(module)
    ns, loader, spec = _namespace_of(reloaded)
    init_path = f"{url}/spam/__init__.py"
    assert reloaded is module and spec.loader is loader
    assert isinstance(loader, VerifiedLoader)
    assert loader.get_filename("spam") == init_path
    assert ns == {
        "__name__": "spam",
        "__package__": "spam",
        "__file__": init_path,
        "__cached__": importlib.util.cache_from_source(init_path),
        "__path__": [f"{url}/spam"],
        "__doc__": None,
    }


@both_modes
def test_reload_namespace_changed(site, mode):
    """ReloadTests.test_reload_namespace_changed: a namespace package becomes a regular one."""
    url = site.mount(mode, "t", {"spam/__init.py": "eggs = None\n"})
    module = importlib.import_module("spam")
    ns, loader, spec = _namespace_of(module)
    path = ns.pop("__path__")
    assert spec.name == "spam" and loader is not None and spec.loader == loader
    assert isinstance(path, Iterable)
    assert set(path) == {f"{url}/spam"}
    assert not hasattr(loader, "path")
    assert ns == {"__name__": "spam", "__package__": "spam", "__doc__": None, "__file__": None}

    site.update("t", {"spam/__init__.py": "eggs = None\n"}, remove=("spam/__init.py",))
    importlib.invalidate_caches()
    reloaded = importlib.reload(module)
    ns, loader, spec = _namespace_of(reloaded)
    init_path = f"{url}/spam/__init__.py"
    assert reloaded is module and spec.loader == loader
    assert isinstance(loader, VerifiedLoader)
    assert loader.get_filename("spam") == init_path
    assert ns == {
        "__name__": "spam",
        "__package__": "spam",
        "__file__": init_path,
        "__cached__": importlib.util.cache_from_source(init_path),
        "__path__": [f"{url}/spam"],
        "__doc__": None,
        "eggs": None,
    }


@both_modes
def test_reload_submodule(site, mode):
    """ReloadTests.test_reload_submodule (bpo-19851)."""
    site.mount(mode, "t", {"spam/__init__.py": "", "spam/ham.py": "X = 1\n"})
    ham = importlib.import_module("spam.ham")
    assert importlib.reload(ham) is ham


# =============================================================================
# Lib/test/test_importlib/test_lazy.py
# =============================================================================


def _lazy(name: str) -> tuple[types.ModuleType, importlib.util.LazyLoader]:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module, loader


LAZY_SRC = "import parity_loads\nparity_loads.append(__name__)\nattr = 42\n"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    record: list[str] = []
    monkeypatch.setitem(sys.modules, "parity_loads", types.SimpleNamespace(append=record.append))
    return record


@both_modes
def test_lazy_e2e_and_attribute_semantics(site, mode, loads):
    """LazyLoaderTests: test_e2e, test_new_attr, test_mutated_attr, test_delete_eventual_attr,
    test_mutated_preexisting_attr."""
    site.mount(mode, "t", {"lazy_loader_test.py": LAZY_SRC})
    module: Any  # a lazy module from the test server: its attributes are dynamic
    module, _ = _lazy("lazy_loader_test")
    assert loads == []
    module.new_attr = 42
    assert module.new_attr == 42  # reading an attribute loads the module
    assert loads == ["lazy_loader_test"]
    assert module.attr == 42
    assert isinstance(module.__loader__, VerifiedLoader)

    uncache("lazy_loader_test")
    module, _ = _lazy("lazy_loader_test")
    module.attr = 6
    assert module.attr == 6
    uncache("lazy_loader_test")
    module, _ = _lazy("lazy_loader_test")
    del module.attr
    assert not hasattr(module, "attr")
    uncache("lazy_loader_test")
    module, _ = _lazy("lazy_loader_test")
    module.__name__ = "bogus"
    assert module.__name__ == "bogus"  # the load runs under the mutated name, and keeps it
    assert loads == ["lazy_loader_test"] * 3 + ["bogus"]


@both_modes
def test_lazy_module_substitution_error(site, mode, loads):
    """LazyLoaderTests.test_module_substitution_error."""
    site.mount(mode, "t", {"lazy_loader_test.py": LAZY_SRC})
    module, _ = _lazy("lazy_loader_test")
    sys.modules["lazy_loader_test"] = types.ModuleType("lazy_loader_test")
    with pytest.raises(ValueError, match="substituted"):
        module.__package__  # noqa: B018
    assert loads == ["lazy_loader_test"]  # the body ran, then the substitution was seen


@pytest.mark.skipif(
    sys.version_info < (3, 12, 3),
    reason="LazyLoader became thread-safe in CPython 3.12.3 (gh-114763)",
)
@both_modes
def test_lazy_module_load_race(site, mode, loads):
    """LazyLoaderTests.test_module_load_race: two threads trigger one load."""
    site.mount(mode, "t", {"lazy_loader_test.py": LAZY_SRC})
    module, _ = _lazy("lazy_loader_test")
    errors: list[BaseException] = []

    def access() -> None:
        try:
            assert module.attr == 42
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=access) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and loads == ["lazy_loader_test"]


@both_modes
def test_lazy_self_referential_package(site, mode):
    """LazyLoaderTests.test_lazy_self_referential_modules: a lazy package whose
    submodule reads the parent while it loads (like json)."""
    site.mount(
        mode,
        "t",
        {
            "lazyjson/__init__.py": "from .decoder import loads\nVERSION = 1\n",
            "lazyjson/decoder.py": "import lazyjson\ndef loads(s):\n    return {}\n",
        },
    )
    module, _ = _lazy("lazyjson")
    assert module.loads("{}") == {}
    assert module.VERSION == 1


# =============================================================================
# Lib/test/test_importlib/resources/  (data01 and its tests)
# =============================================================================

DATA01: dict[str, str | bytes] = {
    "data01/__init__.py": "",
    "data01/binary.file": bytes(range(4)),
    "data01/utf-8.file": "Hello, UTF-8 world!\n",
    "data01/utf-16.file": "Hello, UTF-16 world!\n".encode("utf-16"),
    "data01/subdirectory/__init__.py": "",
    "data01/subdirectory/binary.file": bytes(range(4, 8)),
    "data02/__init__.py": "",
    "data02/one/__init__.py": "",
    "data02/one/resource1.txt": "one resource\n",
    "data02/two/__init__.py": "",
    "data02/two/resource2.txt": "two resource\n",
}


@pytest.fixture(params=[META, HOOK])
def data01(request, site: Site) -> types.ModuleType:
    site.mount(request.param, "t", DATA01)
    return importlib.import_module("data01")


def test_files_read_bytes_read_text_traversable(data01):
    """test_files.FilesTests: test_read_bytes, test_read_text, test_traversable."""
    files = importlib.resources.files(data01)
    assert files.joinpath("utf-8.file").read_bytes() == b"Hello, UTF-8 world!\n"
    assert files.joinpath("utf-8.file").read_text(encoding="utf-8") == "Hello, UTF-8 world!\n"
    assert isinstance(files, importlib.resources.abc.Traversable)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="files(package=...) warns from 3.12")
def test_files_old_parameter(data01):
    """test_files.FilesTests.test_old_parameter: ``files(package=...)`` still works."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("default", category=DeprecationWarning)
        files = importlib.resources.files(package=data01)
    assert files.joinpath("binary.file").read_bytes() == bytes(range(4))


def test_read(data01):
    """test_read.ReadTests: read_bytes, read_text with default/given encoding and errors."""
    files = importlib.resources.files(data01)
    assert files.joinpath("binary.file").read_bytes() == bytes(range(4))
    assert files.joinpath("utf-8.file").read_text(encoding="utf-8") == "Hello, UTF-8 world!\n"
    target = files / "utf-16.file"
    assert target.read_text(encoding="utf-16") == "Hello, UTF-16 world!\n"
    with pytest.raises(UnicodeError):
        target.read_text(encoding="utf-8")


def test_read_submodule_resource(data01):
    """test_read.ReadZipTests: test_read_submodule_resource(_by_name)."""
    submodule = importlib.import_module("data01.subdirectory")
    assert importlib.resources.files(submodule).joinpath("binary.file").read_bytes() == bytes(
        range(4, 8)
    )
    assert importlib.resources.files("data01.subdirectory").joinpath(
        "binary.file"
    ).read_bytes() == bytes(range(4, 8))


def test_open(data01):
    """test_open.OpenTests: open_binary, open_text, errors, FileNotFoundError."""
    files = importlib.resources.files(data01)
    with files.joinpath("binary.file").open("rb") as fp:
        assert fp.read() == bytes(range(4))
    with files.joinpath("utf-8.file").open(encoding="utf-8") as fp:
        assert fp.read() == "Hello, UTF-8 world!\n"
    with files.joinpath("utf-16.file").open(encoding="utf-16") as fp:
        assert fp.read() == "Hello, UTF-16 world!\n"
    with (
        files.joinpath("utf-16.file").open(encoding="utf-8", errors="strict") as fp,
        pytest.raises(UnicodeError),
    ):
        fp.read()
    with files.joinpath("utf-16.file").open(encoding="utf-8", errors="ignore") as fp:
        assert fp.read() == (
            "H\x00e\x00l\x00l\x00o\x00,\x00 "
            "\x00U\x00T\x00F\x00-\x001\x006\x00 "
            "\x00w\x00o\x00r\x00l\x00d\x00!\x00\n\x00"
        )
    with pytest.raises(FileNotFoundError):
        files.joinpath("does-not-exist").open("rb")
    with pytest.raises(FileNotFoundError):
        files.joinpath("does-not-exist").open(encoding="utf-8")


def test_contents(data01):
    """test_contents.ContentsTests.test_contents."""
    contents = {path.name for path in importlib.resources.files(data01).iterdir()}
    assert {"__init__.py", "binary.file", "subdirectory", "utf-16.file", "utf-8.file"} <= contents


def test_resource_is_file_is_dir_and_unrelated_packages(data01):
    """test_resource.ResourceTests: test_is_file_exists, test_is_file_missing,
    test_is_dir, test_submodule_contents, test_unrelated_contents."""
    files = importlib.resources.files(data01)
    assert files.joinpath("binary.file").is_file()
    assert not files.joinpath("not-a-file").is_file()
    assert files.joinpath("subdirectory").is_dir()
    sub = importlib.resources.files("data01.subdirectory")
    assert {p.name for p in sub.iterdir()} == {"__init__.py", "binary.file"}
    one = {p.name for p in importlib.resources.files("data02.one").iterdir()}
    two = {p.name for p in importlib.resources.files("data02.two").iterdir()}
    assert one == {"__init__.py", "resource1.txt"}
    assert two == {"__init__.py", "resource2.txt"}


def test_functional_api(data01):
    """test_functional (3.13) / the legacy API (3.11, 3.12): read_binary, open_text,
    open_binary, path, is_resource, contents with one resource name.

    ``read_text`` is in test_parity.py (test_resources_functional_read_text).
    """
    res = importlib.resources
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert res.read_binary(data01, "binary.file") == bytes(range(4))
        with res.open_binary(data01, "binary.file") as fp:
            assert fp.read() == bytes(range(4))
        with res.open_text(data01, "utf-8.file") as fp:
            assert fp.read() == "Hello, UTF-8 world!\n"
        with res.path(data01, "utf-8.file") as path:
            assert path.name.endswith("utf-8.file")
            assert path.read_text(encoding="utf-8") == "Hello, UTF-8 world!\n"
        assert res.is_resource(data01, "utf-8.file")
        assert not res.is_resource(data01, "subdirectory")
        assert "utf-8.file" in set(res.contents(data01))


def test_path_reading_and_removal_inside_context(data01):
    """test_path.PathTests.test_reading and PathMemoryTests.test_remove_in_context_manager."""
    target = importlib.resources.files(data01) / "utf-8.file"
    with importlib.resources.as_file(target) as path:
        assert path.name.endswith("utf-8.file")
        assert path.read_text(encoding="utf-8") == "Hello, UTF-8 world!\n"
    with importlib.resources.as_file(target) as path:
        path.unlink()  # removing the temporary copy early is allowed


@pytest.mark.skipif(sys.version_info < (3, 12), reason="files() and modules need 3.12+")
@both_modes
def test_module_resources_and_implicit_files(site, mode):
    """test_files: ModulesFilesTests.test_module_resources,
    ImplicitContextFilesTests.test_implicit_files and the submodule case (gh-121735)."""
    set_val = (
        "import importlib.resources as res\n"
        "val = res.files().joinpath('res.txt').read_text(encoding='utf-8')\n"
    )
    site.mount(
        mode,
        "t",
        {
            "mod.py": "",
            "res.txt": "resources are the best",
            "somepkg/__init__.py": set_val,
            "somepkg/submod.py": set_val,
            "somepkg/res.txt": "resources are the best",
        },
    )
    import mod

    assert (
        importlib.resources.files(mod).joinpath("res.txt").read_text(encoding="utf-8")
        == "resources are the best"
    )
    assert importlib.import_module("somepkg").val == "resources are the best"
    assert importlib.import_module("somepkg.submod").val == "resources are the best"
