"""Compiled extension modules from a signed tree (issue #15, item 3).

Real modules compiled with the system C compiler (extbuild.py), signed,
served over real HTTPS and imported in fresh interpreters (an extension
module cannot be unloaded, so each import gets its own process).  The finder
follows ``FileFinder``'s order, checked against the standard finders on the
same directory.  tests/attacks/test_attacks_extensions.py has the attacks,
tests/test_real_extensions.py numpy and PyYAML.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from extbuild import EXT_SUFFIX, build, build_library, needs_compiler
from extensions_helpers import MakeTree, make_tree_factory

from secure_urlimport._client.shards import TreeIndex
from secure_urlimport._format.manifest import FileEntry, Manifest
from secure_urlimport._import.native import is_native, native_set

pytestmark = needs_compiler


@pytest.fixture
def requests_log(caplog) -> Callable[[], str]:
    """The server's request log (one line per request) during the test."""
    caplog.set_level(logging.DEBUG, logger="secure_urlimport.cli.devserver")
    return lambda: "\n".join(
        r.getMessage() for r in caplog.records if r.name == "secure_urlimport.cli.devserver"
    )


@pytest.fixture
def make_tree(tmp_path, publisher, serve, tls) -> MakeTree:
    return make_tree_factory(tmp_path, publisher, serve, tls)


@pytest.mark.parametrize("style", ["install", "hook"], ids=["install", "path-hook"])
def test_an_extension_module_imports_from_a_private_verified_copy(make_tree, style):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    got, _ = tree.run("pkg.fast", style=style)
    copy = tree.copy_of("pkg/fast")
    assert got == {
        "SIGNED": "signed",
        "file": str(copy),
        "origin": str(copy),
        "extension": True,
        "listed": [],
    }
    assert copy.read_bytes() == tree.ext("pkg/fast").read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o500
    directories = [p for p in copy.parents if p.is_relative_to(tree.cache / "ext")]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in directories} == {"0o700"}


def test_a_module_the_tree_does_not_have_is_not_found_beside_an_extension(make_tree):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    got, _ = tree.run("pkg.slow")
    assert got["error"] == "ModuleNotFoundError"
    assert tree.run_local("pkg.slow") == {"error": "ModuleNotFoundError"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # FileFinder: a package (__init__) wins over a module, and at each of
        # the two an extension module wins over source.
        ({"pkg/__init__.py": "", "pkg/fast.py": "SIGNED = 'source'"}, "compiled"),
        ({"pkg/__init__.py": "", "pkg/fast/__init__.py": "SIGNED = 'package'"}, "package"),
        ({"pkg/__init__.py": "", "pkg/fast/data.txt": "not a module"}, "compiled"),
    ],
    ids=["extension-over-source", "package-over-extension", "extension-over-namespace"],
)
def test_an_extension_module_has_the_priority_file_finder_gives_it(make_tree, files, expected):
    tree = make_tree(files, extensions={"pkg/fast": "compiled"})
    got, _ = tree.run("pkg.fast")
    assert got["SIGNED"] == expected
    assert tree.run_local("pkg.fast")["SIGNED"] == expected


def test_an_extension_package_init_is_a_package_whose_submodules_come_from_the_tree(make_tree):
    tree = make_tree(
        {"pkg/__init__.py": "", "pkg/cpkg/sub.py": "SIGNED = 'sub'"},
        extensions={"pkg/cpkg/__init__": "init"},
    )
    assert tree.run("pkg.cpkg")[0]["SIGNED"] == "init"
    assert tree.run("pkg.cpkg.sub")[0] == {
        "SIGNED": "sub",
        "file": f"{tree.url}/pkg/cpkg/sub.py",
        "origin": f"{tree.url}/pkg/cpkg/sub.py",
        "extension": False,
        "listed": [],
    }
    assert tree.run_local("pkg.cpkg.sub")["SIGNED"] == "sub"


def test_pkgutil_lists_extension_modules_and_packages_as_for_a_local_directory(make_tree):
    tree = make_tree(
        {"pkg/__init__.py": "", "pkg/plain.py": "", "pkg/cpkg/sub.py": "", "pkg/data.txt": ""},
        extensions={"pkg/fast": "fast", "pkg/cpkg/__init__": "init", "pkg/__init__": "init"},
    )
    tree.ext("pkg/fast").rename(tree.root / "pkg" / "other.cpython-399-x86_64-linux-gnu.so")
    build(tree.root / "pkg", "fast")
    tree.signer.sign(tree.root)
    listed = [["cpkg", True], ["fast", False], ["plain", False]]
    assert tree.run("pkg")[0]["listed"] == listed
    assert tree.run_local("pkg")["listed"] == listed
    # Off: cpkg (only a compiled __init__) is a directory, which pkgutil does not list.
    assert tree.run("pkg", extensions=False)[0]["listed"] == [["plain", False]]


def test_an_extension_built_for_another_interpreter_is_not_a_module(make_tree):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    other = tree.ext("pkg/fast").with_name("other.cpython-399-x86_64-linux-gnu.so")
    tree.ext("pkg/fast").rename(other)
    tree.signer.sign(tree.root)
    assert tree.run("pkg.other")[0]["error"] == "ModuleNotFoundError"
    assert tree.run_local("pkg.other") == {"error": "ModuleNotFoundError"}


