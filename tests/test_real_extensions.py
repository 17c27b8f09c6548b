"""Real wheels with compiled code, signed, served over real HTTPS and imported remotely.

``pip install --no-deps --target TREE numpy pyyaml`` gives the files a wheel
installs (numpy's 20 extension modules and its ``numpy.libs/``, found through
``RPATH $ORIGIN/../../numpy.libs``; PyYAML's ``yaml/_yaml`` on libyaml).  The
tree is signed and served, and a workload runs twice in fresh interpreters:
from the directory with the standard finders (the reference), and with the
signed tree ``install()``ed.  The results must be equal, and in the remote run
every module of the package must come from the tree's URL or, for extension
modules, from the verified copies in the client's cache directory.

numpy runs its own ``numpy.linalg`` and ``numpy.fft`` test suites (imported by
their dotted names, as tests/test_real_packages.py does for networkx), with
the same outcome for every test.  ``sign`` refuses numpy's
``_pyinstaller/hook-numpy.py`` (not a module name), so that directory, which
only PyInstaller reads, is left out of the tree here.

Skipped when pip cannot install the wheels.  The slowest tests of the suite
with test_real_packages.py: numpy 30 s on 3.11 (88 s on 3.13 with the two
cores shared), PyYAML 2 s, numpy turned off 4 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Signer, TLSFiles

from secure_urlimport.cli.devserver import TreeServer

EXT_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))

TIMEOUT = 600

#: Reads its configuration from the JSON file argv[1]: with a "url", installs
#: the signed tree; else imports from the "tree" directory.
PRELUDE = r"""
import importlib, importlib.machinery, json, pathlib, sys

CONFIG = json.loads(open(sys.argv[1], encoding="utf-8").read())
PACKAGE = CONFIG["package"]
assert PACKAGE not in sys.modules
if CONFIG["url"]:
    import secure_urlimport

    secure_urlimport.install(CONFIG["url"], pubkey=CONFIG["pubkey"], cafile=CONFIG["cafile"])
else:
    sys.path.insert(0, CONFIG["tree"])


