"""Python-specific attacks: hostile module names, stdlib shadowing, and __path__ URLs
read as local directories."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import warnings

import pytest
from conftest import evil_source, write_tree
from simulator import RepositorySimulator, assert_never_ran

import secure_urlimport
from secure_urlimport import install, install_path_hook, trust
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME
from secure_urlimport._import.loader import VerifiedLoader


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def sim(key, marker) -> RepositorySimulator:
    sim = RepositorySimulator()
    sim.publish(
        {"mod.py": "", "pkg/__init__.py": "", "pkg/data.txt": "data\n", "ns/inner.py": ""}, [key]
    )
    # Whatever a name might be turned into, the server has something evil there.
    for path in (
        "a/b.py",
        "a\\b.py",
        "a%2fb.py",
        "a/b/__init__.py",
        "m\u043ed.py",
        "pkg/a/b.py",
        "pkg/x%2fy.py",
        "secret.py",
        "mod/../secret.py",
    ):
        sim.put(path, evil_source(marker))
    return sim


HOSTILE_NAMES = {
    "dotdot": "..",
    "dot-prefixed": ".secret",
    "trailing-dot": "pkg.",
    "slash": "a/b",
    "backslash": "a\\b",
    "percent-2f": "a%2fb",
    "nul": "a\x00b",
    "cyrillic-o": "m\u043ed",  # looks like 'mod'
    "fullwidth": "\uff4d\uff4f\uff44",  # NFKC-folds to 'mod'
    "empty": "",
    "space": "a b",
    "submodule-slash": "pkg.a/b",
    "submodule-percent-2f": "pkg.x%2fy",
    "submodule-dotdot": "pkg..secret",
    "submodule-nul": "pkg.\x00",
    "submodule-traversal": "pkg.../secret",
}


def reference_error(name: str) -> type[BaseException]:
    """What the import system raises for *name* with no remote tree at all."""
    try:
        importlib.import_module(name)
    except BaseException as exc:
        return type(exc)
    raise AssertionError(f"{name!r} imported locally")


@pytest.mark.parametrize("mode", ["meta-path", "path-hook"])
@pytest.mark.parametrize("label", sorted(HOSTILE_NAMES))
def test_hostile_module_name_is_refused_before_any_request(sim, key, marker, mode, label):
    name = HOSTILE_NAMES[label]
    expected = reference_error(name.replace("pkg.", "nosuchpkg.", 1))
    if mode == "meta-path":
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    else:
        trust(sim.url, pubkey=key.public.raw, fetcher=sim)
        install_path_hook()
        sys.path.append(sim.url)
    importlib.import_module("pkg")
    for refreshed in (False, True):
        if refreshed:
            importlib.invalidate_caches()  # a well-formed unknown name now costs a request
        before = len(sim.requests)
        with pytest.raises(BaseException) as err:
            importlib.import_module(name)
        assert type(err.value) is expected or (
            # A remote parent package says "not in the signed manifest" itself.
            name.startswith("pkg.") and type(err.value) is ModuleNotFoundError
        ), err.value
        new = sim.requested_paths()[before:]
        if not refreshed:
            assert new == []
        else:
            # After invalidate_caches() PathFinder rebuilds the finder for pkg's
            # __path__ entry, which reads the manifest again: at most that one
            # request, whatever the name, and never a URL made from the name.
            assert new in ([], [MANIFEST_NAME]), new
    assert set(sim.requested_paths()) <= {MANIFEST_NAME, BUNDLE_NAME, "pkg/__init__.py"}
    assert_never_ran(marker, name)


def test_well_formed_unknown_name_does_cost_a_request(sim, key):
    # The twin that shows the test above would notice a request.
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.invalidate_caches()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("absent")
    assert sim.requested_paths() == [MANIFEST_NAME, MANIFEST_NAME]


@pytest.mark.parametrize(
    "relative",
    [
        "../secret.py",
        "../../../../etc/passwd",
        "data.txt/../../secret.py",
        "./data.txt",
        "%2e%2e/secret.py",
        "..%2fsecret.py",
        "/etc/passwd",
    ],
)
def test_data_path_traversal_is_not_found_before_any_request(sim, key, relative):
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    pkg = importlib.import_module("pkg")
    before = list(sim.requests)
    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("pkg", relative)
    assert isinstance(pkg.__loader__, VerifiedLoader) and pkg.__file__ is not None
    with pytest.raises(FileNotFoundError):
        pkg.__loader__.get_data(os.path.join(os.path.dirname(pkg.__file__), relative))
    assert sim.requests == before


def test_signed_stdlib_module_never_shadows_the_standard_library(key, marker):
    sim = RepositorySimulator()
    sim.publish(
        {"json.py": evil_source(marker), "email/__init__.py": evil_source(marker), "ok.py": ""},
        [key],
    )
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    for name in ("json", "email"):
        sys.modules.pop(name, None)  # after install(): the library may use them itself
        module = importlib.import_module(name)
        assert not str(getattr(module, "__file__", "")).startswith("https://")
    assert importlib.import_module("json").dumps([1]) == "[1]"
    assert sim.requested("json.py") == sim.requested("email/__init__.py") == 0
    assert_never_ran(marker)


@pytest.mark.parametrize("path_hook", ["installed", "removed"])
@pytest.mark.parametrize("package", ["pkg", "ns"], ids=["regular", "namespace"])
@pytest.mark.parametrize("manifest", ["fresh", "now-broken"])
def test_package_path_url_never_makes_the_path_finder_read_local_files(
    sim, key, marker, tmp_path, monkeypatch, path_hook, package, manifest
):
    # What FileFinder would open for the __path__ entry 'https://host/tree/pkg'
    # read as a relative directory: './https:/host/tree/pkg/'.
    cwd = tmp_path / "cwd"
    local = cwd / sim.url_of(package).replace("https://", "https:/")
    write_tree(local, {"evil.py": evil_source(marker)})
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend("")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    if path_hook == "removed":
        secure_urlimport.remove_path_hook()
    parent = importlib.import_module(package)
    assert list(parent.__path__) == [sim.url_of(package)]
    if manifest == "now-broken":
        sim.modify(MANIFEST_NAME, lambda m: m[:-5])
        importlib.invalidate_caches()
    expected = ModuleNotFoundError if manifest == "fresh" else secure_urlimport.BadSignatureError
    with pytest.raises(expected) as err:
        importlib.import_module(f"{package}.evil")
    assert type(err.value) is expected
    if manifest == "fresh":
        assert "evil" not in [m.name for m in pkgutil.iter_modules(parent.__path__)]
    else:
        with pytest.raises(expected):  # fails closed rather than listing ./https:/...
            list(pkgutil.iter_modules(parent.__path__))
    assert_never_ran(marker, f"{package}.evil")


@pytest.mark.parametrize("how", ["uninstall", "remove_path_hook"])
def test_package_path_url_never_reads_local_files_after_the_tree_is_removed(
    sim, key, marker, tmp_path, monkeypatch, how
):
    cwd = tmp_path / "cwd"
    write_tree(
        cwd / sim.url_of("pkg").replace("https://", "https:/"), {"evil.py": evil_source(marker)}
    )
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend("")
    if how == "uninstall":
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    else:
        trust(sim.url, pubkey=key.public.raw, fetcher=sim)
        install_path_hook()
        sys.path.append(sim.url)
    importlib.import_module("pkg")
    if how == "uninstall":
        secure_urlimport.uninstall(sim.url)
    else:
        secure_urlimport.remove_path_hook()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pkg.evil")
    assert_never_ran(marker, "pkg.evil")


def test_unpinned_https_entry_seen_before_the_hook_never_reads_local_files(
    marker, tmp_path, monkeypatch
):
    url = "https://unpinned.example.test/tree"
    cwd = tmp_path / "cwd"
    write_tree(cwd / url.replace("https://", "https:/"), {"evil.py": evil_source(marker)})
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend("")
    sys.path.append(url)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("an_optional_dependency_that_is_missing")
    install_path_hook()
    with warnings.catch_warnings(), pytest.raises(ModuleNotFoundError):
        warnings.simplefilter("ignore", secure_urlimport.UnpinnedURLWarning)
        importlib.import_module("evil")
    assert_never_ran(marker, "evil")
