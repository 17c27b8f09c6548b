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


def _module_names() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it ("api", "_import.finder")."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _imported_modules(module: str) -> set[str]:
    """The package modules *module* imports, anywhere in it (also inside
    functions and under TYPE_CHECKING), as dotted names relative to the package."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module_name = node.module or ""
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif module_name.split(".")[0] == "secure_urlimport":
                base, module_name = [], module_name.partition(".")[2]
            else:
                continue
            target = [*base, *(module_name.split(".") if module_name else [])]
            for alias in node.names:  # `from . import api` names a module
                candidate = ".".join([*target, alias.name])
                found.add(candidate if candidate in MODULES else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "secure_urlimport":
                    found.add(".".join(parts[1:]))
    return {name for name in found if name in MODULES}


@pytest.mark.parametrize("module", ["_import.finder", "_import.loader", "_import.registry"])
def test_finder_loader_and_registry_never_import_api(module):
    assert "api" not in _imported_modules(module)


def test_package_modules_import_each_other_without_a_cycle():
    # A package's __init__ importing its own modules is not a cycle of theirs.
    graph = {
        name: {m for m in _imported_modules(name) if not name.startswith(m + ".") and m != name}
        for name in MODULES
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


def test_the_cycle_check_sees_imports_through_packages():
    assert "_client.remote" in _imported_modules("_import.finder")
    assert "api" in _imported_modules("cli.running")


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
    assert (
        set(_CONFIG_FIELDS) | {"config", "fetcher", "root", "root_threshold"}
        == Options.__optional_keys__
    )
    assert Options.__required_keys__ == frozenset()


@pytest.mark.parametrize("function", ["install", "trust"])
def test_a_misspelt_keyword_is_a_type_error_as_before(function, publisher):
    call = getattr(secure_urlimport, function)
    with pytest.raises(
        TypeError, match=rf"^{function}\(\) got an unexpected keyword argument 'cafle'$"
    ):
        call("https://example.org/tree", pubkey=publisher.pub, cafle="ca.pem")
