"""Remote and local code must not stand in for each other (issue #11, items 10 and 11).

- ``secure-urlimport run URL pkg.mod`` used ``importlib.util.find_spec``,
  which imports the parent ``pkg`` to find ``pkg.mod``: under ``python -m``
  the working directory comes first on ``sys.path``, so a local
  ``pkg/__init__.py`` ran before ``run`` refused the name.
- A data-only directory of an ``install()``ed tree was a namespace package
  that hid an installed (or any local) regular package of the same name.

Every test runs in a fresh interpreter over a real HTTPS server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from conftest import evil_source, write_tree
from simulator import child_env

SIGNED_MAIN = "import sys\nprint('signed', __name__, sys.argv[1:])\n"


def _hostile_cwd(root: Path, marker: Path) -> Path:
    """A working directory whose every module would leave *marker* behind."""
    return write_tree(
        root,
        {
            "pkg/__init__.py": evil_source(marker),
            "pkg/mod.py": evil_source(marker),
            "pkg/__main__.py": evil_source(marker),
            "pkg/sub/__init__.py": evil_source(marker),
            "pkg/sub/mod.py": evil_source(marker),
        },
    )


def _run_cli(cwd: Path, tmp_path: Path, publisher, server, tls, module: str):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "secure_urlimport",
            "run",
            "--pubkey",
            str(publisher.pub),
            "--cafile",
            tls.cafile,
            server.url,
            module,
            "an-arg",
        ],
        cwd=cwd,
        env=child_env(tmp_path / "cli-cache"),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


#: The run command's check, in a fresh interpreter whose sys.path[0] is the
#: working directory (as under python -m); prints the exception's class.
RUN_CHECK = """
import sys, secure_urlimport
from secure_urlimport.cli.runner import import_signed_packages
importer = secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
try:
    import_signed_packages(importer, sys.argv[4])
except secure_urlimport.SecureImportError as exc:
    print(type(exc).__name__)
else:
    print("accepted")
"""


def _run_check(cwd: Path, tmp_path: Path, publisher, server, tls, module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", RUN_CHECK, server.url, str(publisher.pub), tls.cafile, module],
        cwd=cwd,
        env=child_env(tmp_path / "check-cache"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- item 10: run never executes local code ---------------------------------------


@pytest.mark.parametrize("module", ["pkg.mod", "pkg", "pkg.sub.mod"])
@pytest.mark.parametrize("remote", ["absent", "namespace"])
def test_run_never_imports_a_hostile_local_parent_package_from_the_working_directory(
    tmp_path, serve, tls, publisher, marker, module, remote
):
    files = {"other.py": "X = 1\n"}
    if remote == "namespace":  # the tree's pkg is only a directory: the local one wins
        files |= {
            "pkg/mod.py": SIGNED_MAIN,
            "pkg/__main__.py": SIGNED_MAIN,
            "pkg/sub/mod.py": SIGNED_MAIN,
        }
    tree = write_tree(tmp_path / "tree", files)
    publisher.sign(tree)
    server = serve(tree)
    cwd = _hostile_cwd(tmp_path / "cwd", marker)

    result = _run_cli(cwd, tmp_path, publisher, server, tls, module)
    assert result.returncode == 1, result.stderr
    assert "is not a module of the signed tree" in result.stderr
    assert "Traceback" not in result.stderr and "signed" not in result.stdout
    assert _run_check(cwd, tmp_path, publisher, server, tls, module) == "NotInManifestError"
    assert not marker.exists(), "local code ran"


@pytest.mark.parametrize("module", ["pkg.mod", "pkg", "pkg.sub.mod"])
@pytest.mark.parametrize("remote", ["regular", "namespace"])
def test_run_executes_the_signed_module_when_the_tree_owns_the_whole_chain(
    tmp_path, serve, tls, publisher, marker, module, remote
):
    files = {
        "pkg/mod.py": SIGNED_MAIN,
        "pkg/__main__.py": SIGNED_MAIN,
        "pkg/sub/mod.py": SIGNED_MAIN,
    }
    if remote == "regular":
        files |= {"pkg/__init__.py": "", "pkg/sub/__init__.py": ""}
    tree = write_tree(tmp_path / "tree", files)
    publisher.sign(tree)
    server = serve(tree)
    # A hostile local pkg/ only when the tree's pkg is a regular package,
    # which (install() style) wins over sys.path; with a local pkg/, a
    # namespace pkg yields to it and run must refuse (the test above).
    cwd = _hostile_cwd(tmp_path / "cwd", marker) if remote == "regular" else tmp_path

    result = _run_cli(cwd, tmp_path, publisher, server, tls, module)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "signed __main__ ['an-arg']\n"
    assert not marker.exists(), "local code ran"


# -- item 11: a remote namespace directory never hides a local regular package -------


#: Installs the tree (argv[1..3]) in the given style (argv[4]) after putting
#: argv[5] (if any) first on sys.path, imports argv[6], prints where it came from.
WHERE_FROM = """
import importlib, json, sys, secure_urlimport
url, pub, ca, style, local, name = sys.argv[1:7]
if local:
    sys.path.insert(0, local)