def finish(result):
    modules = {}
    for name, module in list(sys.modules.items()):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            loader = getattr(getattr(module, "__spec__", None), "loader", None)
            native = isinstance(loader, importlib.machinery.ExtensionFileLoader)
            kind = "extension" if native else "python"
            modules[name] = [kind, getattr(module, "__file__", None)]
    result["modules"] = modules
    with open(CONFIG["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
"""

NUMPY_SCRIPT = (
    PRELUDE
    + r"""
import numpy
import pytest

ROOT = pathlib.Path(CONFIG["tree"])


class ByName(pytest.Module):
    # A test file imported by its dotted name, so from wherever numpy is; the
    # file under ROOT only gives pytest a path to collect and report.
    def _getobj(self):
        name = ".".join(self.path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name)
        self.config.pluginmanager.consider_module(module)
        return module


class Harness:
    def __init__(self):
        self.outcomes = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makemodule(self, module_path, parent):
        return ByName.from_parent(parent, path=module_path)

    def pytest_collectreport(self, report):
        if not report.passed:
            self.outcomes[report.nodeid] = f"collect-{report.outcome}"

    def pytest_runtest_logreport(self, report):
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            outcome = report.outcome
            if xfail:
                outcome = "xpassed" if report.passed else "xfailed"
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "xfailed" if xfail else "skipped"
        else:
            return
        self.outcomes[report.nodeid] = outcome


harness = Harness()
conftest = importlib.import_module("numpy.conftest")  # numpy's fixtures and markers
exit_code = pytest.main(
    ["-q", "-p", "no:cacheprovider", "--noconftest", "--assert=plain",
     "-c", CONFIG["ini"], "--rootdir", str(ROOT), *CONFIG["paths"]],
    plugins=[harness, conftest],
)
matrix = numpy.arange(16.0).reshape(4, 4) + numpy.eye(4) * 10
finish({
    "exit_code": int(exit_code),
    "outcomes": harness.outcomes,
    "version": numpy.__version__,
    "file": numpy.__file__,
    "det": float(numpy.linalg.det(matrix)),
    "fft": [round(float(x), 9) for x in numpy.abs(numpy.fft.fft(numpy.arange(8.0)))],
    "blas": numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"],
})
"""
)

YAML_SCRIPT = (
    PRELUDE
    + r"""
import yaml

document = {
    "name": "secure_urlimport",
    "numbers": list(range(2000)),
    "nested": [{"key": f"v{i}", "flags": [True, False, None], "pi": 3.14159} for i in range(500)],
    "text": "line one\nline two\n\ttabbed ünïcode ✓",
}
dumped_c = yaml.dump(document, Dumper=yaml.CDumper, sort_keys=True)
dumped_py = yaml.dump(document, Dumper=yaml.Dumper, sort_keys=True)
loaded_c = yaml.load(dumped_c, Loader=yaml.CLoader)
events = [type(e).__name__ for e in yaml.parse(dumped_c, Loader=yaml.CLoader)]
finish({
    "with_libyaml": yaml.__with_libyaml__,
    "cloader": yaml.CLoader.__module__,
    "same_dump": dumped_c == dumped_py,
    "round_trip": loaded_c == document,
    "events": len(events),
    "file": yaml.__file__,
    "version": yaml.__version__,
})
"""
)


def _pip_target(directory: Path, *requirements: str) -> None:
    """``pip install --no-deps --target``; the test is skipped if pip cannot."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(directory),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"pip cannot install {' '.join(requirements)}: {done.stderr[-500:]}")


@pytest.fixture
def published(
    tmp_path: Path, publisher: Signer, serve: Callable[..., TreeServer], tls: TLSFiles
) -> Callable[..., tuple[Path, TreeServer]]:
    def make(*requirements: str) -> tuple[Path, TreeServer]:
        tree = tmp_path / "tree"
        _pip_target(tree, *requirements)
        for cache in list(tree.rglob("__pycache__")):
            shutil.rmtree(cache)
        # sign refuses hook-numpy.py (not a module name); only PyInstaller reads it.
        shutil.rmtree(tree / "numpy" / "_pyinstaller", ignore_errors=True)
        publisher.sign(tree)
        return tree, serve(tree)

    return make


def _run(
    script: str,
    tmp_path: Path,
    tag: str,
    tree: Path,
    server: TreeServer,
    publisher: Signer,
    tls: TLSFiles,
    *,
    remote: bool,
    **config: object,
) -> dict[str, Any]:
    run_dir = tmp_path / f"run-{tag}"
    run_dir.mkdir()
    (run_dir / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    settings = {
        "url": server.url if remote else None,
        "pubkey": str(publisher.pub),
        "cafile": tls.cafile,
        "tree": str(tree),
        "ini": str(run_dir / "pytest.ini"),
        "result": str(run_dir / "result.json"),
        **config,
    }
    (run_dir / "config.json").write_text(json.dumps(settings), encoding="utf-8")
    (run_dir / "run.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(run_dir / "client-state")
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(run_dir / "run.py"), str(run_dir / "config.json")],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    result_file = run_dir / "result.json"
    if not result_file.exists():
        pytest.fail(f"the {tag} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    result["cache"] = str(run_dir / "client-state")
    return result


def _assert_all_from_the_tree(result: dict[str, Any], url: str) -> None:
    """Python modules from the tree's URL, extension modules from the verified copies."""
    copies = result["cache"] + "/ext/"
    wrong = {
        name: where
        for name, (kind, where) in result["modules"].items()
        if not (where or "").startswith(url + "/" if kind == "python" else copies)
    }
    assert not wrong, wrong


def test_numpy_from_a_signed_tree_passes_its_own_linalg_and_fft_tests_as_locally(
    tmp_path, published, publisher, tls
):
    tree, server = published("numpy>=1.26,<3")
    paths = [str(tree / "numpy" / "linalg" / "tests"), str(tree / "numpy" / "fft" / "tests")]
    args = (NUMPY_SCRIPT, tmp_path)
    local = _run(
        *args, "local", tree, server, publisher, tls, remote=False, package="numpy", paths=paths
    )
    remote = _run(
        *args, "remote", tree, server, publisher, tls, remote=True, package="numpy", paths=paths
    )
    assert remote["outcomes"] == local["outcomes"]
    counts = sorted(set(remote["outcomes"].values()))
    assert "passed" in counts and len(remote["outcomes"]) > 500, counts
    assert remote["exit_code"] == local["exit_code"]
    for key in ("version", "det", "fft", "blas"):
        assert remote[key] == local[key], key
    assert remote["file"] == f"{server.url}/numpy/__init__.py"
    _assert_all_from_the_tree(remote, server.url)
    extensions = {n for n, (kind, _) in remote["modules"].items() if kind == "extension"}
    assert {
        "numpy._core._multiarray_umath",
        "numpy.linalg._umath_linalg",
        "numpy.fft._pocketfft_umath",
    } <= extensions
    assert extensions == {n for n, (kind, _) in local["modules"].items() if kind == "extension"}


def test_numpy_refused_when_extension_modules_are_off(tmp_path, published, publisher, tls):
    """The twin: with the extensions off numpy cannot import, and says why."""
    _tree, server = published("numpy>=1.26,<3")
    script = (
        "import sys, secure_urlimport\n"
        "secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3],"
        " config=secure_urlimport.Config(extension_modules=False))\n"
        "try:\n    import numpy\nexcept ImportError as exc:\n"
        # numpy wraps the error in its own ImportError ("Error importing numpy...").
        "    while exc is not None:\n"
        "        print(type(exc).__name__, str(exc).splitlines()[0])\n"
        "        exc = exc.__cause__ or exc.__context__\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(tmp_path / "off-state")
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, str(publisher.pub), tls.cafile],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    chain = done.stdout.splitlines()
    assert chain[-1] == (
        "ExtensionModulesOffError cannot import 'numpy._core._multiarray_umath': the signed "
        f"tree {server.url} has it only as the compiled extension module {server.url}/numpy/"
        "_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so, and extension modules are "
        "turned off (Config(extension_modules=False)); pass "
        "config=Config(extension_modules=True) to install() or trust() to load them"
    ).replace("cpython-311-x86_64-linux-gnu.so", EXT_SUFFIX[1:]), done.stderr[-3000:]
    assert not (tmp_path / "off-state" / "ext").exists()


def test_pyyaml_from_a_signed_tree_uses_its_libyaml_loader_as_locally(
    tmp_path, published, publisher, tls
):
    tree, server = published("pyyaml>=6,<7")
    args = (YAML_SCRIPT, tmp_path)
    local = _run(*args, "local", tree, server, publisher, tls, remote=False, package="yaml")
    remote = _run(*args, "remote", tree, server, publisher, tls, remote=True, package="yaml")
    assert remote["with_libyaml"] is True
    assert remote["cloader"] == "yaml.cyaml"
    assert remote["round_trip"] is True
    for key in ("with_libyaml", "same_dump", "round_trip", "events", "version"):
        assert remote[key] == local[key], key
    _assert_all_from_the_tree(remote, server.url)
    assert remote["modules"]["yaml._yaml"][0] == "extension"
