"""A publisher's whole workflow for a real wheel: ``pip install --target TREE`` + ``sign``.

Real wheels hold ``.py`` files that no import statement can name (pip's
``__pip-runner__.py``, numpy's ``_pyinstaller/hook-numpy.py``); they are signed
as data.  Every step runs as a subprocess, as a publisher and a consumer would
run it: pip, ``secure-urlimport sign``, ``sign --check``, ``verify`` of the
directory and of the served URL, and an importing interpreter.

The pip wheel is the one CPython bundles for ``ensurepip`` (offline).  numpy's
is downloaded once with ``pip download`` (skipped without the network), or
taken from ``$SECURE_URLIMPORT_TEST_WHEELS`` if that directory holds one.
"""

from __future__ import annotations

import ensurepip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TLSFiles

WHEELS_ENV = "SECURE_URLIMPORT_TEST_WHEELS"
TIMEOUT = 300


def _run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run("-m", "secure_urlimport", *args)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _pip_install_target(wheel: Path, tree: Path) -> Path:
    _ok(_run("-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
             "--target", tree, wheel))  # fmt: skip
    return tree


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    prefix = tmp_path / "keys" / "publisher"
    prefix.parent.mkdir(mode=0o700)
    _ok(_cli("keygen", "--unencrypted", prefix))
    return prefix


def _bundled_pip_wheel() -> Path:
    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not found:
        pytest.skip("this Python has no ensurepip wheels (a distribution's build)")
    return found[-1]


def _numpy_wheel(tmp_path: Path) -> Path:
    chosen = os.environ.get(WHEELS_ENV)
    directory = Path(chosen) if chosen else tmp_path / "wheels"
    found = sorted(directory.glob("numpy-*.whl"))
    if found:
        return found[-1]
    got = _run("-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "-d", directory, "numpy")  # fmt: skip
    found = sorted(directory.glob("numpy-*.whl"))
    if got.returncode != 0 or not found:
        pytest.skip(f"no numpy wheel (pip download failed: {got.stderr[-300:]})")
    return found[-1]


def _sign_check_verify(tree: Path, keys: Path, *sign_options: str) -> str:
    """sign, then sign --check (nothing to change) and verify: all must pass."""
    signed = _ok(_cli("sign", tree, "--key", f"{keys}.key", *sign_options))
    _ok(_cli("sign", tree, "--key", f"{keys}.key", "--check"))
    verified = _ok(_cli("verify", tree, "--pubkey", f"{keys}.pub"))
    assert "OK:" in verified and " 0 problems" in verified
    return signed


CONSUMER = """\
import importlib, json, sys
import secure_urlimport
url, pub, ca, package, data_path, data_name = sys.argv[1:]
secure_urlimport.install(url, pubkey=pub, cafile=ca)
module = importlib.import_module(package)
try:
    importlib.import_module(data_name)
    imported = True
except ModuleNotFoundError:
    imported = False
print(json.dumps({
    "file": module.__file__,
    "data": module.__loader__.get_data(url + "/" + data_path).decode(),
    "imported": imported,
}))
"""


@pytest.mark.parametrize("sharded", [False, True], ids=["inline", "sharded"])
def test_the_pip_wheel_installed_with_target_signs_verifies_and_imports(
    tmp_path: Path, keys: Path, serve, tls: TLSFiles, sharded: bool
) -> None:
    tree = _pip_install_target(_bundled_pip_wheel(), tmp_path / "tree")
    runner = tree / "pip" / "__pip-runner__.py"
    assert runner.is_file()  # the file the old rule refused
    options = ("--shard-threshold", "100") if sharded else ()
    assert "signed " in _sign_check_verify(tree, keys, *options)
    server = serve(tree)
    remote = _ok(_cli("verify", server.url, "--pubkey", f"{keys}.pub", "--cafile", tls.cafile))
    assert "OK:" in remote
    args = (server.url, f"{keys}.pub", tls.cafile, "pip", "pip/__pip-runner__.py")
    consumer = _run("-c", CONSUMER, *args, "pip.__pip-runner__")
    seen = json.loads(_ok(consumer).splitlines()[-1])
    assert seen == {
        "file": f"{server.url}/pip/__init__.py",
        "data": runner.read_text(encoding="utf-8"),
        "imported": False,  # data, never a module
    }


def test_a_tampered_data_py_file_of_the_wheel_fails_verify(tmp_path: Path, keys: Path) -> None:
    # The twin: the file signed as data is checked like every other file.
    tree = _pip_install_target(_bundled_pip_wheel(), tmp_path / "tree")
    _sign_check_verify(tree, keys)
    runner = tree / "pip" / "__pip-runner__.py"
    runner.write_bytes(runner.read_bytes() + b"\nimport os  # added after signing\n")
    result = _cli("verify", tree, "--pubkey", f"{keys}.pub")
    assert result.returncode == 1
    assert "pip/__pip-runner__.py" in result.stdout + result.stderr


def test_the_numpy_wheel_installed_with_target_signs_and_verifies(
    tmp_path: Path, keys: Path
) -> None:
    tree = _pip_install_target(_numpy_wheel(tmp_path), tmp_path / "tree")
    for rel in ("hook-numpy.py", "tests/pyinstaller-smoke.py"):
        assert (tree / "numpy" / "_pyinstaller" / rel).is_file()
    signed = _sign_check_verify(tree, keys)
    assert signed.startswith("signed ")