if style == "meta":
    secure_urlimport.install(url, pubkey=pub, cafile=ca)
else:
    secure_urlimport.trust(url, pubkey=pub, cafile=ca)
    secure_urlimport.install_path_hook()
    sys.path.append(url)
try:
    module = importlib.import_module(name)
except ImportError as exc:
    print(json.dumps({"error": type(exc).__name__}))
else:
    print(json.dumps({"file": getattr(module, "__file__", None),
                      "path": [str(p) for p in getattr(module, "__path__", [])],
                      "local_marker": getattr(module, "LOCAL", None)}))
"""


def _where_from(
    tmp_path, server, publisher, tls, style: str, name: str, local: Path | None = None
) -> dict[str, object]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WHERE_FROM,
            server.url,
            str(publisher.pub),
            tls.cafile,
            style,
            str(local or ""),
            name,
        ],
        env=child_env(tmp_path / f"cache-{style}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


INSTALLED_TRUSTME = str(trustme.__file__)


@pytest.mark.parametrize("style", ["meta", "hook"])
def test_remote_data_directory_never_shadows_an_installed_regular_package(
    tmp_path, serve, tls, publisher, marker, style
):
    assert "site-packages" in INSTALLED_TRUSTME  # a real installed regular package
    tree = write_tree(
        tmp_path / "tree", {"trustme/README.txt": "data\n", "trustme/evil.py": evil_source(marker)}
    )
    publisher.sign(tree)
    server = serve(tree)

    found = _where_from(tmp_path, server, publisher, tls, style, "trustme")
    assert found["file"] == INSTALLED_TRUSTME, found
    # The tree's trustme/ is a namespace portion the installed package hides:
    # its modules are not reachable through it (as on sys.path).
    assert _where_from(tmp_path, server, publisher, tls, style, "trustme.evil") == {
        "error": "ModuleNotFoundError"
    }
    assert not marker.exists(), "a module of the shadowed directory ran"


@pytest.mark.parametrize("local_kind", ["regular package", "module"])
def test_remote_data_directory_never_shadows_a_local_module_or_package(
    tmp_path, serve, tls, publisher, local_kind
):
    local = write_tree(
        tmp_path / "local",
        {"mylib/__init__.py": "LOCAL = 'package'\n"}
        if local_kind == "regular package"
        else {"mylib.py": "LOCAL = 'module'\n"},
    )
    tree = write_tree(tmp_path / "tree", {"mylib/data/table.csv": "a,b\n"})
    publisher.sign(tree)
    server = serve(tree)

    found = _where_from(tmp_path, server, publisher, tls, "meta", "mylib", local)
    assert found["local_marker"] == local_kind.split()[-1], found
    assert str(found["file"]).startswith(str(local)), found


def test_remote_regular_package_still_wins_over_an_installed_one_as_documented(
    tmp_path, serve, tls, publisher
):
    """README, Shadowing: an install()ed tree wins over sys.path for names in
    its manifest; only a namespace directory now yields."""
    tree = write_tree(tmp_path / "tree", {"trustme/__init__.py": "LOCAL = 'remote'\n"})
    publisher.sign(tree)
    server = serve(tree)

    found = _where_from(tmp_path, server, publisher, tls, "meta", "trustme")
    assert found == {
        "file": f"{server.url}/trustme/__init__.py",
        "path": [f"{server.url}/trustme"],
        "local_marker": "remote",
    }
    # With the path hook the entry is appended to sys.path: the installed one wins.
    assert _where_from(tmp_path, server, publisher, tls, "hook", "trustme")["file"] == (
        INSTALLED_TRUSTME
    )


def test_remote_namespace_package_still_beats_a_stray_local_namespace_directory(
    tmp_path, serve, tls, publisher, marker
):
    """README, Shadowing: a stray local directory (no __init__.py) named like a
    remote package cannot hijack it."""
    local = write_tree(tmp_path / "local", {"nspkg/mod.py": evil_source(marker)})
    tree = write_tree(tmp_path / "tree", {"nspkg/mod.py": "LOCAL = 'remote'\n"})
    publisher.sign(tree)
    server = serve(tree)

    found = _where_from(tmp_path, server, publisher, tls, "meta", "nspkg.mod", local)
    assert found["file"] == f"{server.url}/nspkg/mod.py" and found["local_marker"] == "remote"
    assert not marker.exists(), "the stray local module ran"
    assert os.listdir(local) == ["nspkg"]