@pytest.mark.parametrize("style", ["install", "hook"], ids=["install", "path-hook"])
def test_turned_off_an_extension_module_is_refused_with_how_to_turn_it_on(make_tree, style):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    got, _ = tree.run("pkg.fast", extensions=False, style=style)
    assert got["error"] == "ExtensionModulesOffError"
    assert got["message"] == (
        f"cannot import 'pkg.fast': the signed tree {tree.url} has it only as the compiled "
        f"extension module {tree.url}/pkg/fast{EXT_SUFFIX}, and extension modules are turned "
        "off (Config(extension_modules=False)); pass config=Config(extension_modules=True) "
        "to install() or trust() to load them"
    )
    assert not (tree.cache / "ext").exists()


def test_turned_off_a_source_module_beside_the_extension_is_used_instead(make_tree):
    tree = make_tree(
        {"pkg/__init__.py": "", "pkg/fast.py": "SIGNED = 'source'"},
        extensions={"pkg/fast": "compiled"},
    )
    got, _ = tree.run("pkg.fast", extensions=False)
    assert got["SIGNED"] == "source"
    assert got["extension"] is False
    assert tree.run("pkg.fast")[0]["SIGNED"] == "compiled"


def test_a_warm_start_reuses_the_verified_copy_without_downloading_it(make_tree, requests_log):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    first = tree.copy_of("pkg/fast").stat()
    before = requests_log().count(f"/pkg/fast{EXT_SUFFIX}")
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    assert requests_log().count(f"/pkg/fast{EXT_SUFFIX}") == before == 1
    again = tree.copy_of("pkg/fast").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_a_new_release_that_changes_the_extension_gets_a_new_directory(make_tree):
    tree = make_tree(extensions={"pkg/fast": "one"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "one"
    build(tree.root / "pkg", "fast", value="two")
    tree.signer.sign(tree.root)
    got, _ = tree.run("pkg.fast")
    assert got["SIGNED"] == "two"
    assert len(tree.copies()) == 2  # each set in its own directory: never rewritten in place
    assert Path(got["file"]).read_bytes() == tree.ext("pkg/fast").read_bytes()


@pytest.mark.parametrize(
    ("path", "native"),
    [
        ("numpy/_core/_multiarray_umath" + EXT_SUFFIX, True),
        ("yaml/_yaml.abi3.so", True),
        ("numpy.libs/libgfortran-040039e1-0352e75f.so.5.0.0", True),
        ("pkg.libs/README", True),
        ("pkg/_speedups.pyd", True),
        ("pkg/mod.py", False),
        ("pkg/data.sob", False),
        ("pkg/libs/helper.txt", False),
    ],
)
def test_native_files_are_extension_modules_shared_libraries_and_libs_directories(path, native):
    assert is_native(path) is native


def test_a_library_found_through_origin_is_the_verified_copy_beside_the_module(make_tree):
    tree = make_tree()
    library = build_library(tree.root / "pkg.libs", "helper-1a2b", value="from the library")
    build(tree.root / "pkg", "fast", library=library)
    tree.signer.sign(tree.root)
    got, _ = tree.run("pkg.fast")
    assert got["SIGNED"] == "from the library"
    assert (
        tree.copy_of("pkg/fast").parent.parent.joinpath("pkg.libs", library.name).read_bytes()
        == library.read_bytes()
    )


def test_without_its_library_in_the_tree_the_module_does_not_load(make_tree):
    """The twin: the library is not signed, so there is no copy to find."""
    tree = make_tree()
    library = build_library(tree.root / "pkg.libs", "helper-1a2b", value="from the library")
    build(tree.root / "pkg", "fast", library=library)
    tree.signer.sign(tree.root)
    library.unlink()
    tree.signer.sign(tree.root)
    library.parent.rmdir()
    got, _ = tree.run("pkg.fast")
    assert got["error"] == "ImportError"
    assert "libhelper-1a2b.so: cannot open shared object file" in got["message"]


def _index(paths: list[str]) -> TreeIndex:
    entries = {p: FileEntry(p, 1, "0" * 64, {"k": b""}) for p in paths}
    now = datetime.now(UTC)
    manifest = Manifest(version=1, created=now, expires=now, keyids=("k",), files=entries)
    return TreeIndex(manifest, None)  # type: ignore[arg-type]  # unsharded: no store needed


def test_a_libs_directory_goes_with_its_package_and_an_unowned_one_with_every_package():
    index = _index(
        [
            "numpy/__init__.py",
            f"numpy/_core/_multiarray_umath{EXT_SUFFIX}",
            "numpy/_core/_multiarray_umath.py",
            "numpy.libs/libopenblas.so",
            "yaml/__init__.py",
            f"yaml/_yaml{EXT_SUFFIX}",
            "PIL/__init__.py",
            f"PIL/_imaging{EXT_SUFFIX}",
            "pillow.libs/libjpeg.so.62",
        ]
    )
    assert [e.path for e in native_set(index, f"yaml/_yaml{EXT_SUFFIX}")] == [
        "pillow.libs/libjpeg.so.62",
        f"yaml/_yaml{EXT_SUFFIX}",
    ]
    assert [e.path for e in native_set(index, f"numpy/_core/_multiarray_umath{EXT_SUFFIX}")] == [
        "numpy.libs/libopenblas.so",
        f"numpy/_core/_multiarray_umath{EXT_SUFFIX}",
        "pillow.libs/libjpeg.so.62",
    ]
