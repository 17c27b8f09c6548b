"""The import-system state as one object (registry.py): reset by a method, reached
by the finders by reference (no import cycle), and nothing done at import."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import secure_urlimport
from secure_urlimport import api
from secure_urlimport._import.registry import UnpinnedURLWarning
from secure_urlimport.options import _CONFIG_FIELDS, Options

PACKAGE = Path(secure_urlimport.__file__).resolve().parent


# -- no import cycle ----------------------------------------------------------------


def _imported_modules(module: str) -> set[str]:
    """The package modules *module* imports, anywhere in it (also inside
    functions and under TYPE_CHECKING)."""
    names = {path.stem for path in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "secure_urlimport":
                parts = node.module.split(".")
                found.update(parts[1:2] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "secure_urlimport":
                    found.update(parts[1:2])
    return found & names


@pytest.mark.parametrize("module", ["finder", "loader", "registry"])
def test_finder_loader_and_registry_never_import_api(module):
    assert "api" not in _imported_modules(module)


def test_package_modules_import_each_other_without_a_cycle():
    graph = {
        path.stem: _imported_modules(path.stem) - {"__init__"}
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }
    done: set[str] = set()

    def visit(module: str, chain: tuple[str, ...]) -> None:
        if module in chain:
            cycle = (*chain[chain.index(module) :], module)
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*chain, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


# -- nothing registered at import ---------------------------------------------------

RECORD_HOOKS = """
import atexit, logging, os, sys  # logging registers its own atexit hook
registered = []
real_atexit, real_fork = atexit.register, os.register_at_fork

def record(kind, func):
    module = getattr(func, "__module__", None) or ""
    if module.startswith("secure_urlimport"):
        registered.append((kind, getattr(func, "__qualname__", repr(func))))

def at_exit(func, *args, **kwargs):
    record("atexit", func)
    return real_atexit(func, *args, **kwargs)

def at_fork(**kwargs):
    for func in kwargs.values():
        record("fork", func)
    return real_fork(**kwargs)

atexit.register, os.register_at_fork = at_exit, at_fork
callbacks = atexit._ncallbacks()
meta_path, path_hooks = list(sys.meta_path), list(sys.path_hooks)
"""


def _run(script: str, tmp_path: Path) -> str:
    env = {"PYTHONPATH": str(PACKAGE.parent), "SECURE_URLIMPORT_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", RECORD_HOOKS + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_package_registers_no_hook_and_no_finder(tmp_path):
    out = _run(
        """
        import secure_urlimport, secure_urlimport.api, secure_urlimport._store.bytecode
        import secure_urlimport._net.deadline, secure_urlimport._net.transport
        print(atexit._ncallbacks() - callbacks, registered,
              sys.meta_path == meta_path, sys.path_hooks == path_hooks)
        """,
        tmp_path,
    )
    assert out == "0 [] True True"


def test_first_bytecode_cache_and_deadline_register_their_hooks_once(tmp_path):
    out = _run(
        """
        from pathlib import Path
        from secure_urlimport._store.bytecode import BytecodeCache
        from secure_urlimport._net.deadline import Watchdog
        for n in range(3):
            BytecodeCache(Path(os.environ["SECURE_URLIMPORT_CACHE_DIR"]), f"https://example.org/{n}")
            with Watchdog(30):
                pass
        print(atexit._ncallbacks() - callbacks, sorted(registered))
        """,
        tmp_path,
    )
    # One exit hook (the bytecode flush) and the one at-fork hook of forksafe.py,
    # which resets the timer, the caches' locks and the rest.
    assert out == "1 [('atexit', '_flush_all'), ('fork', '_after_fork_in_child')]"


# -- the registry's state, reset by a method ----------------------------------------


def test_reset_forgets_pins_trees_warnings_and_the_path_hook(testcode, serve, publisher, tls):
    pinned, unpinned = serve(testcode), serve(testcode)
    secure_urlimport.trust(pinned.url, pubkey=publisher.pub, cafile=tls.cafile)
    secure_urlimport.install_path_hook()
    sys.path[:0] = [unpinned.url, pinned.url]
    with pytest.warns(UnpinnedURLWarning):
        import fib
    assert fib.__spec__.origin.startswith(pinned.url)
    assert api.registry.tree(pinned.url).url == pinned.url
    assert api.path_hook in sys.path_hooks
    del sys.path[:2]
    del sys.modules["fib"]

    api.registry.reset()

    with pytest.raises(KeyError):
        api.registry.tree(pinned.url)
    assert api.path_hook not in sys.path_hooks
    assert not any(isinstance(f, secure_urlimport.Importer) for f in sys.meta_path)
    # The warning is given again: the registry forgot it had been given.
    secure_urlimport.install_path_hook()
    sys.path.append(unpinned.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("fib")  # nothing is pinned any more
    assert [w.category for w in caught] == [UnpinnedURLWarning]


# -- install() and trust() share one typed options definition -----------------------


def test_install_and_trust_take_the_same_typed_options():
    for function in (secure_urlimport.install, secure_urlimport.trust):
        parameters = inspect.signature(function).parameters
        assert list(parameters) == ["url", "pubkey", "options"]
        assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
        assert parameters["options"].annotation == "Unpack[Options]"
    assert set(_CONFIG_FIELDS) | {"config", "fetcher"} == Options.__optional_keys__
    assert Options.__required_keys__ == frozenset()


@pytest.mark.parametrize("function", ["install", "trust"])
def test_a_misspelt_keyword_is_a_type_error_as_before(function, publisher):
    call = getattr(secure_urlimport, function)
    with pytest.raises(
        TypeError, match=rf"^{function}\(\) got an unexpected keyword argument 'cafle'$"
    ):
        call("https://example.org/tree", pubkey=publisher.pub, cafle="ca.pem")
