"""The structure README's Architecture section promises, checked so that it stays true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "secure_urlimport"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
MAX_TOP_LEVEL_MODULES = 10


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_class_is_over_200_lines() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}


def test_the_package_top_level_holds_at_most_ten_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_layer_is_a_package_with_a_docstring() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), init


def test_importing_the_package_installs_no_finder_and_starts_no_thread() -> None:
    # (atexit and fork hooks: tests/test_registry.py)
    code = (
        "import sys, threading, secure_urlimport\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not any(type(f).__module__.startswith('secure_urlimport') for f in sys.meta_path)\n"
        "assert not any(getattr(h, '__module__', '').startswith('secure_urlimport')\n"
        "               for h in sys.path_hooks)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_the_import_contract_is_declared_for_every_layer() -> None:
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    layers = config["tool"]["importlinter"]["contracts"][0]["layers"]
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(layers), packages - set(layers)
