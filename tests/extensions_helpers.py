"""Shared by the extension-module tests: a signed tree with compiled modules,
served over real HTTPS, imported in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Signer, TLSFiles
from extbuild import EXT_SUFFIX, build

from secure_urlimport.cli.devserver import TreeServer

#: Imports argv[4] from the tree at argv[1] (argv[2]: .pub, argv[3]: CA file;
#: argv[5] "0" turns extension modules off; argv[6] "hook": trust() and the
#: path hook instead of install()) and prints what it got as JSON.
IMPORT_ONE = r"""
import importlib, importlib.machinery, json, logging, pkgutil, sys
import secure_urlimport
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
config = secure_urlimport.Config(extension_modules=sys.argv[5] == "1")
options = dict(pubkey=sys.argv[2], cafile=sys.argv[3], config=config)
if sys.argv[6] == "hook":
    secure_urlimport.trust(sys.argv[1], **options)
    secure_urlimport.install_path_hook()
    sys.path.append(sys.argv[1])
else:
    secure_urlimport.install(sys.argv[1], **options)
try:
    module = importlib.import_module(sys.argv[4])
except ImportError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    loader = module.__spec__.loader
    print(json.dumps({
        "SIGNED": getattr(module, "SIGNED", None),
        "file": getattr(module, "__file__", None),
        "origin": module.__spec__.origin,
        "extension": isinstance(loader, importlib.machinery.ExtensionFileLoader),
        "listed": [list(m[1:]) for m in pkgutil.iter_modules(getattr(module, "__path__", []))],
    }))
"""

#: The same import from a local directory (argv[1]) with the standard finders.
IMPORT_LOCAL = r"""
import importlib, importlib.machinery, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
try:
    module = importlib.import_module(sys.argv[2])
except ImportError as exc:
    print(json.dumps({"error": type(exc).__name__}))
else:
    loader = module.__spec__.loader
    print(json.dumps({
        "SIGNED": getattr(module, "SIGNED", None),
        "extension": isinstance(loader, importlib.machinery.ExtensionFileLoader),
        "listed": [list(m[1:]) for m in pkgutil.iter_modules(getattr(module, "__path__", []))],
    }))
"""


@dataclass
class ExtTree:
    """A signed tree with ``pkg/`` and its compiled modules, served over HTTPS."""

    root: Path
    server: TreeServer
    signer: Signer
    cafile: str
    cache: Path

    @property
    def url(self) -> str:
        return self.server.url

    def ext(self, relpath: str) -> Path:
        """The tree file of the extension module at *relpath* (no suffix)."""
        return self.root / f"{relpath}{EXT_SUFFIX}"

    def copies(self) -> list[Path]:
        """Every native copy the client wrote under its cache directory."""
        return sorted(p for p in (self.cache / "ext").rglob("*") if not p.is_dir())

    def copy_of(self, relpath: str) -> Path:
        name = f"{relpath}{EXT_SUFFIX}"
        found = [p for p in self.copies() if p.as_posix().endswith("/" + name)]
        assert len(found) == 1, found
        return found[0]

    def run(
        self, module: str, *, extensions: bool = True, style: str = "install"
    ) -> tuple[dict[str, Any], str]:
        """Import *module* in a fresh interpreter: (its JSON answer, its stderr)."""
        env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
        env["SECURE_URLIMPORT_CACHE_DIR"] = str(self.cache)
        env["PYTHONPATH"] = str(REPO)
        switch = "1" if extensions else "0"
        args = [self.url, str(self.signer.pub), self.cafile, module, switch, style]
        return _run(IMPORT_ONE, args, env)

    def run_local(self, module: str) -> dict[str, Any]:
        """Import *module* from the tree directory with the standard finders."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return _run(IMPORT_LOCAL, [str(self.root), module], env)[0]


def _run(script: str, args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"the fresh interpreter failed ({done.returncode}):\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer, done.stderr


MakeTree = Callable[..., ExtTree]


def make_tree_factory(
    tmp_path: Path, publisher: Signer, serve: Callable[..., TreeServer], tls: TLSFiles
) -> MakeTree:
    """``make(files, extensions={"pkg/fast": "signed"})``: write, compile, sign, serve."""

    def make(
        files: dict[str, str] | None = None,
        extensions: dict[str, str] | None = None,
        marker: Path | None = None,
    ) -> ExtTree:
        root = tmp_path / "tree"
        for rel, text in (files or {"pkg/__init__.py": ""}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        for rel, value in (extensions or {}).items():
            directory, _, name = rel.rpartition("/")
            build(root / directory, name, value=value, marker=marker)
        publisher.sign(root)
        return ExtTree(root, serve(root), publisher, tls.cafile, tmp_path / "client-cache")

    return make
